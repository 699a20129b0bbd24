"""`riskc lock --for 2h | --until 17:00`: the trader's own lockout (PRODUCT.md §5).

It is a promise made while calm, for the moment when one is not: once placed it cannot be lifted
before it ends, by the trader or by `riskc lock` again (a shorter lock changes nothing, a longer
one extends it). Only an admin unlock with the passphrase can end it early, and that is audited.
The daemon keeps the account (or the one symbol) flat while it runs.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import click

from riskc.engine.cli.common import EXIT_FAILED, echo_err
from riskc.engine.cli.statefile import (
    load_config_or_exit,
    moment_text,
    pick_account,
    policy_clock,
    span_text,
    state_errors,
    state_options,
    state_path,
)

RULE = "personal"  # the lockouts table's rule column for a trader's own lockouts
LONGEST_WITHOUT_YES = dt.timedelta(days=7)
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@click.command("lock")
@state_options
@click.option("--for", "duration", metavar="DURATION", help="How long: 30m, 2h, 1d, 1h30m.")
@click.option(
    "--until",
    "until",
    metavar="TIME",
    help="Until a clock time (17:00: its next occurrence) or a date and time (2026-03-10 17:00), "
    "in the policy's timezone.",
)
@click.option("--symbol", "symbol", metavar="SYMBOL", help="Lock one symbol (MNQ) instead of the whole account.")
@click.option("--reason", "reason", default="personal lockout", show_default=True, help="Why, for the audit log.")
@click.option("--tz", "timezone", metavar="ZONE", help="Timezone for --until; default: the account's policy's.")
@click.option("--yes", "yes", is_flag=True, help="Allow a lockout longer than 7 days.")
def command(
    config_path: str | None,
    state: Path | None,
    account: str | None,
    duration: str | None,
    until: str | None,
    symbol: str | None,
    reason: str,
    timezone: str | None,
    yes: bool,
) -> None:
    """Lock yourself out of trading until a time. It cannot be undone before it ends."""
    if (duration is None) == (until is None):
        raise click.UsageError("give exactly one of --for DURATION and --until TIME")
    from riskc.engine.store import Store

    config = load_config_or_exit(config_path)
    now = dt.datetime.now(dt.UTC)
    path = state_path(config, state)
    with state_errors("lock", path, "nothing was locked"), Store.open(path) as store:
        account_id = pick_account(store.account_ids(), config, account)
        clock = policy_clock(config, account_id)
        zone_name = timezone or clock.timezone
        zone = _zone(zone_name)
        ends = _end(now, duration, until, zone_name)
        _refuse_if_unreasonable(now, ends, yes)
        target = symbol.strip().upper() if symbol else None
        lockout = store.add_lockout(account_id, RULE, reason, now, until=ends, symbol=target, origin="personal")
    what = f"{target} on account {account_id}" if target else f"account {account_id}"
    if lockout.until != ends or lockout.condition is not None:
        kept = lockout.until or lockout.condition
        kept_text = moment_text(kept, zone, now) if isinstance(kept, dt.datetime) else str(kept)
        click.echo(f"{what} is already locked until {kept_text}, longer than asked: nothing changed.")
        return
    click.echo(f"Locked {what} until {moment_text(ends, zone, now)}, {span_text(ends - now)} from now.")
    click.echo("This cannot be undone before it ends (only an admin unlock with the passphrase can).")


def _zone(name: str):
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise click.UsageError(f"--tz {name}: not an IANA timezone (e.g. America/Chicago)") from None


def _end(now: dt.datetime, duration: str | None, until: str | None, zone_name: str) -> dt.datetime:
    if duration is not None:
        from riskc.engine.testing.snapshot_file import parse_duration

        try:
            return now + parse_duration(duration)
        except ValueError as error:
            raise click.UsageError(f"--for {duration}: {error}") from None
    assert until is not None
    from riskc.engine.core.calendar import TradingCalendar

    calendar = TradingCalendar(zone_name)
    match = _CLOCK.match(until.strip())
    if match:
        return calendar.next_clock(now, dt.time(int(match.group(1)), int(match.group(2))))
    try:
        moment = dt.datetime.fromisoformat(until.strip())
    except ValueError:
        raise click.UsageError(
            f"--until {until}: expected a clock time (17:00) or a date and time (2026-03-10 17:00)"
        ) from None
    if moment.tzinfo is None:
        # fold=0, as the calendar reads wall times: an ambiguous time is its first occurrence.
        moment = moment.replace(tzinfo=_zone(zone_name), fold=0)
    return moment.astimezone(dt.UTC)


def _refuse_if_unreasonable(now: dt.datetime, ends: dt.datetime, yes: bool) -> None:
    if ends <= now:
        echo_err("riskc lock: that time is already past; nothing was locked")
        raise SystemExit(EXIT_FAILED)
    if ends - now > LONGEST_WITHOUT_YES and not yes:
        echo_err(
            f"riskc lock: {span_text(ends - now)} is longer than 7 days and could not be undone without "
            "the admin; add --yes if you mean it. Nothing was locked."
        )
        raise SystemExit(EXIT_FAILED)
