"""`riskc admin set-passphrase`: set or change the passphrase that admin unlocks need.

Only its scrypt hash is stored. Changing it needs the current one (else a locked-out trader
could set a new passphrase and unlock themselves); both outcomes are audited.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import click

from riskc.engine.cli import unlock_cmd
from riskc.engine.cli.common import EXIT_FAILED, echo_err
from riskc.engine.cli.statefile import load_config_or_exit, state_errors, state_path, throttle_passphrase, who
from riskc.engine.cli.unlock_cmd import PASSPHRASE_ENV

MIN_LENGTH = 8


@click.group("admin")
def command() -> None:
    """Administration of the state file (the admin passphrase)."""


@command.command("set-passphrase")
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Config file; default $RISKC_CONFIG, else ./riskc.yaml, else the demo's.",
)
@click.option(
    "--state",
    "state",
    type=click.Path(dir_okay=False, path_type=Path),
    help="State file; overrides the config's `state:`.",
)
@click.option("--by", "by", metavar="NAME", help="Who is setting it, for the audit log; default: your login.")
def set_passphrase(config_path: str | None, state: Path | None, by: str | None) -> None:
    """Set the admin passphrase (asked twice); changing it asks for the current one first."""
    from riskc.engine.store import Store, UnlockDenied

    config = load_config_or_exit(config_path)
    now = dt.datetime.now(dt.UTC)
    path = state_path(config, state)
    with state_errors("admin", path), Store.open(path) as store:
        current = None
        if store.has_admin_passphrase():
            throttle_passphrase(store, "admin", unlock_cmd._sleep)
            current = os.environ.get(PASSPHRASE_ENV)
            if current is None:
                current = click.prompt("Current admin passphrase", hide_input=True, err=True)
        new = click.prompt("New admin passphrase", hide_input=True, confirmation_prompt=True, err=True)
        if len(new) < MIN_LENGTH:
            echo_err(f"riskc admin: the passphrase needs at least {MIN_LENGTH} characters; nothing changed")
            raise SystemExit(EXIT_FAILED)
        try:
            store.set_admin_passphrase(new, now, current=current, by=by or who())
        except UnlockDenied:
            echo_err("riskc admin: wrong current passphrase; nothing changed (the attempt is in the audit log)")
            raise SystemExit(EXIT_FAILED) from None
    click.echo("admin passphrase " + ("changed" if current is not None else "set"))
