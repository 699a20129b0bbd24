"""`riskc replay --config`: a recording that holds several accounts (PRODUCT.md §6.1, lines from
several `accountId`s), each account replayed by its own ``Replay`` (its book, engine and
simulated broker), on one recorded clock, with the group policies (§9) evaluated over them after
every message and every tick (engine/enforce/group.py).

User-hub messages go to the account they name (a message listing entities of several accounts is
split); market-hub messages (quotes) go to every account. Deterministic like ``Replay``: the
accounts are fed in the order riskc.yaml lists them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from riskc.engine.adapters.projectx.decode import DECODE_ERRORS, decode
from riskc.engine.adapters.projectx.intake import Malformed, Message
from riskc.engine.core.instruments import DEFAULT_INSTRUMENTS, Instruments
from riskc.engine.core.snapshot import Event
from riskc.engine.enforce.group import GroupGuard, group_event, moves_group
from riskc.engine.runner import PolicySet
from riskc.engine.sim.replay import Emit, RecordedClock, Replay, ReplaySummary
from riskc.engine.store import Store


@dataclass(frozen=True, slots=True)
class Member:
    """One account to replay: its id (or only its name, learnt from its account messages)."""

    account_id: int | None
    name: str | None
    policies: PolicySet


@dataclass(frozen=True, slots=True)
class GroupSpec:
    name: str
    policies: PolicySet
    accounts: tuple[int, ...]  # indexes into the members


def account_of(entity: Any, target: str) -> tuple[Any, Any]:
    """(account id, account name) a user-hub entity belongs to; (None, None) when it says not."""
    data = entity.get("data", entity) if isinstance(entity, dict) else None
    if not isinstance(data, dict):
        return None, None
    if target == "GatewayUserAccount":
        return data.get("id"), data.get("name")
    return data.get("accountId"), None


def split_by_account(message: Message) -> list[tuple[Any, Any, Message]]:
    """(account id, account name, message) for each account a user-hub message speaks of, in
    the order they come; a market message (or one naming no account) is (None, None, message)."""
    if message.hub != "user":
        return [(None, None, message)]
    entities = [e for arg in message.args for e in (arg if isinstance(arg, list) else [arg])]
    owners = [account_of(e, message.target) for e in entities]
    if len({o[0] for o in owners}) <= 1:
        account_id, name = owners[0] if owners else (None, None)
        return [(account_id, name, message)]
    parts: dict[Any, list] = {}
    names: dict[Any, Any] = {}
    for entity, (account_id, name) in zip(entities, owners, strict=True):
        parts.setdefault(account_id, []).append(entity)
        names.setdefault(account_id, name)
    return [
        (account_id, names[account_id], Message(message.ts, message.hub, message.target, [part], message.line))
        for account_id, part in parts.items()
    ]


class GroupReplay:
    def __init__(
        self,
        members: Sequence[Member],
        groups: Sequence[GroupSpec],
        store: Store,
        *,
        instruments: Instruments = DEFAULT_INSTRUMENTS,
        emit: Emit | None = None,
        label: bool = True,
    ) -> None:
        """``label``: records carry the `account` they are about (several accounts replayed)."""
        emit = emit or (lambda record: None)
        self.clock = RecordedClock()
        self.replays: list[Replay] = []
        for member in members:
            replay = Replay(member.policies, store, instruments=instruments, account_id=member.account_id)
            replay.clock = self.clock  # one recorded clock: ticked here, for every account at once
            replay.emit = _with_account(emit, replay) if label else emit
            self.replays.append(replay)
        self.names = {m.name: i for i, m in enumerate(members) if m.account_id is None and m.name}
        self.by_id = {m.account_id: i for i, m in enumerate(members) if m.account_id is not None}
        self.guards = [GroupGuard(g.name, g.policies, [self.replays[i].engine for i in g.accounts]) for g in groups]
        self._replay_of = {id(r.engine): r for r in self.replays}
        self.summary = ReplaySummary()

    def run(self, items: Iterable[Message | Malformed]) -> ReplaySummary:
        for item in items:
            self.feed(item)
        return self.finish()

    def feed(self, item: Message | Malformed) -> None:
        summary = self.summary
        if type(item) is Malformed:
            summary.malformed.append(item)
            return
        ts = item.ts
        if self.clock.next is None or ts >= self.clock.next:
            self.tick_until(ts)
        summary.saw(ts)
        market = []
        for account_id, name, part in split_by_account(item):
            if account_id is None and name is None:
                market.append(part)
                continue
            index = self._member(account_id, name)
            if index is None:  # an account the config does not name: counted in the summary, skipped
                self.summary.other_accounts[account_id if account_id is not None else name] += 1
                continue
            replay = self.replays[index]
            replay.feed(part)
            self._after(replay.engine, part)
        for part in market:
            for replay in self.replays:
                replay.feed(part)
            self._after(None, part)

    def _member(self, account_id: Any, name: Any) -> int | None:
        try:
            key = int(account_id) if account_id is not None else None
        except (TypeError, ValueError):
            return None
        index = self.by_id.get(key)
        if index is None and name is not None and name in self.names:
            index = self.by_id[key] = self.names.pop(name)  # an account configured by name: its id, now known
        return index

    def _after(self, engine, message: Message) -> None:
        """The group policies after ``engine`` (None: every account) applied ``message``."""
        if not self.guards:
            return
        try:
            updates = (message.event,) if message.event is not None else decode(message)
        except DECODE_ERRORS:
            return  # reported by the member that could not decode it
        for guard in self.guards:
            if engine is not None and not guard.holds(engine):
                continue
            for update in updates:
                event = group_event(update)
                if event is not None and moves_group(guard, update):
                    self._handle(guard.evaluate(event))

    def _handle(self, results) -> None:
        for engine, effects in results:
            self._replay_of[id(engine)]._handle(effects)

    # -- the clock -------------------------------------------------------------------------------

    def tick_until(self, ts: dt.datetime) -> None:
        """Every account's 1-second ticks up to ``ts``, then the groups; a long silence while
        every account is idle is jumped as ``Replay.tick_until`` does for one."""
        clock = self.clock
        for tick in clock.until(ts, self._idle, self._moments):
            self._tick(tick)
        self.summary.jumped = clock.jumped

    def _idle(self) -> bool:
        return all(r._idle() for r in self.replays)

    def _moments(self, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
        return sorted({m for r in self.replays for m in r._moments(start, end)})

    def _tick(self, tick: dt.datetime) -> None:
        self.summary.ticks += 1
        for replay in self.replays:
            replay._tick(tick)
        for guard in self.guards:
            self._handle(guard.evaluate(Event(kind="clock", time=tick)))

    def finish(self) -> ReplaySummary:
        """The summary of every account together."""
        summary = self.summary
        summary.events = sum(r.engine.events for r in self.replays)
        summary.calls = sum(r.summary.calls for r in self.replays)
        for replay in self.replays:
            summary.actions.update(replay.summary.actions)
        # A line every account read (a quote) is reported once.
        summary.malformed = _by_line(summary.malformed, *(r.summary.malformed for r in self.replays))
        summary.backwards = _by_line(summary.backwards, *(r.summary.backwards for r in self.replays))
        return summary


def _by_line(*lists: list) -> list:
    """The items of ``lists``, the first of each line, in line order."""
    first: dict[int, Any] = {}
    for items in lists:
        for item in items:
            first.setdefault(item.line, item)
    return sorted(first.values(), key=lambda item: item.line)


def _with_account(emit: Emit, replay: Replay) -> Emit:
    """§6.2 records with the account they are about, after `ts`."""

    def emit_for(record: dict[str, Any]) -> None:
        emit({"ts": record["ts"], "account": replay.engine.book.account.id, **record})

    return emit_for
