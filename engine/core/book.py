"""The book: one account's positions, working orders, today's trades, last prices and balance,
kept incrementally from the broker's typed events (``engine/core/events.py``; PRODUCT.md §2, §3.3).

``Book.apply(update)`` updates the state and returns the ``Event`` rules see (or None for an
update that changes nothing: a duplicate, an older update, another account, market depth). The
book is a pure state machine: the adapter decoded and checked the payload, so it never raises.
``Book.snapshot(event)`` returns the ``Snapshot`` for one evaluation without copying the world:
position views are rebuilt only for contracts whose size, price or stops changed, and the
returned objects are reused — a snapshot is valid until the next ``apply``.

The broker is the source of truth for positions (``GatewayUserPosition``), orders and trades; the
book never infers a position from fills. Semantics (the things users report as bugs elsewhere):

- realized P&L is the sum of the trades' ``P&L minus fees; the opening half
  (P&L none) contributes only its fees; voided trades count for nothing, and a trade
  voided after the fact is taken back;
- a trade, order or quote seen twice counts once (by id); an order update older than the one
  applied (the broker's update time), or a position or quote update older than the last one for its
  contract, is ignored;
- a position that goes flat → open, or flips sign, is a new position (new ``age``); a scale-in
  restarts ``uncovered_for`` when the stops no longer cover it;
- orders with status `open` are working; `pending` orders (suspended bracket legs, orders not yet
  acknowledged) are kept as suspended: they do not cover a position, but a flatten cancels them.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from riskc.engine.core.calendar import TradingCalendar
from riskc.engine.core.events import (
    SUSPENDED,
    AccountUpdate,
    BrokerEvent,
    Fill,
    MarketTrade,
    OrderUpdate,
    PositionUpdate,
    Quote,
)
from riskc.engine.core.history import NOTHING_EARLIER, Earlier, HistorySource
from riskc.engine.core.instruments import Instruments, symbol_of
from riskc.engine.core.snapshot import (
    ORDER_STATUSES,
    ZERO,
    Account,
    Day,
    Event,
    Order,
    Position,
    Session,
    Snapshot,
    Trade,
    Week,
    trade_tallies,
)
from riskc.engine.core.views import position_view, unrealized

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
log = logging.getLogger("riskc.book")
NEVER = dt.datetime.min.replace(tzinfo=dt.UTC)
_NO_TIME = dt.timedelta(0)
_SECOND = dt.timedelta(seconds=1)
_MINUTE = dt.timedelta(minutes=1)


@dataclass(slots=True)
class OpenPosition:
    """The book's state for one contract's open position."""

    contract_id: str
    size: int
    avg_price: Decimal
    opened_at: dt.datetime
    generation: int  # bumps when a position opens from flat or flips
    episode: str = ""  # stable name of this position for idempotency keys (see Book.set_position)
    uncovered_since: dt.datetime | None = None
    view: Position | None = None
    best: Decimal | None = None  # the highest and lowest open P&L since it opened (excursions)
    worst: Decimal | None = None


@dataclass(slots=True)
class BookOrder:
    order: Order
    status: str
    placed_at: dt.datetime
    updated_at: dt.datetime


@dataclass(slots=True)
class DayState:
    trading_day: dt.date
    start: dt.datetime
    end: dt.datetime
    realized: Decimal = ZERO
    fees: Decimal = ZERO
    trades: int = 0
    fills: dict[Any, Fill] = field(default_factory=dict)
    fill_times: list[dt.datetime] = field(default_factory=list)
    high_balance: Decimal | None = None
    trade_views: tuple[Trade, ...] | None = None  # `trades`, rebuilt when a fill counts or is voided
    tallies: tuple[int, int, int] = (0, 0, 0)  # losing, winning, loss streak: with trade_views


class Book:
    def __init__(
        self,
        calendar: TradingCalendar,
        instruments: Instruments,
        *,
        account_id: int | None = None,
        eod_high_balance: Decimal | None = None,
    ) -> None:
        self.calendar = calendar
        self.instruments = instruments
        self.account = Account(id=account_id or 0)
        self._account_known = account_id is not None
        self.positions: dict[str, OpenPosition] = {}
        self.orders: dict[int, BookOrder] = {}
        self._finished: dict[int, dt.datetime] = {}  # terminal orders: a late "open" must not resurrect them
        self.marks: dict[str, Decimal] = {}
        self.quote_times: dict[str, dt.datetime] = {}
        self.receive_clock: set[str] = set()  # contracts ordered by receive time (see _newer)
        self.position_times: dict[str, dt.datetime] = {}
        self.account_time = NEVER
        self.eod_high_balance = eod_high_balance
        self.day: DayState | None = None
        self.rolled: list[DayState] = []  # days closed since the caller last looked (see take_rolled)
        self.now = NEVER
        self._generation = 0
        # Counts every change but a price or the clock: positions, orders, the account, fills,
        # the trading day. The engine compares it to know that nothing it enforces on changed.
        self.version = 0
        self._openings: dict[tuple[str, dt.datetime], int] = {}
        self.coverage_changes: list[
            tuple[str, dt.datetime | None]
        ] = []  # (contract, uncovered since), drained by the engine
        self._seen_previous: set[Any] = set()
        self._positions_view: tuple[Position, ...] | None = None
        self._orders_view: tuple[Order, ...] | None = None
        self.unpriced_now: tuple[str, ...] = ()  # positions without an instrument spec, as of position_views()
        self._pnl_changes = 0  # open P&L updates in place (see _mark), for _day's memo
        self._day_key: tuple[int, int] | None = None
        self._session_cache: tuple[int, Session, dt.datetime, dt.datetime, dt.datetime] | None = None
        # The end of the whole second whose session is kept (NEVER before one): an event before it
        # needs no ``not_evaluated``, and a settled state lasts at least until it (Engine._settle).
        self.second_until = NEVER
        self._minute: tuple | None = None  # (from, to, local clock, weekday, zone) of the local minute
        self._open_state: tuple[bool, dt.datetime, dt.datetime] | None = None  # (open, from, to)
        self._following_key: tuple | None = None  # (trading day, begun) of _following
        self._following: dt.datetime | None = None  # next_trading_day_start
        self._day_view = Day()
        self._week_view = Week()
        self._week_basis: tuple = (None, None, None)  # (day, its trades, the days before) of _week_view
        self._next_week_key: tuple | None = None
        self._next_week_at: dt.datetime | None = None
        self.history: HistorySource | None = None  # the days before today (the store's ledger)
        self._earlier: Earlier = NOTHING_EARLIER
        self._earlier_day: DayState | None = None  # the day and account _earlier was read for
        self._earlier_account: int | None = None
        self._snapshot = Snapshot(instruments=instruments, calendar=calendar)
        self._handlers = {
            AccountUpdate: self._on_account,
            PositionUpdate: self._on_position,
            OrderUpdate: self._on_order,
            Fill: self._on_fill,
            Quote: self._on_quote,
            MarketTrade: self._on_market_trade,
        }

    # -- applying messages -------------------------------------------------------------------

    def apply(self, update: BrokerEvent) -> Event | None:
        """Apply one broker event; the event it means for the rules, or None (a duplicate, an
        older update, another account's, market depth). Never raises: the adapter decoded and
        checked the payload before it became an event."""
        kind = type(update)
        handler = self._handlers.get(kind)
        if handler is None:
            return None
        ts = update.time  # advance(), inlined: this runs for every message
        if ts > self.now:
            self.now = ts
        if self.day is None or self.now >= self.day.end:
            self._roll(self.now)
        if kind is not Quote and kind is not MarketTrade:
            self.version += 1
        return handler(update)

    def advance(self, now: dt.datetime) -> None:
        """Move the book's clock forward (never back), rolling the trading day at its boundary."""
        if now > self.now:
            self.now = now
        if self.day is None or self.now >= self.day.end:
            self._roll(self.now)

    def _on_account(self, update: AccountUpdate) -> Event | None:
        if not self._mine(update.account_id) or update.time < self.account_time:
            return None
        self.account_time = update.time
        account = self.account
        account.id = update.account_id
        account.name = update.name or account.name
        account.balance = update.balance
        account.can_trade = update.can_trade
        if self.eod_high_balance is None:
            self.eod_high_balance = account.balance
        return Event(kind="account", time=update.time, balance=account.balance, can_trade=account.can_trade)

    def _on_position(self, update: PositionUpdate) -> Event | None:
        contract_id, ts = update.contract_id, update.time
        if not self._mine(update.account_id) or ts < self.position_times.get(contract_id, NEVER):
            return None
        self.position_times[contract_id] = ts
        self.set_position(contract_id, update.size, update.avg_price, ts, update.opened_at or ts)
        return Event(kind="position", time=ts, symbol=symbol_of(contract_id), contract_id=contract_id, size=update.size)

    def set_position(
        self, contract_id: str, size: int, avg_price: Decimal, now: dt.datetime, opened_at: dt.datetime | None = None
    ) -> None:
        self.version += 1
        current = self.positions.get(contract_id)
        if size == 0:
            if current is not None:
                del self.positions[contract_id]
                self._positions_view = None
                if current.uncovered_since is not None:
                    self.coverage_changes.append((contract_id, None))
            return
        if current is None or (current.size > 0) != (size > 0):
            self._generation += 1
            # A flip is a new position: it takes the broker's creation time when the broker gives
            # it a new one, so a book rebuilt from the broker after a restart names it the same.
            newer = opened_at is not None and (current is None or opened_at > current.opened_at)
            start = opened_at if newer else now
            current = self.positions[contract_id] = OpenPosition(contract_id, size, avg_price, start, self._generation)
            current.episode = self._episode(contract_id, start)
            self._update_coverage(current, now, restart=True)
        else:
            grew = abs(size) > abs(current.size)
            current.size, current.avg_price = size, avg_price
            self._update_coverage(current, now, restart=grew)
        current.view = None
        self._positions_view = None

    def _episode(self, contract_id: str, opened_at: dt.datetime) -> str:
        """The position's name in idempotency keys: when it opened (the broker's creation time,
        the same after a restart), and how often the book saw it open at that time (a position
        closed by riskc that a recording then shows again is a new episode)."""
        key = (contract_id, opened_at)
        count = self._openings[key] = self._openings.get(key, 0) + 1
        return f"{opened_at.astimezone(dt.UTC).isoformat()}#{count}"

    def restore_uncovered(self, contract_id: str, since: dt.datetime) -> None:
        """After a restart: the grace period keeps the start it had (from the store's timers),
        unless the position opened after it (closed and reopened while riskc was away). A timer
        whose position is gone or now covered is dropped (riskc died before it saw the close)."""
        self.version += 1
        position = self.positions.get(contract_id)
        if position is None or position.uncovered_since is None:
            self.coverage_changes.append((contract_id, None))
        elif position.opened_at <= since < position.uncovered_since:
            position.uncovered_since = since
            self.coverage_changes.append((contract_id, since))

    def _on_order(self, update: OrderUpdate) -> Event | None:
        order_id, status, ts = update.order_id, update.status, update.time
        updated = update.updated_at or ts
        if not self._mine(update.account_id) or order_id in self._finished:
            return None  # another account's, or an order already filled or cancelled: that is final
        if status == "unknown":
            log.warning("order %s: a status riskc does not know; the update is ignored, not taken as final", order_id)
            return None
        order = _order(update)
        known = self.orders.get(order_id)
        if known is not None and (
            updated < known.updated_at
            or updated == known.updated_at
            and status == known.status
            and _same_order(order, known.order)
        ):
            return None  # older than the update applied, or the same update again
        contract_id = order.contract_id
        if status == "open" or status in SUSPENDED:
            placed = known.placed_at if known else (update.created_at or ts)
            self.orders[order_id] = BookOrder(order, status, placed, updated)
        elif known is None and status == "none":
            return None
        else:
            self.orders.pop(order_id, None)
            self._finished[order_id] = updated
        self._orders_changed(contract_id, ts)
        if known is not None and known.order.contract_id != contract_id:
            self._orders_changed(known.order.contract_id, ts)  # it covered that one's position
        return Event(
            kind="order",
            time=ts,
            symbol=order.symbol,
            contract_id=contract_id,
            order=order,
            status=status if status in ORDER_STATUSES else "none",
            side=order.side,
            size=order.size,
        )

    def _on_fill(self, fill: Fill) -> Event | None:
        if not self._mine(fill.account_id):
            return None
        day = self.day
        if fill.at < day.start or fill.fill_id in self._seen_previous:
            return None  # a trade of an earlier trading day (late or replayed after a roll)
        known = day.fills.get(fill.fill_id)
        if known is not None:
            if fill.voided and not known.voided:
                self._count(known, -1)
                day.fills[fill.fill_id] = known._replace(voided=True)
            return None
        day.fills[fill.fill_id] = fill
        if fill.voided:
            return None
        self._count(fill, +1)
        before = self.positions[fill.contract_id].size if fill.contract_id in self.positions else 0
        return Event(
            kind="fill",
            time=fill.time,
            symbol=symbol_of(fill.contract_id),
            contract_id=fill.contract_id,
            side=fill.side,
            size=fill.size,
            price=fill.price,
            pnl=fill.pnl if fill.pnl is not None else ZERO,
            fees=fill.fees,
            closing=fill.pnl is not None,
            position_before=before,
        )

    def _count(self, fill: Fill, sign: int) -> None:
        day, at = self.day, fill.at
        views = day.trade_views
        if sign > 0 and views is not None and (not views or at >= views[-1].time):
            # In time order (the usual case): `trades` grows by one, as the rebuild would sort it
            # (stably, by time: the new fill is the last of the day's), and so do its tallies.
            trade = _trade_view(fill)
            day.trade_views, day.tallies = (*views, trade), _tally(day.tallies, trade)
        else:
            day.trade_views = None  # rebuilt when read (trade_views)
        day.realized += sign * ((fill.pnl or ZERO) - fill.fees)
        day.fees += sign * fill.fees
        day.trades += sign
        if sign > 0:
            _insort(day.fill_times, at)
        elif at in day.fill_times:
            day.fill_times.remove(at)

    def _on_quote(self, quote: Quote) -> Event | None:
        return self.quote_event(quote) if self._take_quote(quote) else None

    def apply_price(self, update: Quote | MarketTrade, price: Decimal | None) -> int:
        """``apply`` for a quote (``price`` its last) or a trade print (its price) without
        building its ``Event`` (the engine asks for it with ``quote_event`` or ``trade_event``
        only when it evaluates): 0 when it is older than the contract's last (not applied), 2
        when it moved the mark of a position, else 1."""
        self.advance(update.time)
        contract_id = update.contract_id
        if not self._newer(contract_id, update.time, update.stamp, update.stamped):
            return 0
        if price is not None and self.marks.get(contract_id) != price:
            self.mark(contract_id, price)
            return 2 if contract_id in self.positions else 1
        return 1

    def _take_quote(self, quote: Quote) -> bool:
        """The hot path: most messages are quotes. False for one older than the contract's last."""
        contract_id, last = quote.contract_id, quote.last
        if not self._newer(contract_id, quote.time, quote.stamp, quote.stamped):
            return False
        if last is not None and self.marks.get(contract_id) != last:
            self.mark(contract_id, last)
        return True

    def quote_event(self, quote: Quote) -> Event:
        """The event rules see for a quote just applied."""
        contract_id, last, bid, ask = quote.contract_id, quote.last, quote.bid, quote.ask
        mark = last if last is not None else self.marks.get(contract_id, ZERO)
        return Event.quote(
            quote.time,
            symbol_of(contract_id),
            contract_id,
            mark,
            bid if bid is not None else mark,
            ask if ask is not None else mark,
        )

    def _on_market_trade(self, trade: MarketTrade) -> Event | None:
        contract_id, price = trade.contract_id, trade.price
        if not self._newer(contract_id, trade.time, trade.stamp, trade.stamped):
            return None
        self.mark(contract_id, price)
        return self.trade_event(trade)

    def trade_event(self, trade: MarketTrade) -> Event:
        """The event rules see for a trade print just applied: a quote at its price."""
        contract_id, price = trade.contract_id, trade.price
        return Event(
            kind="quote",
            time=trade.time,
            symbol=symbol_of(contract_id),
            contract_id=contract_id,
            last=price,
            bid=price,
            ask=price,
        )

    def _newer(self, contract_id: str, received: dt.datetime, stamp: dt.datetime, stamped: bool) -> bool:
        """Whether a price update is not older than the last one applied to the contract, on ONE
        clock: the broker's while every update of the contract carries its time, else the
        receive time for all of them (a quote without ``timestamp`` against a trade stamped by
        the exchange 0.5 s ahead would otherwise drop the next quotes as older)."""
        if not stamped and contract_id not in self.receive_clock:
            self.receive_clock.add(contract_id)  # a source without the broker's time: switch
            self.quote_times.pop(contract_id, None)
        at = received if contract_id in self.receive_clock else stamp
        if at < self.quote_times.get(contract_id, NEVER):
            return False
        self.quote_times[contract_id] = at
        return True

    def mark(self, contract_id: str, price: Decimal) -> None:
        """A price of the contract: its mark, and a position's view follows it."""
        if self.marks.get(contract_id) != price:
            self.marks[contract_id] = price
            position = self.positions.get(contract_id)
            if position is not None and position.view is not None and position.view.tick_size:
                # Only the mark and the open P&L follow the price (coverage and risk at stop do
                # not): update the view in place rather than rebuild it on every quote.
                view = position.view
                view.mark = price
                self._pnl_changes += 1
                view.unrealized_pnl = unrealized(
                    contract_id, position.size, position.avg_price, price, self.instruments
                )
                _excursion(position, view)

    def follows(self, account_id: Any) -> bool:
        """Whether an update of ``account_id`` is this book's: yes for one naming no account, and
        for any before the book knows its account (the first named is then its own)."""
        return account_id is None or not self._account_known or int(account_id) == self.account.id

    def _mine(self, account_id: Any) -> bool:
        """Messages of other accounts on the same login are not this book's."""
        if account_id is None:
            return True
        if not self._account_known:
            self.account.id, self._account_known = int(account_id), True
        return int(account_id) == self.account.id

    def instruments_changed(self) -> None:
        """A spec was learned (the broker's contract data): rebuild the position views with it."""
        for position in self.positions.values():
            position.view = None
        self._positions_view = None
        self.version += 1

    # -- orders and stop coverage -----------------------------------------------------------

    def _orders_changed(self, contract_id: str, now: dt.datetime) -> None:
        self._orders_view = None
        position = self.positions.get(contract_id)
        if position is not None:
            self._update_coverage(position, now, restart=False)
            position.view = None
            self._positions_view = None

    def _update_coverage(self, position: OpenPosition, now: dt.datetime, *, restart: bool) -> None:
        covered = self._coverage(position)
        before = position.uncovered_since
        if covered >= abs(position.size):
            position.uncovered_since = None
        elif restart or position.uncovered_since is None:
            position.uncovered_since = now
        if position.uncovered_since != before:
            self.coverage_changes.append((position.contract_id, position.uncovered_since))

    def _coverage(self, position: OpenPosition) -> int:
        closing = "sell" if position.size > 0 else "buy"
        total = 0
        for entry in self.orders.values():
            o = entry.order
            if (
                entry.status == "open"
                and o.contract_id == position.contract_id
                and o.side == closing
                and o.type in ("stop", "stop_limit", "trailing_stop")
            ):
                total += o.size
        return total

    def working_orders(self) -> tuple[Order, ...]:
        if self._orders_view is None:
            self._orders_view = tuple(e.order for e in self.orders.values() if e.status == "open")
        return self._orders_view

    def all_orders(self) -> list[Order]:
        """Working and suspended orders: what a flatten cancels."""
        return [e.order for e in self.orders.values()]

    def suspended_orders(self) -> tuple[Order, ...]:
        return tuple(e.order for e in self.orders.values() if e.status in SUSPENDED)

    # -- the trading day --------------------------------------------------------------------

    def _roll(self, now: dt.datetime) -> None:
        self.version += 1
        trading_day = self.calendar.trading_day(now)
        previous = self.day
        if previous is not None:
            if trading_day == previous.trading_day:
                return
            self._close_day(previous)
        start = self.calendar.day_start(trading_day)
        self.day = DayState(trading_day, start, self.calendar.day_end(trading_day))
        self._session_cache, self.second_until = None, NEVER

    def _close_day(self, day: DayState) -> None:
        """The end-of-day high-water mark is taken at the boundary, on the balance at that time."""
        equity = self.account.balance + self.unrealized()
        if self.eod_high_balance is None or equity > self.eod_high_balance:
            self.eod_high_balance = equity
        self._seen_previous = set(day.fills)
        self.rolled.append(day)

    def take_rolled(self) -> list[DayState]:
        rolled, self.rolled = self.rolled, []
        return rolled

    def open_pnl(self) -> Decimal:
        """The account's open P&L now (`day.unrealized_pnl`), for a quote the engine does not
        evaluate: the day's high balance and the all-time high-water mark follow it as a
        snapshot's would (see ``_day``)."""
        unrealized = ZERO
        for p in self.position_views():
            unrealized += p.unrealized_pnl
        account, state = self.account, self.day
        equity = account.balance + unrealized
        if state.high_balance is None or equity > state.high_balance:
            state.high_balance = equity
        if equity > account.high_water_balance:
            account.high_water_balance = equity
        return unrealized

    def unrealized(self) -> Decimal:
        return sum((p.unrealized_pnl for p in self.position_views()), ZERO)

    # -- the snapshot -----------------------------------------------------------------------

    def position_views(self) -> tuple[Position, ...]:
        if self._positions_view is None:
            orders = self.working_orders()
            for p in self.positions.values():
                if p.view is None:
                    mark = self.marks.get(p.contract_id, p.avg_price)
                    p.view = position_view(
                        p.contract_id,
                        p.size,
                        p.avg_price,
                        mark,
                        orders,
                        self.instruments,
                        dt.timedelta(0),
                        dt.timedelta(0),
                    )
                    _excursion(p, p.view)
            self._positions_view = tuple(p.view for p in self.positions.values())
            self.unpriced_now = tuple(v.contract_id for v in self._positions_view if not v.tick_size)
        return self._positions_view

    def snapshot(self, event: Event, zone: Any, *, ages: bool = True) -> Snapshot:
        """The view one evaluation sees at ``self.now``. ``zone`` is the policy's ZoneInfo.
        ``ages=False`` leaves positions' and orders' `age` as they were (no rule reads them)."""
        now = self.now
        positions = self.position_views()
        self.keep_times(ages)
        s = self._snapshot
        s.account = self.account
        s.positions = positions
        s.orders = self.working_orders()
        s.day = self._day(positions, now)
        trades = self.day.trade_views
        s.trades = trades if trades is not None else self.trade_views()
        s.week = self._week_view
        s.session, s.next_trading_day = self._session(now, zone)
        s.next_trading_week = self._next_week(now)
        s.event = event
        return s

    # -- trade history: `trades`, the day's tallies, the week (PRODUCT.md §3.6) -------------

    def trade_views(self) -> tuple[Trade, ...]:
        """The day's fills, oldest first, voided ones left out; rebuilt only when one changed."""
        day = self.day
        if day.trade_views is None:
            fills = sorted((f for f in day.fills.values() if not f.voided), key=lambda f: f.at)
            day.trade_views = tuple(_trade_view(f) for f in fills)
            day.tallies = trade_tallies(day.trade_views)
        return day.trade_views

    def earlier(self) -> Earlier:
        """The days before today (the week so far, recent fills), read from ``history`` once per
        trading day and account."""
        day, account_id = self.day, self.account.id
        if day is not self._earlier_day or account_id != self._earlier_account:
            self._earlier_day, self._earlier_account = day, account_id
            self._earlier = NOTHING_EARLIER
            if self.history is not None and self._account_known:
                week_start = self.calendar.week_of(day.trading_day)
                self._earlier = self.history(account_id, day.trading_day, week_start)
        return self._earlier

    def _next_week(self, now: dt.datetime) -> dt.datetime:
        """`next_trading_week`: the same for the whole of a trading day once it has begun (and
        for the weekend gap before it), so it is computed once for each."""
        day = self.day
        key = (day.trading_day, now >= day.start)
        if key != self._next_week_key:
            self._next_week_key = key
            self._next_week_at = self.calendar.next_trading_week_start(now)
        return self._next_week_at

    def _week(self, day: Day) -> Week:
        earlier = self.earlier()
        return Week(
            earlier.realized + day.realized_pnl, earlier.trades + day.trades, earlier.losing + day.losing_trades
        )

    def _day(self, positions: tuple[Position, ...], now: dt.datetime) -> Day:
        """The day's totals, summed again only when a position, the account, a fill or an open
        P&L changed: most quotes are of contracts without a position, and change none of them."""
        key = (self.version, self._pnl_changes)
        if key == self._day_key:
            self._day_view.now = now
            return self._day_view
        self._day_key = key
        state, view, account = self.day, self._day_view, self.account
        unrealized = ZERO
        gross = net = 0
        for p in positions:
            unrealized += p.unrealized_pnl
            gross += p.qty
            net += p.size
        account.open_contracts, account.net_contracts = gross, net
        equity = account.balance + unrealized
        if state.high_balance is None or equity > state.high_balance:
            state.high_balance = equity
        if equity > account.high_water_balance:
            account.high_water_balance = equity  # the all-time high, what an intraday trailing drawdown trails
        view.realized_pnl, view.fees, view.trades = state.realized, state.fees, state.trades
        view.unrealized_pnl, view.net_pnl = unrealized, state.realized + unrealized
        view.high_balance = state.high_balance
        view.eod_high_balance = self.eod_high_balance if self.eod_high_balance is not None else account.balance
        view.fill_times, view.now = state.fill_times, now
        # The tallies and the week change with a fill, the day or the days before, not with the
        # open P&L that brings most evaluations here.
        trades = state.trade_views if state.trade_views is not None else self.trade_views()
        fresh = state is self._earlier_day and account.id == self._earlier_account
        earlier = self._earlier if fresh else self.earlier()
        day_of, trades_of, earlier_of = self._week_basis
        if state is not day_of or trades is not trades_of or earlier is not earlier_of:
            self._week_basis = (state, trades, earlier)
            view.losing_trades, view.winning_trades, view.loss_streak = state.tallies
            view.earlier_fill_times = earlier.fill_times
            self._week_view = self._week(view)
        return view

    def not_evaluated(self, zone: Any) -> None:
        """An event the engine does not evaluate leaves the book as a snapshot would have: the
        session of its second computed (a snapshot later in the second sees the session as if
        every event had been evaluated: `session.now` the first instant of the second the engine
        saw). The views' times (a position's `uncovered_for`, the ages) are not kept here, on
        every quote: a snapshot sets them, and a reader between evaluations (the live view)
        asks for them current with ``keep_times``."""
        if self.now >= self.second_until:  # (never before the kept second: the book's time only grows)
            self._session(self.now, zone)

    def keep_times(self, ages: bool) -> None:
        """The time on the views at ``now`` (positions' `uncovered_for`, and with ``ages`` their and
        the orders' `age`): what a snapshot sets, and a reader between evaluations asks for (see
        ``not_evaluated``)."""
        now = self.now
        for p in self.positions.values():
            view = p.view
            if view is not None:
                if ages:
                    view.age = now - p.opened_at
                view.uncovered_for = now - p.uncovered_since if p.uncovered_since is not None else _NO_TIME
        if ages:
            for entry in self.orders.values():
                entry.order.age = now - entry.placed_at

    @property
    def minute_end(self) -> dt.datetime:
        """The end of the local minute of the last snapshot's session (its `clock`, `weekday`)."""
        return self._minute[1]

    @property
    def open_until(self) -> dt.datetime:
        """Until when the last snapshot's session's `is_open` holds (the exchange's next open or close)."""
        return self._open_state[2]

    def _session(self, now: dt.datetime, zone: Any) -> tuple[Session, dt.datetime]:
        cached = self._session_cache
        if cached is not None and cached[3] <= now < cached[4]:  # the same whole second
            return cached[1], cached[2]
        second = int(now.timestamp())
        # Once a second (a tick): the parts that change less often are kept while they hold.
        minute = self._minute
        if minute is None or not minute[0] <= now < minute[1] or minute[4] is not zone:  # the local minute
            local = now.astimezone(zone)
            start_of_minute = now - dt.timedelta(seconds=local.second, microseconds=local.microsecond)
            clock = local.time().replace(second=0, microsecond=0)
            minute = self._minute = (start_of_minute, start_of_minute + _MINUTE, clock, WEEKDAYS[local.weekday()], zone)
        open_state = self._open_state
        if open_state is None or not open_state[1] <= now < open_state[2]:  # the exchange open or closed
            is_open, until = self.calendar.session_state(now)
            open_state = self._open_state = (is_open, now, until)
        day = self.day
        session = Session(now, minute[2], minute[3], day.trading_day, open_state[0])
        start = now.replace(microsecond=0)
        # `next_trading_day` is the next trading-day *start*: on a Friday, Sunday 17:00, not the
        # end of Friday's day; before a holiday, the day after it. The same for the whole of a
        # trading day once it has begun (and for the gap before it).
        key = (day.trading_day, now >= day.start)
        if key != self._following_key:
            self._following_key = key
            self._following = self.calendar.next_trading_day_start(now)
        result = (second, session, self._following, start, start + _SECOND)
        self._session_cache, self.second_until = result, result[4]
        return session, self._following


def _same_order(a: Order, b: Order) -> bool:
    return (a.contract_id, a.type, a.side, a.size, a.price, a.stop_price) == (
        b.contract_id,
        b.type,
        b.side,
        b.size,
        b.price,
        b.stop_price,
    )


def _order(update: OrderUpdate) -> Order:
    contract_id = update.contract_id
    return Order(
        id=update.order_id,
        symbol=symbol_of(contract_id),
        contract_id=contract_id,
        type=update.type,
        side=update.side,
        size=update.size,
        price=update.price,
        stop_price=update.stop_price,
    )


def _excursion(position: OpenPosition, view: Position) -> None:
    """The best and worst open P&L since the position opened, on its view."""
    pnl = view.unrealized_pnl
    if position.best is None or pnl > position.best:
        position.best = pnl
    if position.worst is None or pnl < position.worst:
        position.worst = pnl
    view.max_favorable, view.max_adverse = position.best, position.worst


def _tally(tallies: tuple[int, int, int], trade: Trade) -> tuple[int, int, int]:
    """``trade_tallies`` of the trades so far and one more."""
    losing, winning, streak = tallies
    if trade.pnl is None:
        return tallies
    if trade.pnl < 0:
        return losing + 1, winning, streak + 1
    if trade.pnl > 0:
        return losing, winning + 1, 0
    return tallies


def _trade_view(fill: Fill) -> Trade:
    return Trade(
        symbol_of(fill.contract_id),
        fill.contract_id,
        fill.side,
        fill.size,
        fill.price,
        fill.pnl,
        fill.fees,
        fill.at,
        fill.pnl is not None,
    )


def _insort(times: list[dt.datetime], moment: dt.datetime) -> None:
    if not times or moment >= times[-1]:
        times.append(moment)
    else:
        import bisect

        bisect.insort(times, moment)
