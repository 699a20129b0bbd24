"""`riskc unlock (--id N | --all) --reason TEXT`: the admin's early end to a lockout.

It needs the admin passphrase (prompted without echo, or ``$RISKC_ADMIN_PASSPHRASE`` for
scripts) and a reason, and every attempt is audited with who and why, refused ones included. A
wrong passphrase releases nothing. A rule whose breach still holds will lock the account again on
the daemon's next evaluation: an unlock lifts a lockout, it does not excuse a breach.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import click

from riskc.engine.cli.common import EXIT_FAILED, echo_err
from riskc.engine.cli.statefile import (
    load_config_or_exit,
    lockout_ends,
    pick_account,
    policy_clock,
    state_errors,
    state_options,
    state_path,
    throttle_passphrase,
    who,
)

PASSPHRASE_ENV = "RISKC_ADMIN_PASSPHRASE"
_sleep = time.sleep  # the backoff's wait (tests replace it)


@click.command("unlock")
@state_options
@click.option("--id", "lockout_id", type=int, metavar="N", help="The lockout to lift (see `riskc status`).")
@click.option("--all", "release_all", is_flag=True, help="Lift every active lockout of the account.")
@click.option("--reason", "reason", required=True, help="Why, for the audit log.")
@click.option("--by", "by", metavar="NAME", help="Who is unlocking, for the audit log; default: your login.")
def command(
    config_path: str | None,
    state: Path | None,
    account: str | None,
    lockout_id: int | None,
    release_all: bool,
    reason: str,
    by: str | None,
) -> None:
    """Lift a lockout early (admin passphrase, audited)."""
    if (lockout_id is None) == (not release_all):
        raise click.UsageError("give exactly one of --id N and --all")
    if not reason.strip():
        raise click.UsageError("--reason cannot be empty: the audit log records why")
    from riskc.engine.store import Store, StoreError, UnlockDenied

    config = load_config_or_exit(config_path)
    path = state_path(config, state)
    if not path.is_file():
        echo_err(f"riskc unlock: no state file at {path}")
        raise SystemExit(EXIT_FAILED)
    now = dt.datetime.now(dt.UTC)
    with state_errors("unlock", path, "nothing was released"), Store.open(path) as store:
        targets = _targets(store, config, account, lockout_id, now)
        if not store.has_admin_passphrase():
            echo_err(
                "riskc unlock: no admin passphrase is set, so there is no admin unlock "
                "(`riskc admin set-passphrase` sets one)"
            )
            raise SystemExit(EXIT_FAILED)
        throttle_passphrase(store, "unlock", _sleep)
        passphrase = _passphrase()
        operator = by or who()
        for lockout in targets:
            try:
                store.release_lockout(lockout.id, now, by=operator, reason=reason, passphrase=passphrase)
            except UnlockDenied:
                echo_err("riskc unlock: wrong passphrase; nothing was released (the attempt is in the audit log)")
                raise SystemExit(EXIT_FAILED) from None
            except StoreError as error:
                echo_err(f"riskc unlock: {error}")
                raise SystemExit(EXIT_FAILED) from None
            zone = policy_clock(config, lockout.account_id).zone
            scope = f"account {lockout.account_id}"
            if lockout.symbol:
                scope = f"{lockout.symbol}, {scope}"
            click.echo(
                f"Released lockout #{lockout.id} ({lockout.rule}, {scope}: {lockout_ends(lockout, zone, now)})"
                f" by {operator}: {reason}"
            )
    click.echo("A rule whose condition still holds will lock the account again.")


def _targets(store, config, account: str | None, lockout_id: int | None, now: dt.datetime) -> list:
    from riskc.engine.store import StoreError

    if lockout_id is not None:
        try:
            lockout = store.get_lockout(lockout_id)
        except StoreError:
            raise click.UsageError(f"no lockout #{lockout_id} (`riskc status` lists the active ones)") from None
        if not lockout.is_active(now):
            raise click.UsageError(f"lockout #{lockout_id} is not active any more")
        if account is not None and lockout.account_id != pick_account([], config, account):
            raise click.UsageError(f"lockout #{lockout_id} belongs to account {lockout.account_id}, not {account}")
        return [lockout]
    account_id = pick_account(store.account_ids(), config, account)
    active = store.active_lockouts(account_id, now)
    if not active:
        raise click.UsageError(f"account {account_id} has no active lockout")
    return active


def _passphrase() -> str:
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env is not None:
        return from_env
    return click.prompt("Admin passphrase", hide_input=True, err=True)
