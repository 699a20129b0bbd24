"""What `riskc status`, `lock`, `unlock` and `admin` share: the config, the state file, which
account, and the account's policy clock (timezone and trading-day start).

Resolution, the same for every verb:

- config: ``--config PATH``, else ``$RISKC_CONFIG``, else ``./riskc.yaml``, else the built-in
  demo config (so these verbs read the same file `riskc run` writes);
- state file: ``--state PATH``, else the config's ``state:``;
- account: ``--account ID`` (or a config account's name), else the only account the state file
  and the config know; more than one is a usage error that lists them.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import click

from riskc.engine.cli.common import EXIT_FAILED, EXIT_USAGE, echo_err

if TYPE_CHECKING:
    from riskc.engine.daemon.config import AccountConfig, Config

DEFAULT_TIMEZONE = "America/Chicago"
DEFAULT_DAY_START = dt.time(17, 0)


class StateLocation(click.ParamType):
    """``--state``: a state file (a ``Path``), or a PostgreSQL desk URL kept as the string it is
    (``postgresql://user@host/db``; a Path would fold its ``//``)."""

    name = "PATH|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path | str:
        from riskc.engine.store.postgres import is_url

        if isinstance(value, Path) or is_url(value):
            return value
        path = Path(value)
        if path.is_dir():
            self.fail(f"{value} is a directory, not a state file", param, ctx)
        return path


STATE_LOCATION = StateLocation()


def state_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``--config``, ``--state`` and ``--account``, in that order, on a command."""
    func = click.option(
        "--account", "account", metavar="ID", help="Account id (or its name in the config); default: the only one."
    )(func)
    func = click.option(
        "--state",
        "state",
        type=STATE_LOCATION,
        help="State file or postgresql:// URL; overrides the config's `state:`.",
    )(func)
    return click.option(
        "--config",
        "config_path",
        metavar="PATH",
        help="Config file; default $RISKC_CONFIG, else ./riskc.yaml, else the demo's.",
    )(func)


def load_config_or_exit(config_path: str | None) -> Config:
    from riskc.engine.daemon.config import Config, ConfigError, find_config, load_config

    try:
        found = find_config(config_path)
        return Config.default_demo() if found is None else load_config(found)
    except ConfigError as error:  # exit 2, as `riskc run` does: nothing ran
        echo_err(str(error))
        raise SystemExit(EXIT_USAGE) from None


def state_path(config: Config, state: Path | str | None) -> Path | str:
    return state if state is not None else config.state


@contextmanager
def state_errors(verb: str, path: Path | str, unchanged: str = "nothing was changed") -> Iterator[None]:
    """One line, never a traceback, when the state file cannot be used: an unusable file
    (empty, truncated, foreign, corrupt, another daemon's) exits 2 naming it; a write the file
    refuses (locked past the busy timeout, read-only, disk full) exits 1 and says what did not
    happen."""
    from riskc.engine.store import StateFileError
    from riskc.engine.store.base import first_line
    from riskc.engine.store.postgres import errors as postgres_errors

    try:
        yield
    except StateFileError as error:
        echo_err(f"riskc {verb}: {error}")
        raise SystemExit(EXIT_USAGE) from None
    except (sqlite3.Error, *postgres_errors()) as error:
        echo_err(f"riskc {verb}: cannot use the state file {path}: {first_line(error)}; {unchanged}")
        raise SystemExit(EXIT_FAILED) from None
    except OSError as error:
        echo_err(f"riskc {verb}: cannot use the state file {path}: {error.strerror or error}; {unchanged}")
        raise SystemExit(EXIT_FAILED) from None
    except (ValueError, KeyError, TypeError) as error:  # a value in the file that riskc never wrote
        echo_err(
            f"riskc {verb}: {path} holds data riskc cannot read ({error}): corrupt? `riskc audit verify` checks it"
        )
        raise SystemExit(EXIT_USAGE) from None


def pick_account(known_ids: list[int], config: Config, wanted: str | None) -> int:
    """The account a command acts on; see the module docstring."""
    if wanted is not None:
        entry = config.account(wanted)
        if entry is not None and entry.id is not None:
            return entry.id
        if re.fullmatch(r"\d+", wanted.strip()):
            return int(wanted)
        raise click.UsageError(f"--account {wanted}: not an account id, nor the name of a config account with an id")
    candidates = sorted(set(known_ids) | {a.id for a in config.accounts if a.id is not None})
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise click.UsageError(
            "no account is known yet (the daemon has not run, and the config names no account id): pass --account ID"
        )
    raise click.UsageError(f"more than one account: pass --account with one of {', '.join(map(str, candidates))}")


def account_entry(config: Config, account_id: int) -> AccountConfig | None:
    """The config entry that guards ``account_id``: by id, else the only entry there is, else the
    only ``all: true`` entry (an account a login listed)."""
    by_id = config.account(account_id)
    if by_id is not None:
        return by_id
    every = [a for a in config.accounts if a.all]
    return config.accounts[0] if len(config.accounts) == 1 else every[0] if len(every) == 1 else None


@dataclass(frozen=True, slots=True)
class PolicyClock:
    """Where the account's day is read: the timezone and trading-day start of its policy, and
    where that came from (a policy file, or the default when none could be read)."""

    timezone: str
    day_starts: dt.time
    source: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def policy_clock(config: Config, account_id: int) -> PolicyClock:
    """The header of the account's first policy (in the order the config lists them). A policy
    that does not check falls back to the default clock, saying so in ``source``."""
    from riskc.engine.daemon.config import policy_files

    entry = account_entry(config, account_id)
    files = policy_files(entry) if entry is not None else []
    if not files:
        return PolicyClock(DEFAULT_TIMEZONE, DEFAULT_DAY_START, "default")
    from riskc.dsl.checker import check
    from riskc.dsl.library import stdlib_sources
    from riskc.engine.core.snapshot import SCHEMA

    try:
        sources = [(str(p), p.read_text(encoding="utf-8")) for p in files]
    except (OSError, UnicodeDecodeError):
        return PolicyClock(DEFAULT_TIMEZONE, DEFAULT_DAY_START, "default (policy files unreadable)")
    result = check(sources, SCHEMA, stdlib_sources())
    if not result.ok or not result.policies:
        return PolicyClock(DEFAULT_TIMEZONE, DEFAULT_DAY_START, "default (the policies do not check)")
    settings = result.policies[0].settings
    return PolicyClock(settings.timezone, settings.trading_day_starts, result.policies[0].path)


BACKOFF_WINDOW = dt.timedelta(minutes=15)
BACKOFF_CAP = dt.timedelta(minutes=5)


def passphrase_backoff(denials: list[dt.datetime], now: dt.datetime) -> dt.timedelta:
    """How long to wait before the next passphrase attempt: 2 s after one wrong passphrase in
    the last 15 minutes, doubling with each (4 s, 8 s, ...) up to 5 minutes, counted from the
    last wrong one. The person most likely to guess is the locked-out trader at the keyboard."""
    if not denials:
        return dt.timedelta(0)
    delay = min(dt.timedelta(seconds=2 ** min(len(denials), 12)), BACKOFF_CAP)
    return max(dt.timedelta(0), denials[-1] + delay - now)


def throttle_passphrase(store: Any, verb: str, sleep: Callable[[float], None]) -> None:
    """Wait out the backoff before asking for the passphrase, saying so."""
    now = dt.datetime.now(dt.UTC)
    denials = store.passphrase_denials(now - BACKOFF_WINDOW)
    wait = passphrase_backoff(denials, now)
    if wait > dt.timedelta(0):
        echo_err(
            f"riskc {verb}: {len(denials)} wrong passphrase(s) in the last 15 minutes: waiting "
            f"{span_text(wait + dt.timedelta(seconds=0.999))} before this attempt"
        )
        sleep(wait.total_seconds())


def who() -> str:
    """The operator's login name, for the audit log's "by"."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


# -- showing times ------------------------------------------------------------------------------


def span_text(delta: dt.timedelta) -> str:
    """``1h 12m``, ``2d 3h``, ``4m 05s``, ``45s``: two units at most, rounded down."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def moment_text(moment: dt.datetime, zone: ZoneInfo, now: dt.datetime) -> str:
    """``17:00:00 CDT`` on ``now``'s date in ``zone``, else ``2026-01-14 17:00:00 CST``
    (``engine.core.timefmt``: one time format for people)."""
    from riskc.engine.core.timefmt import human_time

    return human_time(moment, zone, today=now)


def lockout_ends(lockout: Any, zone: ZoneInfo, now: dt.datetime) -> str:
    """How a lockout ends, in words: ``ends in 1h 12m, 17:00:00 CDT``,
    ``until manual unlock`` or ``while not account.can_trade``."""
    if lockout.until is not None:
        return f"ends in {span_text(lockout.until - now)}, {moment_text(lockout.until, zone, now)}"
    if lockout.condition == "manual":
        return "until manual unlock"
    condition = str(lockout.condition).removeprefix("while:").strip()
    if re.fullmatch(r"\w+", condition):  # the engine names the rule whose `while` holds it
        return f"while the condition of {condition} holds"
    return f"while {condition}"
