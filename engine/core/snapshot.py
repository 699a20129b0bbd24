"""The snapshot a rule sees (PRODUCT.md §3.3): the one source of truth for the schema.

Each record is a slotted dataclass; a field that rules may read carries its language type and its
documentation in ``metadata`` (see ``visible``). ``SCHEMA`` is derived from these classes, so the
checker, the compiler and the docs cannot drift from what the engine actually provides.
Plain slots keep attribute reads cheap: compiled rules read them on every event.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from riskc.dsl import types as T
from riskc.dsl.schema import LANGUAGE_FUNCTIONS, Schema, frozen_map
from riskc.dsl.types import FuncT, Member, Param

ZERO = Decimal("0.00")
UNBOUNDED = Decimal("Infinity")  # risk of a position with contracts no stop covers

SIDES = ("long", "short")
ORDER_SIDES = ("buy", "sell")
ORDER_TYPES = ("limit", "market", "stop_limit", "stop", "trailing_stop", "join_bid", "join_ask")
ORDER_STATUSES = ("none", "open", "filled", "cancelled", "expired", "rejected", "pending")
EVENT_KINDS = ("fill", "order", "position", "account", "quote", "clock", "reconnect")
TRADING_STATES = ("active", "reducing", "halted")
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def visible(type_: T.Type, doc: str, default: Any = None) -> Any:
    """A field rules can read, with its language type and its documentation."""
    return field(default=default, metadata={"type": type_, "doc": doc})


@dataclass(slots=True)
class Account:
    id: int = visible(T.INT, "The broker's account id.", 0)
    name: str = visible(T.STRING, "The account's name, e.g. `50KTC-V2-1234567`.", "")
    balance: Decimal = visible(T.MONEY, "Last balance from the broker.", ZERO)
    can_trade: bool = visible(T.BOOL, "Whether the broker lets the account trade (its can-trade flag).", True)
    open_contracts: int = visible(T.CONTRACTS, "Contracts open across all positions (gross).", 0)
    net_contracts: int = visible(T.CONTRACTS, "Signed sum of position sizes (net).", 0)
    high_water_balance: Decimal = visible(
        T.MONEY,
        "Highest balance (realized + unrealized) the account has ever shown, across trading days: "
        "the intraday high-water mark a trailing drawdown trails.",
        ZERO,
    )


@dataclass(slots=True)
class Day:
    realized_pnl: Decimal = visible(
        T.MONEY, "Net realized P&L of the trading day: trade P&L minus fees, voided trades excluded.", ZERO
    )
    unrealized_pnl: Decimal = visible(T.MONEY, "Sum over open positions at the last price.", ZERO)
    net_pnl: Decimal = visible(T.MONEY, "Realized plus unrealized.", ZERO)
    fees: Decimal = visible(T.MONEY, "Fees paid this trading day.", ZERO)
    trades: int = visible(T.INT, "Fills (executions) this trading day.", 0)
    high_balance: Decimal = visible(T.MONEY, "Highest balance (realized + unrealized) seen this trading day.", ZERO)
    eod_high_balance: Decimal = visible(
        T.MONEY, "Highest end-of-trading-day balance so far (for trailing drawdown).", ZERO
    )
    losing_trades: int = visible(T.INT, "Closing fills of the trading day with P&L below zero.", 0)
    winning_trades: int = visible(T.INT, "Closing fills of the trading day with P&L above zero.", 0)
    loss_streak: int = visible(T.INT, "Losing closing fills since the last winning one (this trading day).", 0)
    fill_times: tuple[dt.datetime, ...] = ()  # the day's fills, oldest first, for fills_within
    earlier_fill_times: tuple[dt.datetime, ...] = ()  # fills of the days before (last 7), oldest first
    now: dt.datetime | None = None  # the evaluation's instant, for fills_within

    def fills_within(self, window: dt.timedelta) -> int:
        if self.now is None:
            return 0
        # Both lists are sorted, so the count is two binary searches, not a scan of the fills.
        since = self.now - window
        today = len(self.fill_times) - bisect.bisect_right(self.fill_times, since)
        earlier = self.earlier_fill_times
        if not earlier or earlier[-1] <= since:
            return today
        return today + len(earlier) - bisect.bisect_right(earlier, since)

    METHODS = {
        "fills_within": FuncT(
            (Param("window", T.DURATION),),
            T.INT,
            "Fills whose time falls within the last `window`, across trading days (a `7d` window spans the "
            "week; riskc keeps the fills of the last 7 days).",
        ),
    }


@dataclass(slots=True)
class Week:
    realized_pnl: Decimal = visible(
        T.MONEY,
        "Net realized P&L of the trading week (Monday's trading day, which opens Sunday evening, to Friday's "
        "close, in the policy's timezone): trade P&L minus fees, voided trades excluded. From the state "
        "store: it survives restarts.",
        ZERO,
    )
    trades: int = visible(T.INT, "Fills (executions) this trading week.", 0)
    losing_trades: int = visible(T.INT, "Closing fills of the trading week with P&L below zero.", 0)


@dataclass(slots=True)
class Trade:
    """One fill of the trading day (`trades`), as the broker reported it."""

    symbol: str = visible(T.SYMBOL, "Product code.", "")
    contract_id: str = visible(T.STRING, "The broker's contract id.", "")
    side: str = visible(T.EnumT(ORDER_SIDES), "`buy` or `sell`.", "buy")
    size: int = visible(T.CONTRACTS, "Contracts filled.", 0)
    price: Decimal = visible(T.PRICE, "Fill price.", ZERO)
    pnl: Decimal | None = visible(
        T.OptionalT(T.MONEY), "P&L the fill realized (the broker's, before fees); none on an opening fill.", None
    )
    fees: Decimal = visible(T.MONEY, "Fees of the fill.", ZERO)
    time: dt.datetime = visible(T.TIME, "When it filled.", None)
    closing: bool = visible(T.BOOL, "The fill closed or reduced a position (it has a P&L).", False)


@dataclass(slots=True)
class Position:
    symbol: str = visible(T.SYMBOL, "Product code: `CON.F.US.MNQ.Z25` is `MNQ`.", "")
    contract_id: str = visible(T.STRING, "The broker's contract id, e.g. `CON.F.US.MNQ.Z25`.", "")
    side: str = visible(T.EnumT(SIDES), "`long` or `short`.", "long")
    size: int = visible(T.CONTRACTS, "Signed size: positive long, negative short.", 0)
    qty: int = visible(T.CONTRACTS, "Absolute size.", 0)
    direction: int = visible(T.INT, "+1 for long, -1 for short: turns a favourable move into a signed one.", 1)
    avg_price: Decimal = visible(T.PRICE, "Average entry price.", ZERO)
    mark: Decimal = visible(T.PRICE, "Last price of the contract.", ZERO)
    unrealized_pnl: Decimal = visible(T.MONEY, "Open P&L at the mark, with the instrument's tick value.", ZERO)
    stop_coverage: int = visible(
        T.CONTRACTS,
        "Contracts covered by working stop orders on the opposite side of the same contract, capped at `qty`.",
        0,
    )
    risk_at_stop: Decimal = visible(
        T.MONEY, "Loss if every covering stop filled at its price; unbounded while contracts are uncovered.", UNBOUNDED
    )
    age: dt.timedelta = visible(T.DURATION, "Time since the position opened (a flip opens a new one).", dt.timedelta(0))
    uncovered_for: dt.timedelta = visible(
        T.DURATION, "Time since `stop_coverage` last fell below `qty`; zero while fully covered.", dt.timedelta(0)
    )
    max_favorable: Decimal = visible(
        T.MONEY, "Best open P&L the position has had since it opened (a flip opens a new one).", ZERO
    )
    max_adverse: Decimal = visible(
        T.MONEY,
        "Worst open P&L the position has had since it opened (negative for a loss; a flip opens a new one).",
        ZERO,
    )
    tick_size: Decimal = visible(T.POINTS, "The instrument's minimum price increment.", ZERO)
    tick_value: Decimal = visible(T.MONEY, "Money per tick per contract.", ZERO)
    stop_prices: tuple[Decimal, ...] = ()  # stop prices of the covering stops, for stop_looser_than

    def stop_looser_than(self, price: Decimal) -> bool:
        """Some covering stop sits further from the market than ``price`` (below it for a long,
        above it for a short): moving the stops to ``price`` would tighten them."""
        return any((price - stop) * self.direction > 0 for stop in self.stop_prices)

    METHODS = {
        "stop_looser_than": FuncT(
            (Param("price", T.PRICE),),
            T.BOOL,
            "Some covering stop is further from the market than `price` (below it for a long, above it "
            "for a short); false when no stop covers the position. Stop management uses it so a stop "
            "only ever tightens.",
        ),
    }


@dataclass(slots=True)
class Order:
    id: int = visible(T.INT, "The broker's order id.", 0)
    symbol: str = visible(T.SYMBOL, "Product code.", "")
    contract_id: str = visible(T.STRING, "The broker's contract id.", "")
    type: str = visible(T.EnumT(ORDER_TYPES), "Order type.", "market")
    side: str = visible(T.EnumT(ORDER_SIDES), "`buy` or `sell`.", "buy")
    size: int = visible(T.CONTRACTS, "Contracts still working.", 0)
    price: Decimal | None = visible(T.OptionalT(T.PRICE), "Limit price, none for market and stop orders.", None)
    stop_price: Decimal | None = visible(T.OptionalT(T.PRICE), "Stop price, none unless a stop order.", None)
    age: dt.timedelta = visible(T.DURATION, "Time since the order was placed.", dt.timedelta(0))


@dataclass(slots=True)
class Session:
    now: dt.datetime = visible(T.TIME, "The current instant (event time in replay).", None)
    clock: dt.time = visible(T.CLOCK, "Time of day in the policy's timezone.", dt.time(0, 0))
    weekday: str = visible(T.EnumT(WEEKDAYS), "Day of the week in the policy's timezone.", "monday")
    trading_day: dt.date = visible(T.DATE, "The trading day, which starts at `trading_day_starts`.", None)
    is_open: bool = visible(T.BOOL, "Whether the exchange session is open (holidays and early closes honoured).", True)


@dataclass(slots=True)
class GroupAccount:
    """One account of a group (`a` in `group.accounts`): the account's fields and its day's P&L."""

    id: int = visible(T.INT, "The broker's account id.", 0)
    name: str = visible(T.STRING, "The account's name.", "")
    balance: Decimal = visible(T.MONEY, "Last balance from the broker.", ZERO)
    can_trade: bool = visible(T.BOOL, "Whether the broker lets the account trade (its can-trade flag).", True)
    open_contracts: int = visible(T.CONTRACTS, "Contracts open across the account's positions (gross).", 0)
    net_contracts: int = visible(T.CONTRACTS, "Signed sum of the account's position sizes (net).", 0)
    high_water_balance: Decimal = visible(
        T.MONEY, "Highest balance (realized + unrealized) the account has shown, across trading days.", ZERO
    )
    realized_pnl: Decimal = visible(
        T.MONEY, "The account's net realized P&L of its trading day (`day.realized_pnl`).", ZERO
    )
    unrealized_pnl: Decimal = visible(T.MONEY, "The account's open P&L (`day.unrealized_pnl`).", ZERO)
    net_pnl: Decimal = visible(T.MONEY, "The account's realized plus unrealized P&L (`day.net_pnl`).", ZERO)
    trades: int = visible(T.INT, "The account's fills this trading day (`day.trades`).", 0)
    trading_state: str = visible(
        T.EnumT(TRADING_STATES), "The account's trading state: `active`, `reducing` (exits only) or `halted`.", "active"
    )


@dataclass(slots=True)
class Group:
    """The accounts a group policy guards together (`groups:` in riskc.yaml), summed exactly."""

    name: str = visible(T.STRING, "The group's name, as `groups:` names it.", "")
    realized_pnl: Decimal = visible(T.MONEY, "Sum of the accounts' net realized P&L of the trading day.", ZERO)
    unrealized_pnl: Decimal = visible(T.MONEY, "Sum of the accounts' open P&L.", ZERO)
    net_pnl: Decimal = visible(T.MONEY, "Realized plus unrealized, over every account of the group.", ZERO)
    open_contracts: int = visible(T.CONTRACTS, "Contracts open across every account of the group (gross).", 0)
    trades: int = visible(T.INT, "Fills of the trading day, over every account of the group.", 0)
    accounts: tuple[GroupAccount, ...] = ()  # typed below: `group.accounts`, each `a`


# Fields of `event` by kind. Each field is declared once in EVENT_FIELDS and listed per kind.
EVENT_FIELDS: dict[str, Member] = {
    "kind": Member(T.EnumT(EVENT_KINDS), "What happened: fill, order, position, account, quote, clock or reconnect."),
    "time": Member(T.TIME, "When it happened (the broker's timestamp, or the tick's second)."),
    "symbol": Member(T.SYMBOL, "Product code of the contract involved."),
    "contract_id": Member(T.STRING, "The broker's contract id."),
    "side": Member(T.EnumT(ORDER_SIDES), "`buy` or `sell`."),
    "size": Member(T.CONTRACTS, "Contracts filled, ordered, or the new position size (signed)."),
    "price": Member(T.PRICE, "Fill price."),
    "pnl": Member(T.MONEY, "P&L the fill realized ($0 for an opening fill)."),
    "fees": Member(T.MONEY, "Fees of the fill."),
    "closing": Member(T.BOOL, "The fill closed or reduced a position (it realized P&L)."),
    "order": Member(T.ObjT("order", {}), "The order as it is now."),
    "status": Member(T.EnumT(ORDER_STATUSES), "Order status after this update."),
    "balance": Member(T.MONEY, "New account balance."),
    "can_trade": Member(T.BOOL, "Whether the broker lets the account trade (its can-trade flag)."),
    "last": Member(T.PRICE, "Last traded price."),
    "bid": Member(T.PRICE, "Best bid."),
    "ask": Member(T.PRICE, "Best ask."),
}
EVENT_METHODS: dict[str, FuncT] = {}  # filled in below, once the position record exists
EVENT_KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "fill": ("symbol", "contract_id", "side", "size", "price", "pnl", "fees", "closing", "adds_to", "reduces"),
    "order": ("symbol", "contract_id", "order", "status", "side", "size"),
    "position": ("symbol", "contract_id", "size"),
    "account": ("balance", "can_trade"),
    "quote": ("symbol", "contract_id", "last", "bid", "ask"),
    "clock": (),
    "reconnect": (),
}


@dataclass(slots=True)
class Event:
    """The event being evaluated. Fields that do not apply to its kind keep their defaults."""

    kind: str = "clock"
    time: dt.datetime | None = None
    symbol: str = ""
    contract_id: str = ""
    side: str = "buy"
    size: int = 0
    price: Decimal = ZERO
    pnl: Decimal = ZERO
    fees: Decimal = ZERO
    closing: bool = False
    order: Order | None = None
    status: str = "none"
    balance: Decimal = ZERO
    can_trade: bool = True
    last: Decimal = ZERO
    bid: Decimal = ZERO
    ask: Decimal = ZERO
    position_before: int = 0  # signed size of the fill's contract before the fill

    @classmethod
    def quote(
        cls, time: dt.datetime, symbol: str, contract_id: str, last: Decimal, bid: Decimal, ask: Decimal
    ) -> Event:
        """A quote event, built positionally: 0.4 µs rather than 0.6 with keywords, for the
        kind of event most messages are. (The order is the fields'; a test checks it.)"""
        return cls(
            "quote",
            time,
            symbol,
            contract_id,
            "buy",
            0,
            ZERO,
            ZERO,
            ZERO,
            False,
            None,
            "none",
            ZERO,
            True,
            last,
            bid,
            ask,
        )

    def adds_to(self, p: Position) -> bool:
        """A fill on p's contract in p's direction (a scale-in, or the opening fill)."""
        if self.kind != "fill" or self.contract_id != p.contract_id:
            return False
        return (self.side == "buy") == (p.size > 0)

    def reduces(self, p: Position) -> bool:
        if self.kind != "fill" or self.contract_id != p.contract_id:
            return False
        return (self.side == "buy") == (p.size < 0)


def trade_tallies(trades) -> tuple[int, int, int]:
    """(losing, winning, loss streak) of fills in time order: closing fills (P&L not none) with
    P&L below / above zero, and the losing ones since the last winning one (a scratch at $0
    neither breaks nor extends a streak)."""
    losing = winning = streak = 0
    for t in trades:
        if t.pnl is None:
            continue
        if t.pnl < 0:
            losing += 1
            streak += 1
        elif t.pnl > 0:
            winning += 1
            streak = 0
    return losing, winning, streak


def _members(cls: type) -> dict[str, Member]:
    members = {
        f.name: Member(f.metadata["type"], f.metadata["doc"]) for f in dataclasses.fields(cls) if "type" in f.metadata
    }
    for name, signature in getattr(cls, "METHODS", {}).items():
        members[name] = Member(signature, signature.doc)
    return members


ACCOUNT_T = T.obj("account", _members(Account))
DAY_T = T.obj("day", _members(Day))
WEEK_T = T.obj("week", _members(Week))
TRADE_T = T.obj("trade", _members(Trade))
POSITION_T = T.obj("position", _members(Position))
ORDER_T = T.obj("order", _members(Order))
SESSION_T = T.obj("session", _members(Session))

EVENT_METHODS.update(
    {
        "adds_to": FuncT(
            (Param("p", POSITION_T),), T.BOOL, "The fill adds to position `p` (same contract, same direction)."
        ),
        "reduces": FuncT((Param("p", POSITION_T),), T.BOOL, "The fill reduces or closes position `p`."),
    }
)
EVENT_FIELDS["order"] = Member(ORDER_T, EVENT_FIELDS["order"].doc)

# Instrument conversions: the only bridge between points and money (PRODUCT.md §3.2).
ENGINE_FUNCTIONS: dict[str, FuncT] = {
    "ticks_to_points": FuncT(
        (Param("symbol", T.SYMBOL), Param("ticks", T.TICKS)), T.POINTS, "Price distance of `ticks` for the instrument."
    ),
    "points_to_ticks": FuncT(
        (Param("symbol", T.SYMBOL), Param("points", T.POINTS)),
        T.TICKS,
        "Whole ticks in a price distance (rounded down).",
    ),
    "points_to_money": FuncT(
        (Param("symbol", T.SYMBOL), Param("points", T.POINTS)), T.MONEY, "Money value of a price move, per contract."
    ),
}


def _event_schema(leave_out: tuple[str, ...] = ()) -> dict[str, dict[str, Member]]:
    common = ("kind", "time")
    schema = {}
    for kind, names in EVENT_KIND_FIELDS.items():
        fields = {}
        for name in common + names:
            if name in leave_out:
                continue
            if name in EVENT_METHODS:
                fields[name] = Member(EVENT_METHODS[name], EVENT_METHODS[name].doc)
            else:
                fields[name] = EVENT_FIELDS[name]
        schema[kind] = frozen_map(fields)
    return schema


@dataclass(slots=True)
class Snapshot:
    """The read-only view one evaluation sees. Engine functions of the schema are methods."""

    # The roots rules read (`SCHEMA.roots` is made of these fields); `event` is typed per `on`.
    account: Account = field(default_factory=Account, metadata={"type": ACCOUNT_T, "doc": "The trading account."})
    day: Day = field(default_factory=Day, metadata={"type": DAY_T, "doc": "Counters of the current trading day."})
    positions: tuple[Position, ...] = visible(T.ListT(POSITION_T), "Open positions.", ())
    orders: tuple[Order, ...] = visible(T.ListT(ORDER_T), "Working orders.", ())
    session: Session = field(
        default_factory=Session, metadata={"type": SESSION_T, "doc": "The clock in the policy's timezone."}
    )
    next_trading_day: dt.datetime | None = visible(T.TIME, "The next trading-day start, DST-correct.")
    event: Event = field(default_factory=Event)
    instruments: Any = None  # engine.instruments.Instruments
    trades: tuple[Trade, ...] = visible(
        T.ListT(TRADE_T), "The trading day's fills, oldest first; voided fills are not in the list.", ()
    )
    week: Week = field(
        default_factory=Week,
        metadata={"type": WEEK_T, "doc": "Counters of the current trading week (from the state store)."},
    )
    next_trading_week: dt.datetime | None = visible(
        T.TIME, "The next trading week's start: Sunday's session open (later after a Monday holiday)."
    )
    calendar: Any = None  # engine.core.calendar.TradingCalendar: `lockout until CLOCK` skips closed days

    def ticks_to_points(self, symbol: str, ticks: int) -> Decimal:
        return self.instruments.ticks_to_points(symbol, ticks)

    def points_to_ticks(self, symbol: str, points: Decimal) -> int:
        return self.instruments.points_to_ticks(symbol, points)

    def points_to_money(self, symbol: str, points: Decimal) -> Decimal:
        return self.instruments.points_to_money(symbol, points)


GROUP_ACCOUNT_T = T.obj("account", _members(GroupAccount))
GROUP_T = T.obj(
    "group",
    {
        **_members(Group),
        "accounts": Member(
            T.ListT(GROUP_ACCOUNT_T),
            "The accounts of the group, in the order `groups:` lists them; each `a` has the account's fields "
            "and its day's P&L (`sum(a.net_pnl for a in group.accounts)`).",
        ),
    },
)


@dataclass(slots=True)
class GroupSnapshot:
    """What a group policy sees (`scope group`): the group and the clock, not one account's book.
    Its actions act on every account of the group (engine/enforce/group.py)."""

    group: Group = field(
        default_factory=Group, metadata={"type": GROUP_T, "doc": "The accounts guarded together, summed."}
    )
    session: Session = field(
        default_factory=Session, metadata={"type": SESSION_T, "doc": "The clock in the group policy's timezone."}
    )
    next_trading_day: dt.datetime | None = visible(T.TIME, "The next trading-day start, DST-correct.")
    next_trading_week: dt.datetime | None = visible(
        T.TIME, "The next trading week's start: Sunday's session open (later after a Monday holiday)."
    )
    event: Event = field(default_factory=Event)  # the event one of the accounts just saw
    calendar: Any = None  # engine.core.calendar.TradingCalendar: `lockout until CLOCK` skips closed days


_ACCOUNT_ROOTS = ("account", "day", "week", "positions", "orders", "trades")
_GROUP_ONLY = (
    "`group` is seen by group policies only: a policy with `scope group` in its header, listed under `groups:`"
)
_ACCOUNT_ONLY = (
    "a group policy sees `group`, not one account's `{}`: each account is `a` in `group.accounts` "
    "(e.g. `sum(a.net_pnl for a in group.accounts)`)"
)

GROUP_SCHEMA = Schema(
    roots=frozen_map({k: m for k, m in _members(GroupSnapshot).items()}),
    binders=frozen_map({}),
    # The event one of the accounts saw; not the order record nor a position's tests (no binder).
    events=frozen_map(_event_schema(leave_out=("order", "adds_to", "reduces"))),
    functions=LANGUAGE_FUNCTIONS,
    unseen=frozen_map({name: _ACCOUNT_ONLY.format(name) for name in _ACCOUNT_ROOTS}),
)

SCHEMA = Schema(
    roots=frozen_map(_members(Snapshot)),
    binders=frozen_map({"position": POSITION_T, "order": ORDER_T}),
    events=frozen_map(_event_schema()),
    functions=frozen_map({**LANGUAGE_FUNCTIONS, **ENGINE_FUNCTIONS}),
    unseen=frozen_map({"group": _GROUP_ONLY}),
    group=GROUP_SCHEMA,
)
