"""The engine: one account's book, its policies, its state and its enforcement, driven by messages
and clock ticks (PRODUCT.md §2). The live daemon and `riskc replay` run this same code; only the
clock (wall or recorded) and the broker port (projectx, sim, dry-run) differ.

``Engine.on_event`` (a typed broker event) and ``Engine.on_tick`` are synchronous and return ``Effects``: the §6.2
records of what changed, the broker calls to execute (already planned in the store under their
idempotency keys) and the alerts to send. The caller executes the calls and reports each outcome
with ``Engine.finished``. Policies are swapped with ``Engine.swap`` between two events, never
during an evaluation.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from riskc.dsl.compiler import Program, target_id
from riskc.dsl.decision import Action, Decision, plan
from riskc.dsl.errors import BAD_SETTING, SCOPE_ERROR, Diagnostic, Span
from riskc.engine.adapters.port import BrokerCall, BrokerState
from riskc.engine.core.book import NEVER, Book
from riskc.engine.core.calendar import TradingCalendar
from riskc.engine.core.events import MARKET_EVENTS, BrokerEvent, Fill, MarketTrade, OrderUpdate, PositionUpdate, Quote
from riskc.engine.core.history import store_history
from riskc.engine.core.instruments import DEFAULT_INSTRUMENTS, Instruments, symbol_of
from riskc.engine.core.snapshot import EVENT_KINDS, Event, Position, Session
from riskc.engine.enforce.enforcer import Effects, Enforcer
from riskc.engine.enforce.executor import took_effect
from riskc.engine.enforce.stale_prices import price_rules, without_prices
from riskc.engine.enforce.trading_state import Trading
from riskc.engine.store import Lockout, Store

log = logging.getLogger("riskc.engine")
NO_EFFECTS = Effects()  # what most events produce: compare with `is`


@dataclass(frozen=True, slots=True)
class PolicySet:
    """The compiled policies of one account and the content hash of each source file."""

    programs: tuple[Program, ...]
    hashes: tuple[tuple[str, str], ...]  # (path, sha256)

    @property
    def digest(self) -> str:
        """One hash for the whole set: what every decision in the audit log carries."""
        return _digest(self.hashes)

    @classmethod
    def from_sources(cls, sources: list[tuple[str, str]], scope: str = "account"):
        """(PolicySet or None, diagnostics, check result) for ``(path, text)`` pairs. ``scope``:
        an account's policies, or a group's (`scope group`, engine/enforce/group.py)."""
        from riskc.engine.core.policy_loader import load_sources

        loaded = load_sources(sources)
        if not loaded.ok or not loaded.programs:
            return None, loaded.diagnostics, loaded.result
        clash = _clock_clash(loaded.programs) or _scope_clash(loaded.programs, scope)
        if clash is not None:
            return None, (*loaded.diagnostics, clash), loaded.result
        hashes = tuple((path, hashlib.sha256(text.encode()).hexdigest()) for path, text in sources)
        return cls(loaded.programs, hashes), loaded.diagnostics, loaded.result

    @classmethod
    def from_paths(cls, paths: list[Path], scope: str = "account"):
        return cls.from_sources([(str(p), p.read_text(encoding="utf-8")) for p in paths], scope)

    @property
    def clock(self) -> tuple[str, dt.time]:
        """The trading clock every policy of the set shares: (timezone, trading_day_starts)."""
        settings = self.programs[0].policy.settings
        return settings.timezone, settings.trading_day_starts


def _clock_clash(programs: tuple[Program, ...]) -> Diagnostic | None:
    """One account has one book and one trading day: its policies must agree on the timezone
    and the day start (else rules would see another policy's session and day)."""
    first = programs[0].policy
    for program in programs[1:]:
        settings = program.policy.settings
        if (settings.timezone, settings.trading_day_starts) != (
            first.settings.timezone,
            first.settings.trading_day_starts,
        ):
            return Diagnostic(
                BAD_SETTING,
                "the policies of one account must share `timezone` and `trading_day_starts`",
                Span(program.policy.path, 1, 1, 1, 2),
                have=f"{settings.timezone}, day from {settings.trading_day_starts:%H:%M}",
                want=f"{first.settings.timezone}, day from {first.settings.trading_day_starts:%H:%M} "
                f"(as in {first.path})",
            )
    return None


def _scope_clash(programs: tuple[Program, ...], scope: str) -> Diagnostic | None:
    """A group policy (`scope group`) reads a group snapshot: it cannot guard one account, nor
    an account policy a group."""
    for program in programs:
        if program.policy.settings.scope != scope:
            wrong = program.policy.settings.scope
            name = program.policy.settings.name or program.policy.path
            kind = "a group" if wrong == "group" else "an account"
            wanted = "a group's" if scope == "group" else "an account's"
            return Diagnostic(
                SCOPE_ERROR,
                f"`{name}` is {kind} policy (scope {wrong}), given as {wanted}",
                Span(program.policy.path, 1, 1, 1, 2),
                help="list a `scope group` policy under `groups:` in riskc.yaml (replay it with --config), "
                "and account policies under `accounts:`",
            )
    return None


class Engine:
    def __init__(
        self,
        policies: PolicySet,
        store: Store,
        *,
        account_id: int | None = None,
        instruments: Instruments = DEFAULT_INSTRUMENTS,
        persist_book: bool = False,
    ) -> None:
        settings = policies.programs[0].policy.settings
        self.calendar = TradingCalendar(settings.timezone, settings.trading_day_starts)
        self.zone = ZoneInfo(settings.timezone)
        self.store = store
        eod_high = store.eod_high_balance(account_id) if account_id is not None else None
        self.book = Book(self.calendar, instruments, account_id=account_id, eod_high_balance=eod_high)
        self.book.history = store_history(store)  # `week.*`, fills of the days before (PRODUCT.md §3.6)
        high_water = store.intraday_high_balance(account_id) if account_id is not None else None
        if high_water is not None:
            self.book.account.high_water_balance = high_water  # an intraday trailing drawdown survives a restart
        self.enforcer = Enforcer(store, account_id or 0)
        self._use(policies)
        # Prices (the market feed) down since; rules that read them are unevaluable once they are
        # older than stale_after (engine/enforce/stale_prices.py). Set and cleared by the live loop.
        self.prices_down_at: dt.datetime | None = None
        self._position_seen: dict[str, dt.datetime] = {}  # contract -> the last stream position update
        self.stale_after = dt.timedelta(seconds=10)
        self.watch_store = True  # look for another process's writes on every tick (replay has none: False)
        self.persist_book = persist_book
        self.stale = False  # set when the feed is known to be behind (reconnecting): rules do not act
        self.malformed = 0
        self.events = 0
        self.trading = Trading(store)
        self._state_seen = -1  # the lockouts' version the trading state was last computed from
        self._data_version: int | None = None
        self._steady: tuple | None = None  # see _evaluate
        self._exits_restored = False
        self._unaudited: list[tuple] = []  # decisions whose calls are on their way (see _audit_decision)

    # -- driving the engine -----------------------------------------------------------------

    def on_event(self, update: BrokerEvent) -> Effects:
        """Apply one broker event and evaluate the policies on what it means."""
        if self._unaudited:
            self.flush_audit()
        if self._settled is not None and (type(update) is Quote or type(update) is MarketTrade):
            return self._on_quote(update, self._settled)
        book = self.book
        event = book.apply(update)
        if type(update) is PositionUpdate:
            self._position_seen[update.contract_id] = update.time  # the stream's word (receive time)
        if type(update) not in MARKET_EVENTS or book.rolled or book.coverage_changes:  # a quote stores nothing
            self._after_apply(update, event)
        if event is None:
            return NO_EFFECTS
        self.events += 1
        return self._evaluate(event)

    def on_quote(self, quote: Quote | MarketTrade) -> Effects:
        """``on_event`` for a quote or a trade print (most events), its usual cases taken here
        in one call. While the engine is settled on an evaluation that did nothing (``_settle``)
        and the update is stamped by the broker, in the book's trading day and the settled
        state's time, with nothing else changed since: a contract without a position moves only
        its mark and quote time, which no rule reads; a position's price moves its view and the
        open P&L, evaluated only when that leaves the band (``_pnl_band``). Exactly what
        ``_on_quote`` does then, without its layers; any other case is ``on_event``'s."""
        settled, book = self._settled, self.book
        ts, contract_id = quote.time, quote.contract_id
        day = book.day
        if (
            settled is None
            or ts >= settled[0]
            or ts < book.now
            or not quote.stamped
            or contract_id in book.receive_clock
            or day is None
            or ts >= day.end
            or self._unaudited
            or book.rolled
            or book.coverage_changes
            or settled[1] != book.version
            or settled[2] != self.enforcer.version
            or settled[3] != self.trading.version
        ):
            return self.on_event(quote)
        held = contract_id in book.positions
        if held and settled[4] is None:
            return self.on_event(quote)  # no band: a price of a position that moves is evaluated
        book.now = ts
        times, stamp = book.quote_times, quote.stamp
        if stamp < times.get(contract_id, NEVER):
            return NO_EFFECTS  # older than the contract's last price: not applied, not an event
        times[contract_id] = stamp
        price = quote.last if type(quote) is Quote else quote.price
        self.events += 1
        if price is not None and book.marks.get(contract_id) != price:
            if not held:
                book.marks[contract_id] = price
            else:
                book.mark(contract_id, price)
                if _leaves(settled[4], book.open_pnl()):
                    return self._evaluate(book.quote_event(quote) if type(quote) is Quote else book.trade_event(quote))
        if ts >= book.second_until:  # the first event of a second: its session (see Book.not_evaluated)
            book.not_evaluated(self.zone)
        return NO_EFFECTS

    def _on_quote(self, quote: Quote | MarketTrade, settled: tuple) -> Effects:
        """The quote fast path (a trade print, the rules' `quote` too, alike): the mark moves,
        and the policies are evaluated only when a rule could see a difference from the last
        evaluation, which did nothing (see ``_settle``): the quote moved the price of a position
        (marks, P&L), the second ended (the clock: time thresholds fire on time), or anything
        else changed (the book, the enforcer, the lockouts)."""
        book = self.book
        if type(quote) is Quote:
            applied, event_of = book.apply_price(quote, quote.last), book.quote_event  # 2: a position's price moved
        else:
            applied, event_of = book.apply_price(quote, quote.price), book.trade_event
        return self._after_quote(quote, applied, event_of, settled)

    def _after_quote(self, quote: Quote | MarketTrade, applied: int, event_of, settled: tuple) -> Effects:
        book = self.book
        if book.rolled or book.coverage_changes:
            self._after_apply(quote, event_of(quote) if applied else None)
        if not applied:
            return NO_EFFECTS
        self.events += 1
        if (
            book.now >= settled[0]
            or settled[1] != book.version
            or settled[2] != self.enforcer.version
            or settled[3] != self.trading.version
        ):
            return self._evaluate(event_of(quote))
        if applied == 2 and (settled[4] is None or _leaves(settled[4], book.open_pnl())):
            return self._evaluate(event_of(quote))  # a position's price moved its open P&L out of the band
        book.not_evaluated(self.zone)
        return NO_EFFECTS

    def on_events(self, updates: Iterable[BrokerEvent]) -> Effects:
        """``on_event`` for each, in order (the events of one message), their effects together."""
        combined = NO_EFFECTS
        for update in updates:
            effects = self.on_event(update)
            if effects:
                if combined is NO_EFFECTS:
                    combined = Effects()
                combined.extend(effects)
        return combined

    def on_tick(self, now: dt.datetime) -> Effects:
        """The 1-second clock: time-based rules (grace periods, trading hours) see time pass."""
        if self._unaudited:
            self.flush_audit()
        book = self.book
        book.advance(now)
        if book.rolled:
            self._roll_days()
        if self.watch_store:
            version = self.store.data_version()
            if version != self._data_version:  # another process (riskc lock / unlock) changed the store
                self._data_version = version
                self.trading.invalidate()
        settled = self._settled
        if (  # nothing the rules read has changed since a quiet evaluation (see _settle)
            settled is not None
            and settled[5]
            and book.now < settled[0]
            and settled[1] == book.version
            and settled[2] == self.enforcer.version
            and settled[3] == self.trading.version
        ):
            book.not_evaluated(self.zone)
            return NO_EFFECTS
        return self._evaluate(Event(kind="clock", time=book.now))

    def swap(self, policies: PolicySet) -> None:
        """Atomically replace the policies (between two events). The trading-day settings of
        the book stay those it started with; a timezone change needs a restart."""
        self._use(policies)

    def _use(self, policies: PolicySet) -> None:
        """The policies, and what the engine derives from them once (not on every event)."""
        self.policies = policies
        self._ages = _reads_ages(policies)
        self._price_rules = [price_rules(program) for program in policies.programs]
        self._settled: tuple | None = None  # see _settle
        self._quote_blind, self._time_reads, self._like_quote = _quote_blindness(policies)
        self._thresholds = _time_thresholds(policies)
        self._pnl_atoms = _pnl_atoms(policies)

    def finished(
        self,
        call: BrokerCall,
        confirmed: bool | None,
        now: dt.datetime,
        detail: str = "",
        result: dict[str, Any] | None = None,
    ) -> None:
        """Report a call's outcome: True confirmed, False failed (retried after RETRY_AFTER), None
        uncertain (left `sent` for the next reconciliation to verify)."""
        self.flush_audit()
        self.enforcer.finished(call, confirmed, now, detail, result)

    def mark_sent(self, call: BrokerCall, now: dt.datetime) -> None:
        self.flush_audit()
        self.enforcer.mark_sent(call, now)

    # -- evaluation -------------------------------------------------------------------------

    def _evaluate(self, event: Event) -> Effects:
        self._settled = None
        if self.stale:
            return NO_EFFECTS
        book, enforcer = self.book, self.enforcer
        programs = self.policies.programs
        snapshot = book.snapshot(event, self.zone, ages=self._ages)
        if len(programs) == 1:
            decisions = [programs[0].evaluate(snapshot)]
        else:
            decisions = [program.evaluate(snapshot) for program in programs]
        if self.prices_down_at is not None and book.now - self.prices_down_at >= self.stale_after:
            age = book.now - self.prices_down_at
            decisions = [
                without_prices(program, decision, rules, age, snapshot)
                for program, decision, rules in zip(programs, decisions, self._price_rules, strict=True)
            ]
        hit = decisions[0].hits if len(decisions) == 1 else any(d.hits for d in decisions)
        trading = self.trading
        expires = trading.expires  # trading.fresh(), inlined: the usual case reads nothing
        if trading.checked is not None and not trading.has_while and (expires is None or book.now < expires):
            lockouts = trading.lockouts
        else:
            lockouts = self._lockouts(snapshot)
        change = self._state_change(lockouts) if trading.version != self._state_seen else None
        exposed = bool(lockouts) and trading.exposed(book)
        unpriced = book.unpriced_now  # as of the snapshot just taken
        if not hit and not unpriced and not enforcer.firing and not exposed and not enforcer.orphans:
            self._steady = None
            if change is None:
                self._settle(event, snapshot)  # quiet: nothing fired
                return NO_EFFECTS
            effects = Effects(records=[change])
            self._audit_decision(event, effects)
            return effects
        steady = self._steady_key(decisions, exposed, unpriced)
        if change is None and steady is not None and steady == self._steady:
            self._settle(event)
            return NO_EFFECTS
        # What this decision plans, sets and audits commits in one durable transaction, before
        # any call it makes leaves (one fsync per breach; see engine/store/base.py).
        with self.store.batch():
            effects = self._enforce(decisions, lockouts, exposed, unpriced)
            if change is not None:
                effects.records.insert(0, change)
            if trading.checked is None:  # a lockout was just set or lengthened: the state may change with it
                after = self._state_change(self._lockouts(snapshot))
                if after is not None:
                    effects.records.append(after)
            if effects.records:
                self._audit_decision(event, effects)
                self.flush_audit()
        # Nothing changed and nothing was done: while the same breach keeps firing on the same
        # book, the next evaluation with the same key is known to do nothing too.
        self._steady = None if effects else self._steady_key(decisions, exposed, unpriced)
        return effects

    def enforce_for_group(self, actions: Sequence[Action], event: Event, group: str, digest: str) -> Effects:
        """Actions a group policy decided for every account of its group (engine/enforce/group.py),
        enforced on this account as its own rules' are: the same idempotency keys, lockouts in
        the store, the trading state moved with them and the account kept flat, in one durable
        batch with its audited decision. Alerts are the group's to send (not here)."""
        self.flush_audit()
        book, enforcer, trading = self.book, self.enforcer, self.trading
        if self.stale or book.day is None:
            return NO_EFFECTS
        if event.time is not None and event.time > book.now:  # another account's event: its time is the group's
            book.advance(event.time)
            self._roll_days()
        self._settled = self._steady = None
        with self.store.batch():
            enforcer.account_id = book.account.id
            if not trading.fresh(book.now):  # what the lockout a group asks for is compared with
                self._lockouts(book.snapshot(Event(kind="clock", time=book.now), self.zone, ages=self._ages))
            enforcer.active = trading.lockouts
            effects = enforcer.enforce(list(actions), set(enforcer.firing), book, book.now, digest)
            if enforcer.locks_changed:
                enforcer.locks_changed = False
                trading.invalidate()
            if trading.checked is None:
                lockouts = self._lockouts(book.snapshot(Event(kind="clock", time=book.now), self.zone, ages=self._ages))
                change = self._state_change(lockouts)
                if change is not None:
                    effects.records.append(change)
                if lockouts and trading.exposed(book):
                    effects.extend(enforcer.keep_flat(lockouts, book, book.now, digest))
            if effects.records:
                payload = {
                    "event": event.kind,
                    "time": event.time.isoformat() if event.time else None,
                    "group": group,
                    "actions": effects.records,
                    "calls": [c.to_record() for c in effects.calls],
                }
                self._unaudited.append((payload, book.now, book.account.id, digest))
                self.flush_audit()
        return effects

    def _settle(self, event: Event, quiet: Any = None) -> None:
        """This evaluation did nothing, and one on a quote later in the same second would do
        nothing too unless a price of a position or the state changed (``_on_quote`` checks
        those): note what it depends on. That holds when no rule that runs on a quote reads the
        event, the event ran the rules a quote runs, and nothing the rules read moves with time
        inside a second (an uncovered position's grace, ages, a fill window; the session is one
        per second). A grace or an age compared only with constant durations (``Program.time_thresholds``)
        can: the settled state then lasts until the first moment one crosses a threshold.

        After a quiet evaluation (``quiet`` is its snapshot: no rule fired), a quote that moves
        the price of a position is not evaluated either while the account's open P&L stays
        inside the band where no condition that reads a price can change (``_pnl_band``), and
        the settled state lasts beyond the second, with the clock's ticks skipped too, until
        what the conditions read of the session can change (``_session_deadline``)."""
        if not self._quote_blind or event.kind not in self._like_quote:
            return
        book = self.book
        end = book.second_until
        if end == NEVER or (
            "fills_within" in self._time_reads
            and book.day is not None
            and (book.day.fill_times or book.earlier().fill_times)  # fills of the days before age too
        ):
            return
        if quiet is not None and "clock" in self._like_quote:
            end = self._session_deadline(end)
        thresholds = self._thresholds
        uncovered = [p.uncovered_since for p in book.positions.values() if p.uncovered_since is not None]
        if uncovered and thresholds["uncovered_for"] != frozenset():
            end = _crossing(end, book.now, uncovered, thresholds["uncovered_for"])
        if self._ages and (book.positions or book.orders):
            opened = [p.opened_at for p in book.positions.values()] + [o.placed_at for o in book.orders.values()]
            end = _crossing(end, book.now, opened, thresholds["age"])
        trading = self.trading
        if not trading.fresh(book.now):
            return  # the lockouts are read again at the next evaluation (a `while` one: at every one)
        if trading.expires is not None and end is not None:
            end = min(end, trading.expires)  # a lockout ends: read again then (reading moves `version`)
        if end is not None:
            band = self._pnl_band(quiet) if quiet is not None and self._pnl_atoms is not None else None
            ticks = quiet is not None and "clock" in self._like_quote  # a tick would do nothing either
            self._settled = (end, book.version, self.enforcer.version, self.trading.version, band, ticks)

    def _session_deadline(self, second_end: dt.datetime) -> dt.datetime:
        """After a quiet evaluation: the first moment what the conditions read of the session
        (``Program.condition_reads``) can change — the local minute for `session.clock` and
        `weekday`, the exchange's next open or close for `is_open`, the trading day's end for
        the rest — or the end of the second when they read `session.now`, the next trading
        day or week, or the prices are down (their staleness grows by the second)."""
        reads, book = self._time_reads, self.book
        if (
            self.prices_down_at is not None
            or reads & _PER_SECOND
            or (reads & SESSION_FIELDS) - _SLOW_SESSION  # a session field not followed here
            or book.day is None
        ):
            return second_end
        end = book.day.end
        if reads & _PER_MINUTE:
            end = min(end, book.minute_end)
        if "is_open" in reads:
            end = min(end, book.open_until)
        return max(end, second_end)

    def _pnl_band(self, snapshot) -> tuple | None:
        """(low, high): the open P&L values strictly between which no atom that reads a price
        (``Program.pnl_atoms``) comes out otherwise than on ``snapshot`` (None: unbounded);
        None when one is at its crossing or cannot be read."""
        low = high = None
        try:
            now = snapshot.day.unrealized_pnl
            for sign, left, right in self._pnl_atoms:
                gap = left(snapshot) - right(snapshot)  # moves by sign × the change of the open P&L
                if not gap:
                    return None
                crossing = now - gap * sign
                if (gap < 0) == (sign > 0):  # on its side while the open P&L stays below the crossing
                    high = crossing if high is None or crossing < high else high
                else:
                    low = crossing if low is None or crossing > low else low
        except Exception:
            return None
        return low, high

    def _enforce(
        self, decisions: Sequence[Decision], lockouts: list[Lockout], exposed: bool, unpriced: tuple[str, ...]
    ) -> Effects:
        book, enforcer = self.book, self.enforcer
        actions: list[Action] = []
        firings: set[tuple[str, str | None]] = set()
        for decision in decisions:
            if decision.hits and decision.actions:
                actions += decision.actions
                firings.update((f.rule, f.target) for f in decision.fired)
                firings.update((f.rule, f.target) for f in decision.errors)
        for contract_id in unpriced:
            actions += self._unpriced_actions(contract_id)
            firings.add((_UNPRICED, contract_id))
        if len(decisions) > 1 or unpriced:
            actions = list(plan(actions))
        enforcer.account_id = book.account.id
        enforcer.active = lockouts
        effects = enforcer.enforce(actions, firings, book, book.now, self.policies.digest)
        if exposed:
            effects.extend(enforcer.keep_flat(lockouts, book, book.now, self.policies.digest))
        if enforcer.locks_changed:
            enforcer.locks_changed = False
            self.trading.invalidate()  # re-read: a lockout was just set or lengthened
        return effects

    def _steady_key(self, decisions: Sequence[Decision], exposed: bool, unpriced: tuple[str, ...]) -> tuple | None:
        """What enforcement depends on, when it can be compared: which rules fired for which
        targets, their actions by value (unexplained: a reason quotes prices that move), the
        book's version (positions, orders, account, fills, trading day), the enforcer's (calls
        planned or finished, lockouts set) and the lockouts read. A planned retry waits for the
        clock, a rule that raised reports its error, an exit order waits for the book: those are
        never steady. None when it cannot be compared."""
        enforcer = self.enforcer
        if enforcer.orphans or enforcer.retrying(self.book.now):
            return None
        targets = []
        for decision in decisions:
            for index, target in decision.hits:
                if index < 0:
                    return None
                targets.append((index, target_id(target)))
        try:
            actions = decisions[0].values() if len(decisions) == 1 else tuple(d.values() for d in decisions)
        except Exception:
            return None
        return (
            targets,
            actions,
            unpriced,
            exposed,
            self.book.version,
            enforcer.version,
            self.trading.version,
            self.policies.digest,
        )

    def _unpriced_actions(self, contract_id: str) -> list[Action]:
        """A position riskc cannot price (no instrument spec: no P&L, no risk, no tick grid) is
        reported by a critical alert that says what to add, whatever `on_error` says: a position
        is never closed only because riskc did not know its instrument (PRODUCT.md §8). Live, the
        spec comes from the broker's contract data; this is the case where even that failed."""
        symbol = symbol_of(contract_id)
        why = (
            f"no instrument spec for `{symbol}` ({contract_id}): riskc cannot count this position's P&L or "
            f"risk; add it under `instruments:` in riskc.yaml"
        )
        return [Action("alert", _UNPRICED, "critical", why, symbol=symbol, contract_id=contract_id, message=why)]

    def _lockouts(self, snapshot) -> list[Lockout]:
        return self.trading.current(self.book.account.id, self.book.now, snapshot, self._holds)

    def _holds(self, rule: str, snapshot) -> bool:
        """Whether the `while` condition of ``rule``'s lockout still holds (False once the rule is gone)."""
        program = next((p for p in self.policies.programs if any(r.id == rule for r in p.rules)), None)
        return program is not None and program.lockout_holds(rule, snapshot)

    def _state_change(self, lockouts: list[Lockout]) -> dict[str, Any] | None:
        self._state_seen = self.trading.version
        return self.trading.transition(lockouts, self.book.now)

    def position_views(self) -> tuple[Position, ...]:
        """The positions as a snapshot at the book's time would show them, their `uncovered_for`
        (and ages, when a rule reads them) current: for a reader between evaluations (the live
        view), since an event the engine does not evaluate leaves the views' times as they were."""
        book = self.book
        views = book.position_views()
        book.keep_times(self._ages)
        return views

    def lockouts_at(self, now: dt.datetime) -> list[Lockout]:
        """The lockouts in force as the engine last read them (for the live view: no store I/O)."""
        return self.trading.at(now)

    # -- state kept in the store ------------------------------------------------------------

    def _after_apply(self, update: BrokerEvent, event: Event | None) -> None:
        book, store = self.book, self.store
        if book.rolled:
            self._roll_days()
        account_id = book.account.id
        if type(update) is Fill:
            self._record_fill(update)
        elif event is not None and event.kind == "account":
            store.record_balance(account_id, update.time, book.day.trading_day, event.balance)
        if book.coverage_changes:
            self._save_coverage()
        if self.persist_book and event is not None and event.kind in ("position", "order"):
            self.save_book()

    def _save_coverage(self) -> None:
        """The grace-period timers (`uncovered:<contract>`) follow the book's stop coverage."""
        book = self.book
        for contract_id, since in book.coverage_changes:
            if since is None:
                self.store.clear_timer(book.account.id, f"uncovered:{contract_id}")
            else:
                self.store.set_timer(book.account.id, f"uncovered:{contract_id}", since, replace=True)
        book.coverage_changes.clear()

    def _record_fill(self, fill: Fill) -> None:
        if fill.account_id is not None and fill.account_id != self.book.account.id:
            return  # another account's trade on the same login
        at = fill.at
        self.store.record_trade(
            self.book.account.id,
            fill.fill_id,
            self.calendar.trading_day(at),
            fill.contract_id,
            at,
            fill.side,
            fill.size,
            fill.price,
            fill.pnl,
            fill.fees,
            fill.voided,
        )

    def _roll_days(self) -> None:
        for day in self.book.take_rolled():
            account_id = self.book.account.id
            self.store.close_day(account_id, day.trading_day, self.book.account.balance + self.book.unrealized())
            # Audit kinds are a fixed set (store/models.py): a day roll is an `event`.
            self.store.append_audit(
                "event",
                {
                    "event": "day_roll",
                    "trading_day": day.trading_day.isoformat(),
                    "realized_pnl": str(day.realized),
                    "trades": day.trades,
                    "eod_high_balance": str(self.book.eod_high_balance),
                },
                self.book.now,
                account_id=account_id,
            )

    def save_book(self) -> None:
        self.flush_audit()
        import json

        book = self.book
        positions = [
            {
                "contract_id": p.contract_id,
                "size": p.size,
                "avg_price": str(p.avg_price),
                "opened_at": p.opened_at.isoformat(),
                "episode": p.episode,
            }
            for p in book.positions.values()
        ]
        orders = [
            {
                "id": e.order.id,
                "contract_id": e.order.contract_id,
                "type": e.order.type,
                "side": e.order.side,
                "size": e.order.size,
                "stop_price": None if e.order.stop_price is None else str(e.order.stop_price),
                "price": None if e.order.price is None else str(e.order.price),
                "status": e.status,
            }
            for e in book.orders.values()
        ]
        self.store.save_book(book.account.id, json.dumps(positions), json.dumps(orders), book.now)

    def _audit_decision(self, event: Event, effects: Effects) -> None:
        """The decision goes to the audit log: at once when it has no broker calls, else in the
        batch that plans them (``_evaluate``), so the breach waits for one transaction."""
        payload = {
            "event": event.kind,
            "time": event.time.isoformat() if event.time else None,
            "actions": effects.records,
            "calls": [c.to_record() for c in effects.calls],
        }
        self._unaudited.append((payload, self.book.now, self.book.account.id, self.policies.digest))
        if not effects.calls:
            self.flush_audit()

    def flush_audit(self) -> None:
        """Write the decisions not yet in the audit log. Every entry point calls it first, so a
        decision is written before anything that follows it, whoever forgets to."""
        while self._unaudited:
            payload, now, account_id, digest = self._unaudited.pop(0)
            self.store.append_audit("decision", payload, now, account_id=account_id, policy_hash=digest)

    # -- reconciliation ---------------------------------------------------------------------

    def reconcile(
        self, state: BrokerState, now: dt.datetime, *, gone: frozenset | None = None
    ) -> tuple[list[str], Effects]:
        """Correct the book from the broker's REST state (the source of truth), audit the drift,
        mark the feed fresh again and evaluate a `reconnect` event. Returns (drift, effects).

        ``now`` is when the read started. No rollback by an older read: a position the stream
        updated at or after ``now`` keeps the stream's (newer) word, and, when ``gone`` is given
        (orders missing from two reads), only those orders are ended; others missing from
        ``state`` may have been placed while it was read."""
        self.flush_audit()
        book = self.book
        book.advance(now)
        drift = _drift(book, state)
        # Read the grace periods before replaying the state: a position the book (re)learns here
        # starts uncovered "now", and saving that would overwrite the start the store kept.
        started = [
            (t.key.removeprefix("uncovered:"), t.started_at)
            for t in self.store.timers(book.account.id)
            if t.key.startswith("uncovered:")
        ]
        for update in _state_events(book, state, now, gone, self._position_seen):
            self.apply_quiet(update)
        for contract_id, since in started:
            book.restore_uncovered(contract_id, since)
        self._save_coverage()
        self._recover_unconfirmed(state, now)
        if not self._exits_restored and book.day is not None:
            self._exits_restored = True  # once, after a (re)start: later, the enforcer's memory has them
            self.enforcer.restore_exits(self.store.recent_actions(book.account.id, limit=500), book.day.trading_day)
        if state.account is not None:
            self._close_missed_day()
        if drift:
            log.warning("reconciliation corrected the book: %s", "; ".join(drift))
        if drift:
            self.store.append_audit("drift", {"drift": drift}, now, account_id=book.account.id)
        self.stale = False
        self.trading.invalidate()
        return drift, self._evaluate(Event(kind="reconnect", time=now))

    def _close_missed_day(self) -> None:
        """The previous trading day ended while riskc was not running: close it now, or an
        end-of-day trailing drawdown trails a stale high. Its end-of-day balance is exact: the
        broker's balance less today's net realized P&L (today's fills, which reconciliation has
        just loaded), since fills are what move the balance."""
        book = self.book
        if book.day is None or not book.account.id:
            return
        previous = self.calendar.previous_trading_day(book.day.trading_day)
        closed = self.store.day_balance(book.account.id, previous)
        if closed is not None and closed.eod_balance is not None:
            return
        if closed is None and self.store.eod_high_balance(book.account.id, before=previous) is None:
            # riskc never closed a day of this account before yesterday: nothing of its own to close.
            # (Only earlier closes count: a redo after a crash can reconcile at a time before a close
            # the store already has, today's, which says nothing about yesterday.)
            return
        eod_balance = book.account.balance - book.day.realized
        self.store.close_day(book.account.id, previous, eod_balance)
        self.store.append_audit(
            "event",
            {"event": "day_close_after_restart", "trading_day": previous.isoformat(), "eod_balance": str(eod_balance)},
            book.now,
            account_id=book.account.id,
        )
        book.eod_high_balance = self.store.eod_high_balance(book.account.id)

    def apply_quiet(self, update: BrokerEvent) -> None:
        """Apply without evaluating (reconciliation replays the broker's state into the book)."""
        self._after_apply(update, self.book.apply(update))

    def _recover_unconfirmed(self, state: BrokerState, now: dt.datetime) -> None:
        """After a crash: an action planned or sent but never confirmed is checked against the
        broker before anything is resent — confirmed if its effect is there, else failed (and so
        planned again if the rule still fires)."""
        for record in self.store.unconfirmed_actions(self.book.account.id):
            call = _call_of(record.action, record.key)
            if call is None or record.key in self.enforcer.pending:
                continue  # still on its way in this process: its executor reports the outcome
            if took_effect(call, state):
                self.store.mark_confirmed(record.key, now, {"recovered": "effect found in broker state"})
            else:
                self.store.mark_failed(record.key, now, "not found in broker state after restart", retryable=True)


def _crossing(
    end: dt.datetime | None, now: dt.datetime, starts: list[dt.datetime], thresholds: frozenset | None
) -> dt.datetime | None:
    """The earliest moment in (now, end) at which a duration measured from one of ``starts``
    (``now - start``) reaches a threshold or passes it (the moment after: ``>`` flips then), or
    ``end``; None when the thresholds are unknown (the durations are read otherwise)."""
    if thresholds is None or end is None:
        return None
    for start in starts:
        for threshold in thresholds:
            at = start + threshold
            for moment in (at, at + _MICROSECOND):
                if now < moment < end:
                    end = moment
    return end


_MICROSECOND = dt.timedelta(microseconds=1)
# What conditions may read that changes every second (the session's instant, and what is computed
# from it in ways not followed here), and what changes with the local minute.
_PER_SECOND = frozenset({"now", "next_trading_day", "next_trading_week"})
_PER_MINUTE = frozenset({"clock", "weekday"})
_SLOW_SESSION = frozenset({*_PER_MINUTE, "is_open", "trading_day"})  # followed by _session_deadline
SESSION_FIELDS = frozenset(f.name for f in dataclasses.fields(Session))


def _pnl_atoms(policies: PolicySet) -> tuple | None:
    """``Program.pnl_atoms`` of all the policies together (None if any is None)."""
    atoms: tuple = ()
    for program in policies.programs:
        if program.pnl_atoms is None:
            return None
        atoms += program.pnl_atoms
    return atoms


def _time_thresholds(policies: PolicySet) -> dict[str, frozenset | None]:
    """``Program.time_thresholds`` of all the policies together (None for a field any reads otherwise)."""
    merged: dict[str, frozenset | None] = {}
    for program in policies.programs:
        for name, found in program.time_thresholds.items():
            known = merged.get(name, frozenset())
            merged[name] = None if found is None or known is None else known | found
    return merged


def _quote_blindness(policies: PolicySet) -> tuple[bool, frozenset[str], frozenset[str]]:
    """(no rule that runs on a quote reads the event, the names the conditions read, the event
    kinds that run the rules a quote runs)."""
    programs = policies.programs
    blind = not any(program.sees_quotes for program in programs)
    like = frozenset(k for k in EVENT_KINDS if all(program.like_quote(k) for program in programs))
    return blind, frozenset().union(*(program.condition_reads for program in programs)), like


def _leaves(band: tuple, pnl: Decimal) -> bool:
    """Whether the open P&L ``pnl`` is out of ``band`` (``Engine._pnl_band``: no bound is None)."""
    low, high = band
    return (low is not None and pnl <= low) or (high is not None and pnl >= high)


def _reads_ages(policies: PolicySet) -> bool:
    """Whether a rule may read a position's or an order's `age` (kept up to date only then)."""
    return any("age" in program.reads for program in policies.programs)


_UNPRICED = "instrument_spec"  # the rule name of what riskc does about a position it cannot price


@functools.lru_cache(maxsize=16)  # asked on every evaluation that acts
def _digest(hashes: tuple[tuple[str, str], ...]) -> str:
    joined = "\n".join(f"{path}={digest}" for path, digest in hashes)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def _call_of(action: dict[str, Any], key: str) -> BrokerCall | None:
    kind = action.get("call")
    if kind not in ("close", "partial_close", "cancel", "modify_stop", "place_stop", "place_target"):
        return None
    stop, limit = action.get("stop_price"), action.get("limit_price")
    return BrokerCall(
        kind,
        int(action.get("account_id", 0)),
        contract_id=action.get("contract_id"),
        order_id=action.get("order_id"),
        size=action.get("size"),
        side=action.get("side"),
        stop_price=None if stop is None else Decimal(stop),
        limit_price=None if limit is None else Decimal(limit),
        expect_size=action.get("expect_size"),
        key=key,
        rule=action.get("rule", ""),
    )


def _drift(book: Book, state: BrokerState) -> list[str]:
    drift = []
    broker_positions = {p.contract_id: p.size for p in state.positions if p.size}
    for contract_id in sorted(set(broker_positions) | set(book.positions)):
        ours = book.positions[contract_id].size if contract_id in book.positions else 0
        theirs = broker_positions.get(contract_id, 0)
        if ours != theirs:
            drift.append(f"position {contract_id}: book {ours}, broker {theirs}")
    broker_orders = {o.order_id for o in state.orders}
    for order_id in sorted(set(book.orders) ^ broker_orders):
        drift.append(f"order {order_id}: {'only in the book' if order_id in book.orders else 'missing from the book'}")
    return drift


def _state_events(
    book: Book,
    state: BrokerState,
    now: dt.datetime,
    gone: frozenset | None = None,
    position_seen: dict[str, dt.datetime] | None = None,
) -> list[BrokerEvent]:
    """The broker's state as events at ``now``: what it lists, and the end of what the book
    holds that it no longer lists (a position flat, an order gone). See ``Engine.reconcile``."""
    events: list[BrokerEvent] = []
    seen = position_seen or {}
    if state.account is not None:
        events.append(state.account._replace(time=now))
    broker_contracts = set()
    for p in state.positions:
        broker_contracts.add(p.contract_id)
        if p.contract_id not in seen or seen[p.contract_id] < now:
            events.append(p._replace(time=now))
    for contract_id in list(book.positions):
        if contract_id not in broker_contracts and (contract_id not in seen or seen[contract_id] < now):
            events.append(PositionUpdate(now, contract_id, 0, Decimal(0), account_id=book.account.id))
    broker_orders = set()
    for o in state.orders:
        broker_orders.add(o.order_id)
        events.append(o._replace(time=now))
    for order_id, entry in list(book.orders.items()):
        if order_id not in broker_orders and (gone is None or order_id in gone):
            o = entry.order
            events.append(
                OrderUpdate(
                    now,
                    order_id,
                    o.contract_id,
                    "cancelled",
                    "limit",
                    o.side,
                    o.size,
                    # Not older than what the book holds: its time may be the broker's, ahead of ours.
                    updated_at=max(now, entry.updated_at),
                    account_id=book.account.id,
                )
            )
    for t in state.trades:
        events.append(t._replace(time=now))
    return events
