"""Two policy sets over the same recording (PRODUCT.md §1: see what a policy would have done
before trusting it): `riskc diff` replays each set with the simulated broker, exactly as
`riskc replay` does (``Replay``), and compares the actions, the per-rule counts and the simulated
realized P&L of each trading day."""

from __future__ import annotations

import datetime as dt
import tempfile
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from riskc.engine.adapters.projectx.intake import read_feed
from riskc.engine.runner import PolicySet
from riskc.engine.sim.replay import Replay, ReplaySummary
from riskc.engine.store import Store


@dataclass(frozen=True, slots=True)
class Outcome:
    """One policy set over one recording: its action records (§6.2), in order, and the realized
    P&L of each trading day the recording touched (fills, the simulated closes included)."""

    records: tuple[dict[str, Any], ...]
    realized: tuple[tuple[dt.date, Decimal], ...]
    summary: ReplaySummary


@dataclass(frozen=True, slots=True)
class SessionDiff:
    session: Path
    old: Outcome
    new: Outcome

    @property
    def first_divergence(self) -> int | None:
        """Index of the first action that is not the same (time, action, target, rule) under
        both, None when the actions are the same."""
        old, new = list(map(_key, self.old.records)), list(map(_key, self.new.records))
        for i, (a, b) in enumerate(zip(old, new, strict=False)):
            if a != b:
                return i
        return None if len(old) == len(new) else min(len(old), len(new))

    @property
    def same(self) -> bool:
        return self.first_divergence is None

    def counts(self) -> list[tuple[str, str, int, int]]:
        """(rule, action, count under old, count under new), sorted."""
        old = Counter((r["rule"], r["action"]) for r in self.old.records)
        new = Counter((r["rule"], r["action"]) for r in self.new.records)
        return [(rule, action, old[(rule, action)], new[(rule, action)]) for rule, action in sorted(old | new)]

    def days(self) -> list[tuple[dt.date, Decimal, Decimal]]:
        old, new = dict(self.old.realized), dict(self.new.realized)
        zero = Decimal("0.00")
        return [(day, old.get(day, zero), new.get(day, zero)) for day in sorted(old.keys() | new.keys())]


def target_of(record: dict[str, Any]) -> str:
    return str(record.get("symbol") or record.get("contract_id") or "account")


def _key(record: dict[str, Any]) -> tuple:
    return (record.get("ts"), record["action"], target_of(record), record["rule"])


def replay_outcome(policies: PolicySet, recording: Path) -> Outcome:
    """``riskc replay``'s run, on a scratch store: the records and the days' realized P&L."""
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="riskc-diff-") as scratch:
        store = Store.open(Path(scratch) / "state.db", synchronous="OFF")
        try:
            replay = Replay(policies, store, emit=records.append)
            summary = replay.run(read_feed(str(recording)))
            account = replay.engine.book.account.id
            days = sorted(_trading_days(replay, summary))
            realized = tuple((day, store.day_totals(account, day).realized_pnl) for day in days)
        finally:
            store.close()
    return Outcome(tuple(records), realized, summary)


def _trading_days(replay: Replay, summary: ReplaySummary) -> set[dt.date]:
    calendar = replay.engine.calendar
    days = set()
    for moment in (summary.first, summary.last):
        if moment is not None:
            try:
                days.add(calendar.trading_day(moment))
            except ValueError:  # recorded on a day the exchange is closed: nothing to total
                continue
    return days


def diff_session(old: PolicySet, new: PolicySet, recording: Path) -> SessionDiff:
    return SessionDiff(recording, replay_outcome(old, recording), replay_outcome(new, recording))
