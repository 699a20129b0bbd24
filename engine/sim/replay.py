"""`riskc replay`: the engine over a recording, with the simulated broker and the recorded clock
(PRODUCT.md §5, §6).

Deterministic: the only inputs are the recording and the policies (no wall clock, no randomness,
ids from counters), so the same input gives the same output byte for byte. The 1-second clock
ticks at every whole second of recorded time, also between messages, so a 30-second grace period
ends at the right second even when the feed is quiet. Calls riskc makes go to ``SimBroker``,
whose answers (acknowledgements, fills at the next quote) are applied right after the message
that caused them.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from riskc.engine.adapters.port import BrokerError
from riskc.engine.adapters.projectx.decode import DECODE_ERRORS, decode, quote
from riskc.engine.adapters.projectx.intake import Malformed, Message
from riskc.engine.core.events import MarketTrade, Quote
from riskc.engine.core.instruments import DEFAULT_INSTRUMENTS, Instruments
from riskc.engine.enforce.enforcer import Effects
from riskc.engine.enforce.executor import took_effect
from riskc.engine.runner import NO_EFFECTS, Engine, PolicySet
from riskc.engine.sim.broker import SimBroker
from riskc.engine.store import Store

log = logging.getLogger("riskc.replay")
SECOND = dt.timedelta(seconds=1)
# A longer silence of the recording, while the account is flat with nothing working or in flight,
# is jumped rather than walked second by second (see Replay.tick_until).
IDLE_GAP = dt.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Backwards:
    """A message stamped before one already replayed: applied in file order, at the clock's time
    (the clock never goes back), and reported."""

    line: int
    ts: dt.datetime
    clock: dt.datetime

    def describe(self) -> str:
        behind = (self.clock - self.ts).total_seconds()
        return (
            f"line {self.line}: its time {self.ts.isoformat()} is {behind:g} s before the clock "
            f"({self.clock.isoformat()}): applied at the clock's time, which never goes back"
        )


@dataclass(slots=True)
class ReplaySummary:
    messages: int = 0
    events: int = 0
    ticks: int = 0
    calls: int = 0
    malformed: list[Malformed] = field(default_factory=list)
    backwards: list[Backwards] = field(default_factory=list)
    jumped: dt.timedelta = dt.timedelta(0)  # recorded time jumped over while idle
    actions: Counter = field(default_factory=Counter)  # (rule, action) -> count
    first: dt.datetime | None = None
    last: dt.datetime | None = None
    other_accounts: Counter = field(default_factory=Counter)  # account id -> its user messages skipped

    def saw(self, ts: dt.datetime) -> None:
        """One more message, stamped ``ts``: counted, and the span of the recording grown."""
        self.messages += 1
        last = self.last
        if last is None:
            self.first = self.last = ts
        elif ts >= last:
            self.last = ts

    def to_json(self) -> dict[str, Any]:
        others = {"other_accounts": {str(a): n for a, n in sorted(self.other_accounts.items())}}
        return ({} if not self.other_accounts else others) | {
            "messages": self.messages,
            "events": self.events,
            "ticks": self.ticks,
            "broker_calls": self.calls,
            "malformed": len(self.malformed),
            "backwards": len(self.backwards),
            "jumped_seconds": int(self.jumped.total_seconds()),
            "actions": [{"rule": r, "action": a, "count": n} for (r, a), n in sorted(self.actions.items())],
            "from": self.first.isoformat() if self.first else None,
            "to": self.last.isoformat() if self.last else None,
        }


Emit = Callable[[dict[str, Any]], None]


class RecordedClock:
    """The 1-second clock of a recording: it ticks at every whole second of recorded time after
    the first message, also between messages. Shared by `riskc replay` and the daemon's sim feed."""

    __slots__ = ("next", "jumped")

    def __init__(self) -> None:
        self.next: dt.datetime | None = None  # the next tick due
        self.jumped = dt.timedelta(0)  # recorded time jumped over while idle (see until)

    def due(self, ts: dt.datetime) -> Iterator[dt.datetime]:
        """The ticks up to and including ``ts``, in order (none for the first message)."""
        if self.next is None:
            self.next = ts.replace(microsecond=0) + SECOND
            return
        while self.next <= ts:
            tick = self.next
            self.next += SECOND
            yield tick

    def until(
        self,
        ts: dt.datetime,
        idle: Callable[[], bool],
        moments: Callable[[dt.datetime, dt.datetime], Iterable[dt.datetime]],
    ) -> Iterator[dt.datetime]:
        """``due``, except that a silence longer than ``IDLE_GAP`` while ``idle()`` is jumped:
        it ticks only at ``moments(start, ts)``, where time alone changes something, then from
        ``ts``'s second on; ``jumped`` adds up the recorded time jumped over."""
        start = self.next
        if start is not None and ts - start > IDLE_GAP and idle():
            yield from moments(start, ts)
            self.next = ts.replace(microsecond=0)
            self.jumped += self.next - start
        yield from self.due(ts)


class Replay:
    def __init__(
        self,
        policies: PolicySet,
        store: Store,
        *,
        instruments: Instruments = DEFAULT_INSTRUMENTS,
        emit: Emit | None = None,
        account_id: int | None = None,
    ) -> None:
        self.engine = Engine(policies, store, account_id=account_id, instruments=instruments)
        self.engine.watch_store = False  # the recording is the only input: no other process writes lockouts
        self.sim = SimBroker(instruments)
        self.summary = ReplaySummary()
        self.emit = emit or (lambda record: None)
        self.clock = RecordedClock()

    def run(self, items: Iterable[Quote | MarketTrade | Message | Malformed]) -> ReplaySummary:
        feed, feed_quote, on_quote, handle = self.feed, self._quote, self.engine.on_quote, self._handle
        clock, summary, sim, book = self.clock, self.summary, self.sim, self.engine.book
        waiting = sim.waiting  # contracts whose market orders fill at their next price
        for item in items:
            kind = type(item)
            if kind is not Quote and kind is not MarketTrade:
                feed(item)
                continue
            # Most lines: a quote (or trade print) inside the clock's second, in time order, that
            # fills nothing: what _quote does, in short (the engine's part is Engine.on_quote).
            ts, last = item.time, summary.last
            if (
                last is not None
                and ts >= last
                and clock.next is not None
                and ts < clock.next
                and ts >= book.now
                and item.contract_id not in waiting
            ):
                summary.messages += 1
                summary.last = ts
                if ts > sim.now:
                    sim.now = ts
                effects = on_quote(item)
                if effects is not NO_EFFECTS:
                    handle(effects)
            else:
                feed_quote(item)
        summary.events = self.engine.events
        return summary

    def _quote(self, quote: Quote | MarketTrade) -> None:
        """``feed`` for a quote or trade-print line read as its event alone: the same steps,
        without the decode (intake did it) or a ``Message`` (the simulated broker reads the event)."""
        engine = self.engine
        self._arrive(quote.time, 0)  # no line: read_feed sends a quote behind an earlier line as a Message
        triggered = self.sim.observe_quote(quote)
        effects = engine.on_quote(quote)
        if effects is not NO_EFFECTS:
            self._handle(effects)
        if triggered:
            for message in triggered:
                self._apply(message)
        self.summary.events = engine.events

    def feed(self, item: Quote | MarketTrade | Message | Malformed) -> None:
        if type(item) is Quote or type(item) is MarketTrade:
            self._quote(item)
            return
        summary = self.summary
        if type(item) is Malformed:
            summary.malformed.append(item)  # reported once, by whoever reads the summary
            log.debug("malformed recording line skipped: %s", item.describe())
            return
        ts, engine = item.ts, self.engine
        self._arrive(ts, item.line)
        try:  # decoded before the simulated broker sees it: it must not see what the book cannot use
            # a quote (most lines) has one event, decoded by intake when in its usual shape: no list to build
            event = item.event
            if event is not None:
                updates: tuple | list = (event,)
            else:
                updates = (quote(item.args, ts),) if item.target == "GatewayQuote" else decode(item)
            if item.hub == "user" and self._foreign(updates):
                return  # another account's: neither this book's nor this simulated broker's
            triggered = self.sim.observe(item)
        except DECODE_ERRORS as error:
            engine.malformed += 1
            summary.malformed.append(Malformed(item.line, _why(error), item.to_json()))
            log.warning("malformed recording line skipped: %s", summary.malformed[-1].describe())
            return
        for update in updates:
            effects = engine.on_event(update)
            if effects is not NO_EFFECTS:
                self._handle(effects)
        if triggered:
            for message in triggered:
                self._apply(message)
        summary.events = engine.events

    def _arrive(self, ts: dt.datetime, line: int) -> None:
        """What a message does before its events: the clock's ticks up to it, its count and the
        span of the recording in the summary, and a time behind the clock reported."""
        summary, clock = self.summary, self.clock
        if clock.next is None or ts >= clock.next:  # most messages share their second
            self.tick_until(ts)
        summary.saw(ts)
        now = self.engine.book.now
        if ts < now:
            summary.backwards.append(Backwards(line, ts, now))

    def _foreign(self, updates) -> bool:
        """A user message only of accounts other than the one replayed (a recording of several
        accounts replayed with one policy): counted and skipped, so the simulated broker does not
        mix another account's orders and positions into this one's (`--config` replays them all)."""
        book = self.engine.book
        ids = {u.account_id for u in updates if getattr(u, "account_id", None) is not None}
        if not ids or any(book.follows(account_id) for account_id in ids):
            return False
        for account_id in ids:
            self.summary.other_accounts[account_id] += 1
        return True

    def tick_until(self, ts: dt.datetime) -> None:
        """The 1-second ticks up to ``ts``. A silence longer than ``IDLE_GAP`` while the account
        is flat, with no order working and no call in flight, is jumped: nothing a rule can do
        there needs a position or an order, so it ticks only where time itself changes the
        state (each trading-day start, each lockout's end), then from ``ts``'s second on. A
        recording with one line a year ahead takes a few hundred ticks, not 31 million."""
        clock = self.clock
        for tick in clock.until(ts, self._idle, self._moments):
            self._tick(tick)
        self.summary.jumped = clock.jumped

    def _tick(self, tick: dt.datetime) -> None:
        self.summary.ticks += 1
        self._handle(self.engine.on_tick(tick))

    def _idle(self) -> bool:
        engine = self.engine
        return not (engine.book.positions or engine.book.orders or engine.enforcer.pending or engine.enforcer.orphans)

    def _moments(self, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
        """Whole seconds in [start, end) where time alone changes something: day starts, lockout ends."""
        engine, moments = self.engine, set()
        day_start = engine.calendar.next_trading_day_start(start)
        while day_start < end:
            moments.add(day_start)
            day_start = engine.calendar.next_trading_day_start(day_start)
        for lockout in engine.store.active_lockouts(engine.book.account.id, start):
            if lockout.until is not None and start <= lockout.until < end:
                moments.add(lockout.until)
        ceiling = [m if m.microsecond == 0 else m.replace(microsecond=0) + SECOND for m in moments]
        return sorted(m for m in ceiling if start <= m < end)

    def _handle(self, effects: Effects) -> None:
        if not effects:
            return
        engine, summary = self.engine, self.summary
        for record in effects.records:
            summary.actions[(record["rule"], record["action"])] += 1
            self.emit(record)
        now = engine.book.now
        answers: list[Message] = []
        for call in effects.calls:
            summary.calls += 1
            # The simulated broker answers at once, in this process: nothing can die between
            # the call and its `sent` mark, which is written after it (the call is planned
            # durably before) so the breach reaches the adapter after one store transaction.
            try:
                answers += self.sim.submit(call, now)
            except BrokerError as error:
                # Like the live executor: a refused call whose effect is already there (the
                # position was flat by then) is done, not failed.
                engine.mark_sent(call, now)
                done = took_effect(call, self.sim.state_now())
                engine.finished(call, done, now, str(error), result={"sim": True, "note": str(error)})
                continue
            engine.mark_sent(call, now)
            engine.finished(call, True, now, result={"sim": True})
        for message in answers:
            self._apply(message)

    def _apply(self, message: Message) -> None:
        """A message of the simulated broker's: decoded like any other (it cannot be malformed)."""
        for update in decode(message):
            self._handle(self.engine.on_event(update))


def _why(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"missing field {error.args[0]!r}"
    return str(error) or type(error).__name__
