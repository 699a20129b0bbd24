"""`riskc reload [--now]`: the policy edits staged by ``edits: next_trading_day``.

Without ``--now`` it lists what is pending and when it takes effect. With ``--now`` it applies
them at once: that needs the admin passphrase (prompted without echo, or
``$RISKC_ADMIN_PASSPHRASE``), and every attempt is audited with who and why, refused ones
included. The running daemon applies the edit on its next tick; with no daemon running, at its
next start. (With ``edits: immediately`` there is nothing to stage: the daemon reloads an edit by
itself.)
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from riskc.engine.cli.common import EXIT_FAILED, echo_err
from riskc.engine.cli.statefile import load_config_or_exit, moment_text, state_path, who
from riskc.engine.cli.unlock_cmd import _passphrase


@click.command("reload")
@click.option("--config", "config_path", metavar="PATH", help="Config file; default $RISKC_CONFIG, else ./riskc.yaml.")
@click.option(
    "--state", "state", type=click.Path(dir_okay=False, path_type=Path), help="State file; overrides the config's."
)
@click.option("--account", "account", metavar="NAME", help="Only this config account's edit (default: every one).")
@click.option("--now", "now_", is_flag=True, help="Apply the staged edits now (admin passphrase, audited).")
@click.option("--reason", "reason", default="", help="Why, for the audit log (required with --now).")
@click.option("--by", "by", metavar="NAME", help="Who, for the audit log; default: your login.")
def command(
    config_path: str | None, state: Path | None, account: str | None, now_: bool, reason: str, by: str | None
) -> None:
    """Show the staged policy edits, or apply them now with --now (admin passphrase, audited)."""
    from riskc.engine.store import Store, UnlockDenied, policy_sets

    if now_ and not reason.strip():
        raise click.UsageError("--now needs --reason TEXT: the audit log records why")
    config = load_config_or_exit(config_path)
    path = state_path(config, state)
    if not path.is_file():
        echo_err(f"riskc reload: no state file at {path}")
        raise SystemExit(EXIT_FAILED)
    now = dt.datetime.now(dt.UTC)
    with Store.open(path) as store:
        staged = [row for row in policy_sets.staged(store) if account is None or row.account == account]
        if not staged:
            click.echo("no policy edit is staged" + (f" for {account}" if account else ""))
            return
        for row in staged:
            when = moment_text(row.activates_at, _zone(config), now) if row.activates_at else "the next start"
            click.echo(f"{row.account}: edit {row.digest} staged, active from {when}")
        if not now_:
            return
        if not store.has_admin_passphrase():
            echo_err("riskc reload: no admin passphrase is set (`riskc admin set-passphrase` sets one)")
            raise SystemExit(EXIT_FAILED)
        try:
            policy_sets.apply_now(
                store, [row.account for row in staged], now, passphrase=_passphrase(), by=by or who(), reason=reason
            )
        except UnlockDenied:
            echo_err("riskc reload: wrong passphrase; nothing was applied (the attempt is in the audit log)")
            raise SystemExit(EXIT_FAILED) from None
    click.echo("applied: the running daemon swaps it in on its next tick (or at its next start)")


def _zone(config):
    from riskc.engine.cli.statefile import policy_clock

    return policy_clock(config, config.accounts[0].id or 0).zone
