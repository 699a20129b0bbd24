"""Enforcement planning: from a planned ``Action`` and the book to broker calls, lockouts and
alerts, exactly once (PRODUCT.md §3.4, §7, §8).

Every broker effect has an idempotency key naming the *effect*, not the rule that asked for it:
``close|CON.F.US.MNQ.Z25|2025-10-29|<position episode>``. Two rules (or a rule and a lockout)
that want the same position closed therefore share one call, and a rule that keeps firing on the
same breach sends nothing new while the first call is in flight or after it succeeded. The key
goes through the store (planned → sent → confirmed/failed), so a restart does not resend what
already went out; a call that failed may be planned again after ``RETRY_AFTER``.

An action produces a record (§6.2) only when it changes something: a call planned, a lockout set
or lengthened, an alert on the rising edge of a firing. A `flatten` on a flat account is a no-op.

A position riskc closes leaves its exit orders behind (a protective stop, a target): once flat,
a sell stop left under a closed long would *open* a short when the market reaches it. They are
cancelled once the close is confirmed and the book shows the contract flat, not with the close:
if the close failed, the stop is still the position's only protection. Only the exit orders that
were working when the close was planned are cancelled, so an order the trader places afterwards
(a new entry) is left alone.
"""

from __future__ import annotations

import datetime as dt
import decimal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from riskc.dsl.decision import Action
from riskc.engine.adapters.port import BrokerCall
from riskc.engine.core.instruments import symbol_of
from riskc.engine.store import idempotency_key
from riskc.engine.store.lockouts import _is_longer, _strength  # the store's "longest lockout wins" order

if TYPE_CHECKING:
    from riskc.engine.core.book import Book, OpenPosition
    from riskc.engine.core.snapshot import Order
    from riskc.engine.store import Lockout, Store

RETRY_AFTER = dt.timedelta(seconds=5)


@dataclass(slots=True)
class Effects:
    """What one evaluation changed: §6.2 records, broker calls to execute, alerts to send."""

    records: list[dict[str, Any]] = field(default_factory=list)
    calls: list[BrokerCall] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def extend(self, other: Effects) -> None:
        self.records += other.records
        self.calls += other.calls
        self.alerts += other.alerts

    def __bool__(self) -> bool:
        return bool(self.records or self.calls or self.alerts)


@dataclass(frozen=True, slots=True)
class _Exits:
    """The exit orders of a position riskc is closing, cancelled once it is flat."""

    contract_id: str
    episode: str
    order_ids: tuple[int, ...]
    rule: str
    reason: str


class Enforcer:
    def __init__(self, store: Store, account_id: int) -> None:
        self.store = store
        self.account_id = account_id
        self.pending: dict[str, BrokerCall] = {}  # sent, outcome not known yet
        self._done: set[str] = set()
        self._retry_at: dict[str, dt.datetime] = {}
        self.firing: set[tuple[str, str | None]] = set()
        # The lockouts in force as the engine last read them (it re-reads when one changes, and
        # when another process writes the store): a breach that keeps firing on every event
        # asks for a lockout it already has, and that must not cost a store transaction each time.
        self.active: list[Lockout] = []
        self.locks_changed = False
        # Counts every change of what planning depends on besides the book and the actions:
        # calls planned or finished, lockouts set. The engine compares it (see Engine._evaluate).
        self.version = 0
        self._exits: dict[str, _Exits] = {}  # close key -> its position's exit orders, while in flight
        self.orphans: list[_Exits] = []  # closes confirmed: their exit orders go once the book is flat

    def retrying(self, now: dt.datetime) -> bool:
        """A failed call waits for RETRY_AFTER: the clock alone can make it plannable again.
        (A wait that has passed is forgotten: `_plan` would let the call through either way.)"""
        if not self._retry_at:
            return False
        for key in [k for k, at in self._retry_at.items() if at <= now]:
            del self._retry_at[key]
        return bool(self._retry_at)

    # -- one evaluation ---------------------------------------------------------------------

    def enforce(
        self,
        actions: list[Action],
        firings: set[tuple[str, str | None]],
        book: Book,
        now: dt.datetime,
        policy_hash: str | None,
    ) -> Effects:
        effects = Effects()
        rising = firings - self.firing
        self.firing = firings
        for action in actions:
            if action.kind in _PRICED:
                action = _snapped(action, book)  # the record carries the price sent
            calls, changed = self._effect(action, book, now, policy_hash, rising)
            if not (calls or changed):
                continue
            for record in _records(action, calls, now):
                effects.records.append(record)
                if action.kind == "alert" or action.severity in ("high", "critical"):
                    effects.alerts.append(record | {"severity": action.severity})  # the rule's, for alert routing
            effects.calls += calls
        if self.orphans:
            effects.extend(self._cancel_orphans(book, now, policy_hash))
        return effects

    def _effect(
        self, action: Action, book: Book, now: dt.datetime, policy_hash: str | None, rising: set
    ) -> tuple[list[BrokerCall], bool]:
        kind = action.kind
        if kind == "alert":
            # On the rising edge of a firing of its rule: the rule as a whole, or (a rule `for
            # position p`) for one more position; the alert itself names no target.
            return [], any(rule == action.rule for rule, _ in rising)
        if kind in ("lockout", "block"):
            return [], self._lock(action, book, now)
        candidates = self._calls(action, book)
        return [c for c in candidates if self._plan(c, action, book, now, policy_hash)], False

    def _calls(self, action: Action, book: Book) -> list[BrokerCall]:
        kind, rule, why = action.kind, action.rule, action.reason
        if kind == "flatten":
            return [
                *self._closes(book.positions.values(), book, rule, why),
                *self._cancels(book.all_orders(), book, rule, why),
            ]
        if kind == "close":
            return self._closes(
                [p for p in book.positions.values() if p.contract_id == action.contract_id], book, rule, why
            )
        if kind == "reduce":
            position = book.positions.get(action.contract_id)
            return [] if position is None else self._reduce(position, action.to, book, rule, why)
        if kind == "reduce_total" and action.condition == "net":
            return self._reduce_net(action.to, book, rule, why)
        if kind == "reduce_total":
            return self._reduce_total(action.to, book, rule, why)
        if kind == "cancel_orders":
            orders = [o for o in book.all_orders() if action.symbol is None or o.symbol == action.symbol]
            return self._cancels(orders, book, rule, why)
        if kind == "cancel":
            return self._cancels([o for o in book.all_orders() if o.id == action.order_id], book, rule, why)
        if kind == "move_stop":
            return self._move_stops(action, book)
        if kind == "place_stop":
            return self._place_stop(action, book)
        if kind == "place_target":
            return self._place_target(action, book)
        return []

    # -- calls for each action --------------------------------------------------------------

    def _key(self, kind: str, target: str, book: Book, episode: str) -> str:
        return idempotency_key(kind, target, book.day.trading_day, episode)

    def _closes(self, positions, book: Book, rule: str, why: str) -> list[BrokerCall]:
        return [
            BrokerCall(
                "close",
                self.account_id,
                contract_id=p.contract_id,
                expect_size=0,
                key=self._key("close", p.contract_id, book, p.episode),
                rule=rule,
                reason=why,
            )
            for p in list(positions)
        ]

    def _cancels(self, orders, book: Book, rule: str, why: str) -> list[BrokerCall]:
        """Market orders are left alone: they fill at once, and the ones in flight are usually
        riskc's own closes."""
        return [
            BrokerCall(
                "cancel",
                self.account_id,
                contract_id=o.contract_id,
                order_id=o.id,
                key=self._key("cancel", f"order:{o.id}", book, "1"),
                rule=rule,
                reason=why,
            )
            for o in orders
            if o.type != "market"
        ]

    def _reduce(self, position: OpenPosition, to: int, book: Book, rule: str, why: str) -> list[BrokerCall]:
        qty = abs(position.size)
        if to >= qty:
            return []
        if to <= 0:
            return self._closes([position], book, rule, why)
        sign = 1 if position.size > 0 else -1
        return [
            BrokerCall(
                "partial_close",
                self.account_id,
                contract_id=position.contract_id,
                size=qty - to,
                expect_size=sign * to,
                rule=rule,
                reason=why,
                key=self._key("reduce", position.contract_id, book, f"{position.episode}:{qty}->{to}"),
            )
        ]

    def _reduce_total(self, limit: int, book: Book, rule: str, why: str) -> list[BrokerCall]:
        """Largest positions first, until the gross total is at most ``limit``."""
        excess = sum(abs(p.size) for p in book.positions.values()) - limit
        calls: list[BrokerCall] = []
        for position in sorted(book.positions.values(), key=lambda p: (-abs(p.size), p.contract_id)):
            if excess <= 0:
                break
            cut = min(excess, abs(position.size))
            calls += self._reduce(position, abs(position.size) - cut, book, rule, why)
            excess -= cut
        return calls

    def _reduce_net(self, limit: int, book: Book, rule: str, why: str) -> list[BrokerCall]:
        """Counted net, only the side that makes the net exceed ``limit`` is cut (largest first),
        and by no more than the excess: long 7 MNQ and short 2 ES against 4 sells one MNQ."""
        net = sum(p.size for p in book.positions.values())
        excess = abs(net) - limit
        heavy = [p for p in book.positions.values() if p.size * net > 0]
        calls: list[BrokerCall] = []
        for position in sorted(heavy, key=lambda p: (-abs(p.size), p.contract_id)):
            if excess <= 0:
                break
            cut = min(excess, abs(position.size))
            calls += self._reduce(position, abs(position.size) - cut, book, rule, why)
            excess -= cut
        return calls

    def _move_stops(self, action: Action, book: Book) -> list[BrokerCall]:
        position = book.positions.get(action.contract_id)
        if position is None or action.price is None:
            return []
        closing = "sell" if position.size > 0 else "buy"
        price = action.price  # on the tick grid already (see _snapped)
        return [
            BrokerCall(
                "modify_stop",
                self.account_id,
                contract_id=o.contract_id,
                order_id=o.id,
                stop_price=price,
                key=self._key("stop", f"order:{o.id}", book, str(price)),
                rule=action.rule,
                reason=action.reason,
            )
            for o in book.working_orders()
            if o.contract_id == action.contract_id
            and o.side == closing
            and o.type in ("stop", "stop_limit", "trailing_stop")
            and o.stop_price is not None
            and _looser(o.stop_price, price, long=position.size > 0)
        ]

    def _place_stop(self, action: Action, book: Book) -> list[BrokerCall]:
        position = book.positions.get(action.contract_id)
        if position is None or action.price is None:
            return []
        view = next((p for p in book.position_views() if p.contract_id == action.contract_id), None)
        uncovered = abs(position.size) - (view.stop_coverage if view else 0)
        if uncovered <= 0:
            return []
        side = "sell" if position.size > 0 else "buy"
        return [
            BrokerCall(
                "place_stop",
                self.account_id,
                contract_id=position.contract_id,
                side=side,
                size=uncovered,
                stop_price=action.price,
                rule=action.rule,
                reason=action.reason,
                key=self._key("place_stop", position.contract_id, book, f"{position.episode}:{uncovered}"),
            )
        ]

    def _place_target(self, action: Action, book: Book) -> list[BrokerCall]:
        """A limit exit for the contracts no exit limit order covers yet: once per position
        episode and size, so a target the trader moves or cancels is not placed again, and a
        scale-in gets a target for the contracts it added."""
        position = book.positions.get(action.contract_id)
        if position is None or action.price is None:
            return []
        side = "sell" if position.size > 0 else "buy"
        covered = sum(
            o.size
            for o in book.working_orders()
            if o.contract_id == position.contract_id and o.side == side and o.type == "limit"
        )
        uncovered = abs(position.size) - covered
        if uncovered <= 0:
            return []
        return [
            BrokerCall(
                "place_target",
                self.account_id,
                contract_id=position.contract_id,
                side=side,
                size=uncovered,
                limit_price=action.price,
                rule=action.rule,
                reason=action.reason,
                key=self._key("place_target", position.contract_id, book, f"{position.episode}:{abs(position.size)}"),
            )
        ]

    # -- exactly once -----------------------------------------------------------------------

    def _plan(self, call: BrokerCall, action: Action, book: Book, now: dt.datetime, policy_hash: str | None) -> bool:
        key = call.key
        if key in self.pending or key in self._done:
            return False
        retry_at = self._retry_at.get(key)
        if retry_at is not None and now < retry_at:
            return False
        exits = _exits_of(call, book) if call.kind == "close" else None
        payload = call.to_record() | {"action": action.kind, "reason": action.reason}
        if exits is not None:  # kept with the plan, so a restart still cancels them (restore_exits)
            payload |= {"exits": list(exits.order_ids), "episode": exits.episode}
        record, is_new = self.store.plan_action(key, self.account_id, call.rule, payload, now, policy_hash=policy_hash)
        self.version += 1
        if not is_new:
            if record.state == "confirmed":
                self._done.add(key)
            return False
        self.pending[key] = call
        if exits is not None:
            self._exits[key] = exits
        return True

    def restore_exits(self, records, trading_day: dt.date) -> None:
        """After a restart: the exit orders of today's confirmed closes, from their stored plans,
        wait again for the book to be flat (those already cancelled are no longer in the book)."""
        known = {(e.contract_id, e.episode) for e in self.orphans}
        for record in records:
            action = record.action
            if (
                record.state != "confirmed"
                or action.get("call") != "close"
                or not action.get("exits")
                or f"|{trading_day.isoformat()}|" not in record.key
            ):
                continue
            contract_id, episode = action["contract_id"], action.get("episode", "")
            if (contract_id, episode) not in known:
                known.add((contract_id, episode))
                self.orphans.append(
                    _Exits(
                        contract_id,
                        episode,
                        tuple(action["exits"]),
                        record.rule,
                        _exits_reason(contract_id, record.rule),
                    )
                )

    def _cancel_orphans(self, book: Book, now: dt.datetime, policy_hash: str | None) -> Effects:
        """Cancel the exit orders of closed positions once the book shows them flat. While the
        book still has the same position (its fill not seen yet) they wait; a new position on the
        contract (another episode) means the trader is trading again, and they are left alone."""
        effects = Effects()
        waiting = []
        for exits in self.orphans:
            position = book.positions.get(exits.contract_id)
            if position is not None:
                if position.episode == exits.episode:
                    waiting.append(exits)
                continue
            orders = [o for o in book.all_orders() if o.id in exits.order_ids]
            if orders:
                waiting.append(exits)  # until the broker confirms them gone (a failed cancel is retried)
            for call in self._cancels(orders, book, exits.rule, exits.reason):
                action = Action(
                    "cancel",
                    exits.rule,
                    "high",
                    exits.reason,
                    symbol=symbol_of(exits.contract_id),
                    contract_id=exits.contract_id,
                    order_id=call.order_id,
                )
                if self._plan(call, action, book, now, policy_hash):
                    effects.records.append(action.to_record(now))
                    effects.calls.append(call)
        self.orphans = waiting
        return effects

    def mark_sent(self, call: BrokerCall, now: dt.datetime) -> None:
        self.store.mark_sent(call.key, now)

    def finished(
        self,
        call: BrokerCall,
        confirmed: bool | None,
        now: dt.datetime,
        detail: str = "",
        result: dict[str, Any] | None = None,
    ) -> None:
        """The executor's outcome for a call planned here. ``confirmed`` None is *uncertain* (the
        broker took the call but its state does not show the effect): the action stays `sent`,
        is not planned again, and the next reconciliation verifies it as after a crash — a
        partial close or a new stop sent twice would act twice."""
        self.version += 1
        self.pending.pop(call.key, None)
        exits = self._exits.pop(call.key, None)
        if confirmed is None:
            return
        if confirmed:
            if exits is not None:
                self.orphans.append(exits)
            self._done.add(call.key)
            self._retry_at.pop(call.key, None)
            self.store.mark_confirmed(call.key, now, result)
        else:
            self._retry_at[call.key] = now + RETRY_AFTER
            self.store.mark_failed(call.key, now, detail or "failed", retryable=True)

    # -- keeping a locked account flat ---------------------------------------------------

    def keep_flat(self, lockouts: list[Lockout], book: Book, now: dt.datetime, policy_hash: str | None) -> Effects:
        """While an account (or a symbol) is locked: close its positions and cancel its working
        orders, except exits (orders that only reduce an open position are always allowed).
        Each call goes through the same idempotency keys as a rule's, so nothing is sent twice."""
        effects = Effects()
        for lockout in lockouts:
            scope = "account" if lockout.symbol is None else lockout.symbol
            why = f"{scope} locked by {lockout.rule}: {lockout.reason}"
            positions = [
                p
                for p in book.positions.values()
                if lockout.symbol is None or symbol_of(p.contract_id) == lockout.symbol
            ]
            orders = [
                o
                for o in book.all_orders()
                if (lockout.symbol is None or o.symbol == lockout.symbol) and not _is_exit(o, book)
            ]
            for call in self._closes(positions, book, lockout.rule, why) + self._cancels(
                orders, book, lockout.rule, why
            ):
                action = Action(
                    "close" if call.kind == "close" else "cancel",
                    lockout.rule,
                    "high",
                    why,
                    symbol=lockout.symbol or symbol_of(call.contract_id or ""),
                    contract_id=call.contract_id,
                    order_id=call.order_id,
                )
                if self._plan(call, action, book, now, policy_hash):
                    effects.records.append(action.to_record(now))
                    effects.calls.append(call)
        return effects

    # -- lockouts ---------------------------------------------------------------------------

    def _lock(self, action: Action, book: Book, now: dt.datetime) -> bool:
        """Set or lengthen a lockout; True when it changed (the store merges same-rule lockouts)."""
        until, condition = action.until, action.condition
        if action.kind == "block" and until is None and condition is None:
            until = book.calendar.next_trading_day_start(now)  # until the next trading day unless a duration is given
        if condition == "while":
            condition = f"while:{action.rule}"
        if until is not None and until <= now:
            return False
        symbol = action.symbol if action.kind == "block" else None
        wanted = _strength(until, condition)
        for held in self.active:
            if (
                (held.rule, held.symbol, held.account_id) == (action.rule, symbol, self.account_id)
                and held.is_active(now)
                and not _is_longer(wanted, _strength(held.until, held.condition))
            ):
                return False  # what add_lockout would answer, without its write transaction
        before = {(lo.id, lo.until, lo.condition) for lo in self.store.active_lockouts(self.account_id, now)}
        lockout = self.store.add_lockout(
            self.account_id, action.rule, action.reason, now, until=until, condition=condition, symbol=symbol
        )
        changed = (lockout.id, lockout.until, lockout.condition) not in before
        self.version += 1
        self.locks_changed |= changed
        return changed


_PRICED = frozenset({"move_stop", "place_stop", "place_target"})


def _snapped(action: Action, book: Book) -> Action:
    """A stop or target price on the instrument's tick grid, rounded toward the tighter side:
    a stop nearer the market (up under a long), a target never beyond the price asked (down
    over a long). An average entry after a scale-in is often off the grid."""
    position = book.positions.get(action.contract_id or "")
    if position is None or action.price is None:
        return action
    book.position_views()  # every open position has its view (tick size zero without an instrument spec)
    tick = position.view.tick_size if position.view is not None else None
    long = position.size > 0
    up = long if action.kind != "place_target" else not long
    price = _on_grid(action.price, tick, up=up)
    return action if price == action.price else action._replace(price=price)


def _records(action: Action, calls: list[BrokerCall], now: dt.datetime) -> list[dict[str, Any]]:
    """The §6.2 records of one action: `reduce_total` as one `reduce` per position it cuts."""
    if action.kind != "reduce_total":
        return [action.to_record(now)]
    return [
        action._replace(
            kind="reduce",
            symbol=symbol_of(call.contract_id or ""),
            contract_id=call.contract_id,
            to=abs(call.expect_size or 0),
            condition=None,
        ).to_record(now)
        for call in calls
    ]


def _exits_of(call: BrokerCall, book: Book) -> _Exits | None:
    """The exit orders (stops, targets: the closing side, not market) of the position a close
    is for, as they are working now."""
    position = book.positions.get(call.contract_id or "")
    if position is None:
        return None
    closing = "sell" if position.size > 0 else "buy"
    exits = tuple(
        o.id
        for o in book.all_orders()
        if o.contract_id == position.contract_id and o.side == closing and o.type != "market"
    )
    if not exits:
        return None
    return _Exits(
        position.contract_id, position.episode, exits, call.rule, _exits_reason(position.contract_id, call.rule)
    )


def _exits_reason(contract_id: str, rule: str) -> str:
    return f"exit order of the {contract_id} position closed by {rule}"


def _on_grid(price, tick, *, up: bool):
    """``price`` on the tick grid, rounded up or down."""
    if not tick:
        return price
    steps = (price / tick).to_integral_value(rounding=decimal.ROUND_CEILING if up else decimal.ROUND_FLOOR)
    return steps * tick


def _looser(current, target, *, long: bool) -> bool:
    """Only a stop looser than the target moves: a stop never loosens."""
    return current < target if long else current > target


def _is_exit(order: Order, book: Book) -> bool:
    position = book.positions.get(order.contract_id)
    if position is None:
        return False
    closing = "sell" if position.size > 0 else "buy"
    return order.side == closing and order.size <= abs(position.size)
