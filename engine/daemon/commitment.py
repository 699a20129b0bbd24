"""``edits: next_trading_day`` (PRODUCT.md §9): a commitment device. The trader who loosens a
limit in the heat of the moment gets it tomorrow, not now.

An edit is checked at once, exactly as a hot reload checks it (parse, check, compile, the
policy's own fixtures); a broken edit is reported at once, not at the open. A good one is
*staged*: stored with its sources, shown as pending (`riskc status`, the board), and swapped in
on the first tick at or after the next trading-day start. The stored sources are what becomes
active, so the edit cannot change between being checked and being applied.

Restarting riskc does not skip the wait: at start the committed set comes from the state file,
and files that differ from it are staged (keeping the time of an edit staged before). An admin
can apply a staged edit at once with `riskc reload --now` (passphrase, audited).

An account's policies are kept under its label (`COPY-A (1001)`), a group's under its own
(`group copiers`, with ``scope="group"``): the same wait, the same restart rules, the same
`riskc reload --now`.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from riskc.engine.core.calendar import TradingCalendar
from riskc.engine.core.timefmt import human_time
from riskc.engine.runner import PolicySet
from riskc.engine.store import policy_sets
from riskc.engine.store.codec import parse_time

if TYPE_CHECKING:
    from riskc.engine.daemon.config import AccountConfig, GroupConfig
    from riskc.engine.daemon.daemon import Daemon


class Commitment:
    """One account's (or group's) committed policy set and its staged edit, if any."""

    def __init__(self, daemon: Daemon, key: str, calendar: TradingCalendar, scope: str = "account") -> None:
        self.daemon = daemon
        self.key = key
        self.calendar = calendar
        self.scope = scope  # the sets are compiled as an account's or a group's (`scope group`)
        self.staged = policy_sets.get(daemon.store, key, "staged")

    # -- at start ---------------------------------------------------------------------------

    @classmethod
    def at_start(
        cls,
        daemon: Daemon,
        entry: AccountConfig | GroupConfig,
        on_disk: PolicySet,
        sources: tuple[tuple[str, str], ...],
        scope: str = "account",
    ) -> tuple[PolicySet, Commitment]:
        """The set to run now: the committed one from the state file, else the files (which
        then become the committed set). Files that differ from the committed set are staged."""
        store, key = daemon.store, entry.label
        now = dt.datetime.now(dt.UTC)
        active_row = policy_sets.get(store, key, "active")
        zone, day_starts = on_disk.clock
        calendar = TradingCalendar(zone, day_starts)
        if active_row is None or active_row.digest == on_disk.digest:
            policy_sets.put(store, key, "active", on_disk.digest, sources, now)
            if policy_sets.get(store, key, "staged") is not None:
                policy_sets.drop_staged(store, key)  # the edit was undone while riskc was down
            return on_disk, cls(daemon, key, calendar, scope)
        committed, diagnostics, _ = PolicySet.from_sources(list(active_row.sources), scope)
        if committed is None or committed.clock != on_disk.clock:
            # The committed set no longer compiles (a riskc upgrade changed the language), or the
            # files move the trading clock: run the files, say so loudly.
            daemon.alerts.alert("high", f"the committed policy set of {key} cannot run any more; using the files")
            policy_sets.put(store, key, "active", on_disk.digest, sources, now)
            return on_disk, cls(daemon, key, calendar, scope)
        commitment = cls(daemon, key, calendar, scope)
        if commitment.staged is None or commitment.staged.digest != on_disk.digest:
            commitment._stage(on_disk.digest, sources, now, now)
        return committed, commitment

    @classmethod
    def committed_only(
        cls, daemon: Daemon, entry: AccountConfig | GroupConfig, scope: str = "account"
    ) -> tuple[PolicySet, Commitment] | None:
        """The committed set alone, for a start whose policy files do not check; None if there
        is none (a first start) or it no longer compiles."""
        row = policy_sets.get(daemon.store, entry.label, "active")
        committed = PolicySet.from_sources(list(row.sources), scope)[0] if row is not None else None
        if committed is None:
            return None
        zone, day_starts = committed.clock
        return committed, cls(daemon, entry.label, TradingCalendar(zone, day_starts), scope)

    # -- while running ----------------------------------------------------------------------

    def stage(self, policies: PolicySet, sources: tuple[tuple[str, str], ...], engine_now: dt.datetime | None) -> None:
        """A checked edit arrived (hot reload): stage it for the next trading-day start (of the
        engine's time; the wall clock before the first message), or drop the staged one when
        the files are back to the set in force."""
        now = dt.datetime.now(dt.UTC)
        engine_now = engine_now or now
        active = policy_sets.get(self.daemon.store, self.key, "active")
        if active is not None and active.digest == policies.digest:
            if self.staged is not None:
                policy_sets.drop_staged(self.daemon.store, self.key)
                self.staged = None
                self.daemon.alerts.alert("info", f"policy edit withdrawn: {self.key} stays on {policies.digest}")
            return
        if self.staged is not None and self.staged.digest == policies.digest:
            return  # the same edit again (a touch, a save without change): its wait is not restarted
        self._stage(policies.digest, sources, now, engine_now)

    def _stage(self, digest: str, sources: tuple[tuple[str, str], ...], now: dt.datetime, engine_now: dt.datetime):
        activates_at = self.calendar.next_trading_day_start(engine_now)
        policy_sets.put(self.daemon.store, self.key, "staged", digest, sources, now, activates_at)
        self.staged = policy_sets.get(self.daemon.store, self.key, "staged")
        when = human_time(activates_at, self.calendar.timezone)
        self.daemon.alerts.alert(
            "info", f"policy edit {digest} checked and staged: active from {when} (edits: next_trading_day)"
        )
        self.daemon.log_record({"kind": "reload", "outcome": "staged", "digest": digest, "activates_at": when})

    def due(self, engine_now: dt.datetime) -> tuple[PolicySet, tuple[tuple[str, str], ...]] | None:
        """On each tick: the staged set, once the boundary is reached or an admin asked for it
        now (`riskc reload --now` writes that from another process). One small query a tick."""
        row = self.daemon.store.db.execute(
            "SELECT digest, activates_at, apply_now FROM policy_sets WHERE account = ? AND role = 'staged'", [self.key]
        ).fetchone()
        if row is None:
            self.staged = None
            return None
        if self.staged is None or (self.staged.digest, self.staged.apply_now) != (row[0], bool(row[2])):
            self.staged = policy_sets.get(self.daemon.store, self.key, "staged")
        if not (row[2] or engine_now >= parse_time(row[1])):
            return None
        staged = self.staged
        policies, _, _ = PolicySet.from_sources(list(staged.sources), self.scope)
        policy_sets.activate(self.daemon.store, self.key, dt.datetime.now(dt.UTC))
        self.staged = None
        if policies is None:  # checked when staged, so only a riskc upgrade in between gets here
            self.daemon.alerts.alert("high", f"the staged policy edit {staged.digest} no longer compiles; not applied")
            return None
        how = "by `riskc reload --now`" if staged.apply_now else "at the trading-day start"
        self.daemon.alerts.alert("info", f"staged policy edit {staged.digest} is now active ({how})")
        self.daemon.log_record({"kind": "reload", "outcome": "activated", "digest": staged.digest, "how": how})
        return policies, staged.sources

    def pending(self) -> dict[str, Any] | None:
        staged = self.staged
        if staged is None:
            return None
        return {
            "hash": staged.digest,
            "since": staged.since.isoformat(),
            "activates_at": staged.activates_at.isoformat() if staged.activates_at else None,
            "activates_local": human_time(staged.activates_at, self.calendar.timezone) if staged.activates_at else None,
            "apply_now": staged.apply_now,
        }
