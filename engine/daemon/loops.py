"""Building the daemon's account loops from the config: policies, broker port and feed."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from riskc.engine.core.instruments import DEFAULT_INSTRUMENTS
from riskc.engine.daemon.config import login_credentials, policy_files
from riskc.engine.daemon.daemon import AccountLoop, recording_feed
from riskc.engine.runner import PolicySet
from riskc.engine.sim.broker import SimBroker

if TYPE_CHECKING:
    from riskc.engine.daemon.config import AccountConfig, Config, Credentials, GroupConfig
    from riskc.engine.daemon.daemon import Daemon


class PolicyLoadError(Exception):
    """The configured policies do not check at start: the daemon never runs with no policy."""


def load_policies(account: AccountConfig | GroupConfig, scope: str = "account") -> tuple[PolicySet, list[Path]]:
    paths = policy_files(account)
    policies, diagnostics, result = PolicySet.from_paths(paths, scope)
    if policies is None:
        rendered = [d.render(result.sources.get(d.span.file)) for d in diagnostics if d.is_error]
        raise PolicyLoadError(
            "\n".join(rendered) or f"no policy among {', '.join(map(str, paths))} (only rule definitions)"
        )
    return policies, list(account.policies)


async def build_loops(daemon: Daemon, credentials: Credentials | Mapping[str, Credentials] | None) -> list[AccountLoop]:
    """A loop per account. Live, one connection per login serves all its accounts (``logins:``
    gives each login's credentials, by name; without it ``credentials`` is the one login)."""
    config = daemon.config
    loops: list[AccountLoop] = []
    if config.broker.kind == "sim":
        for account in config.accounts:
            policies, paths, commitment = _policies(daemon, account)
            overrides = config.instrument_overrides()
            instruments = (
                DEFAULT_INSTRUMENTS.with_overrides(overrides, pinned=True) if overrides else DEFAULT_INSTRUMENTS
            )
            port, feed = SimBroker(instruments), recording_feed(config.broker.recording, config.broker.speed)
            loops.append(AccountLoop(daemon, policies, paths, port, feed, account.id, instruments=instruments))
            loops[-1].commitment = commitment
            loops[-1].entry = account
    else:
        from riskc.engine.daemon.live import login_loops

        if config.logins and not isinstance(credentials, Mapping):
            credentials = login_credentials(config)
        for login, entries in _by_login(config).items():
            found = credentials.get(login) if isinstance(credentials, Mapping) else credentials
            loops += await login_loops(daemon, entries, found, partial(_policies, daemon))
    for lp in loops:
        for path, digest in lp.policies.hashes:
            daemon.store.record_policy(path, digest, _now())
    _build_groups(daemon, loops)
    return loops


def _by_login(config: Config) -> dict[str | None, list[AccountConfig]]:
    grouped: dict[str | None, list[AccountConfig]] = {}
    for account in config.accounts:
        grouped.setdefault(config.login_of(account), []).append(account)
    return grouped


def _policies(daemon: Daemon, account: AccountConfig) -> tuple[PolicySet, list[Path], Any]:
    """The account's policies, their paths, and its commitment (``edits: next_trading_day``)."""
    if daemon.config.edits == "next_trading_day":
        return _committed(daemon, account)
    policies, paths = load_policies(account)
    return policies, paths, None


def _build_groups(daemon: Daemon, loops: list[AccountLoop]) -> None:
    """Each group of `groups:` over its members' engines; each member loop evaluates its groups
    after what it applies (engine/enforce/group.py)."""
    from riskc.engine.enforce.group import GroupGuard

    config = daemon.config
    for group in config.groups:
        commitment = None
        if config.edits == "next_trading_day":  # a group's edits wait as an account's do
            policies, _, commitment = _committed(daemon, group, "group")
        else:
            policies, _ = load_policies(group, "group")
        members = [lp for lp in (_loop_of(account, config, loops) for account in config.members(group)) if lp]
        guard = GroupGuard(group.name, policies, [lp.engine for lp in members])
        guard.paths = list(group.policies)
        guard.commitment = commitment
        for lp in members:
            lp.groups.append(guard)
        for path, digest in policies.hashes:
            daemon.store.record_policy(path, digest, _now())


def _loop_of(account: AccountConfig, config, loops: list[AccountLoop]) -> AccountLoop | None:
    """The loop of a config entry: the loop built for it, else by its id, else by its place (one
    loop per entry)."""
    built = next((lp for lp in loops if getattr(lp, "entry", None) is account), None)
    if built is not None:
        return built
    if account.id is not None:
        found = next((lp for lp in loops if lp.account_id == account.id), None)
        if found is not None:
            return found
    if len(loops) == len(config.accounts):
        return loops[config.accounts.index(account)]
    return None


def _committed(daemon: Daemon, account: AccountConfig | GroupConfig, scope: str = "account"):
    """``edits: next_trading_day``: the committed set and its staged edit (daemon/commitment.py).
    Files that do not check do not stop a guard that has a committed set: it runs that set and
    says loudly what is wrong with the files."""
    from riskc.engine.daemon.commitment import Commitment

    try:
        on_disk, paths = load_policies(account, scope)
    except PolicyLoadError as error:
        fallback = Commitment.committed_only(daemon, account, scope)
        if fallback is None:
            raise
        daemon.alerts.alert(
            "high", f"the policy files of {account.label} do not check; riskc runs the committed set:\n{error}"
        )
        return fallback[0], list(account.policies), fallback[1]
    files = policy_files(account)
    sources = tuple((str(p), p.read_text(encoding="utf-8")) for p in files)
    if tuple(path for path, _ in on_disk.hashes) != tuple(path for path, _ in sources):
        raise PolicyLoadError(f"the policy files of {account.label} changed while riskc started; start it again")
    read, _, _ = PolicySet.from_sources(list(sources), scope)
    if read is None or read.digest != on_disk.digest:
        raise PolicyLoadError(f"the policy files of {account.label} changed while riskc started; start it again")
    policies, commitment = Commitment.at_start(daemon, account, read, sources, scope)
    return policies, paths, commitment


def _now():
    import datetime as dt

    return dt.datetime.now(dt.UTC)
