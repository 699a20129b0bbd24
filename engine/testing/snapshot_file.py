"""Snapshot files (YAML or JSON) for `riskc eval` and policy tests: validated with pydantic,
errors name the line. Derived fields (symbol, qty, P&L, stop coverage, session clock) are
computed by ``engine.views`` and the trading calendar, never written by hand.

```yaml
now: 2026-03-10T20:08:00Z
account: {id: 13298777, name: 50KTC, balance: 48980.00, can_trade: true, high_water_balance: 50100}
day: {realized_pnl: -1020.00, trades: 9, high_balance: 50100, eod_high_balance: 50000}
positions:
  - {contract_id: CON.F.US.MNQ.Z25, size: 2, avg_price: 21000.25, mark: 20990, age: 3m, uncovered_for: 40s}
orders:
  - {id: 7, contract_id: CON.F.US.MNQ.Z25, type: stop, side: sell, size: 1, stop_price: 20980}
event: {kind: fill, contract_id: CON.F.US.MNQ.Z25, side: buy, size: 1, price: 20990}
session: {is_open: true}     # optional overrides of what the calendar says
```
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import typing
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, field_validator

from riskc.engine.core.instruments import DEFAULT_INSTRUMENTS, Instruments, symbol_of
from riskc.engine.core.snapshot import (
    ORDER_SIDES,
    ORDER_STATUSES,
    ORDER_TYPES,
    Account,
    Day,
    Event,
    Order,
    Session,
    Snapshot,
    Trade,
    Week,
    trade_tallies,
)
from riskc.engine.core.views import position_view, totals

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class SnapshotError(ValueError):
    """A snapshot file that cannot be used, with where (line) and why."""

    def __init__(self, message: str, line: int | None = None, source: str = "<snapshot>"):
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {message}")
        self.line = line


def parse_duration(value: Any) -> dt.timedelta:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.timedelta(seconds=value)
    match = _DURATION.match(str(value).strip())
    if not match or not any(match.groups()):
        raise ValueError(f"{value!r} is not a duration like 30s, 15m or 1h30m")
    d, h, m, s = (int(g or 0) for g in match.groups())
    return dt.timedelta(days=d, hours=h, minutes=m, seconds=s)


def _money(value: Any) -> Decimal:
    if isinstance(value, float):
        value = repr(value)  # the shortest repr round-trips: 0.37 stays 0.37
    text = str(value).replace("$", "").replace(",", "")
    return Decimal(text)


Money = Annotated[Decimal, BeforeValidator(lambda v: _money(v))]
Duration = Annotated[dt.timedelta, BeforeValidator(lambda v: parse_duration(v))]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AccountIn(_Model):
    id: int = 0
    name: str = ""
    balance: Money = Decimal("0")
    can_trade: bool = True
    high_water_balance: Money | None = None  # default: the higher of day.high_balance and day.eod_high_balance


class DayIn(_Model):
    realized_pnl: Money = Decimal("0")
    fees: Money = Decimal("0")
    trades: int = 0
    high_balance: Money | None = None
    eod_high_balance: Money | None = None
    fills: tuple[dt.datetime, ...] = ()


class TradeIn(_Model):
    contract_id: str
    side: Literal[ORDER_SIDES] = "buy"  # type: ignore[valid-type]
    size: int = 1
    price: Decimal = Decimal("0")
    pnl: Money | None = None  # none: an opening fill
    fees: Money = Decimal("0")
    time: dt.datetime | None = None  # default: `now`


class WeekIn(_Model):
    """The trading week's counters; each defaults to today's (a week that began today)."""

    realized_pnl: Money | None = None
    trades: int | None = None
    losing_trades: int | None = None


class PositionIn(_Model):
    contract_id: str
    size: int
    avg_price: Decimal
    mark: Decimal | None = None
    max_favorable: Money | None = None  # default: the open P&L now
    max_adverse: Money | None = None
    age: Duration = dt.timedelta(0)
    uncovered_for: Duration = dt.timedelta(0)

    @field_validator("size")
    @classmethod
    def _nonzero(cls, v: int) -> int:
        if v == 0:
            raise ValueError("a position has a non-zero size (positive long, negative short)")
        return v


class OrderIn(_Model):
    id: int = 0
    contract_id: str
    type: Literal[ORDER_TYPES] = "limit"  # type: ignore[valid-type]
    side: Literal[ORDER_SIDES] = "buy"  # type: ignore[valid-type]
    size: int = 1
    price: Decimal | None = None
    stop_price: Decimal | None = None
    age: Duration = dt.timedelta(0)


class EventIn(_Model):
    kind: Literal["fill", "order", "position", "account", "quote", "clock", "reconnect"] = "clock"
    contract_id: str = ""
    side: Literal[ORDER_SIDES] = "buy"  # type: ignore[valid-type]
    size: int = 0
    price: Decimal = Decimal("0")
    pnl: Money = Decimal("0")
    fees: Money = Decimal("0")
    closing: bool = False
    status: Literal[ORDER_STATUSES] = "none"  # type: ignore[valid-type]
    order_id: int | None = None
    balance: Money | None = None
    can_trade: bool | None = None
    last: Decimal = Decimal("0")
    bid: Decimal = Decimal("0")
    ask: Decimal = Decimal("0")


class SessionIn(_Model):
    is_open: bool | None = None


class SnapshotIn(_Model):
    now: dt.datetime
    account: AccountIn = AccountIn()
    day: DayIn = DayIn()
    positions: tuple[PositionIn, ...] = ()
    orders: tuple[OrderIn, ...] = ()
    trades: tuple[TradeIn, ...] = ()
    week: WeekIn = WeekIn()
    event: EventIn = EventIn()
    session: SessionIn = SessionIn()

    @field_validator("now")
    @classmethod
    def _aware(cls, v: dt.datetime) -> dt.datetime:
        if v.tzinfo is None:
            raise ValueError("`now` needs a timezone, e.g. 2026-03-10T20:08:00Z")
        utc = v.astimezone(dt.UTC)  # a plain datetime, whatever subclass the validator produced
        return dt.datetime(*utc.timetuple()[:6], utc.microsecond, tzinfo=dt.UTC)


def validation_message(error: ValidationError, model: type[BaseModel]) -> tuple[tuple, str]:
    """(location, message) of the first problem, in our words: an unknown key says so, with a
    did-you-mean among the keys that place takes (`realised_pnl` -> `realized_pnl`)."""
    first = error.errors()[0]
    loc = tuple(first["loc"])
    if first["type"] != "extra_forbidden" or not loc:
        return loc, first["msg"]
    key, known = str(loc[-1]), _keys_at(model, loc[:-1])
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return loc, f"unknown key `{key}`; did you mean `{close[0]}`?"
    return loc, f"unknown key `{key}`" + (f" (known here: {', '.join(known)})" if known else "")


def _keys_at(model: type[BaseModel], path: tuple) -> list[str]:
    """The keys of the model found at ``path`` (field names; list indices skipped)."""
    current: Any = model
    for part in path:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part)) if isinstance(current, type) else None
        if field is None:
            return []
        current = _model_in(field.annotation)
        if current is None:
            return []
    return list(current.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def load_snapshot_text(
    text: str,
    source: str = "<snapshot>",
    *,
    timezone: str = "America/Chicago",
    day_starts: dt.time = dt.time(17, 0),
    instruments: Instruments = DEFAULT_INSTRUMENTS,
    calendar=None,
) -> Snapshot:
    data = _read_yaml(text, source)
    try:
        model = SnapshotIn.model_validate(data)
    except ValidationError as error:
        loc, message = validation_message(error, SnapshotIn)
        path = ".".join(str(p) for p in loc)
        raise SnapshotError(f"{path}: {message}", line_of(data, loc), source) from None
    return build_snapshot(model, timezone, day_starts, instruments, calendar)


def load_snapshot(path: str | Path, **options) -> Snapshot:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SnapshotError(f"cannot read: {error.strerror}", None, str(path)) from None
    return load_snapshot_text(text, str(path), **options)


def _read_yaml(text: str, source: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="rt").load(text)  # round-trip mode keeps line numbers; JSON is YAML
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise SnapshotError(
            f"not valid YAML/JSON: {getattr(error, 'problem', error)}", mark.line + 1 if mark else None, source
        ) from None
    if not isinstance(data, dict):
        raise SnapshotError("a snapshot is a mapping with `now`, `account`, `positions`, ...", 1, source)
    return data


def line_of(data: Any, loc: tuple) -> int | None:
    """The 1-based line of the deepest key or item of ``loc`` that exists in the YAML."""
    line, node = None, data
    for key in loc:
        lc = getattr(node, "lc", None)
        try:
            if lc is not None:
                line = (lc.key(key) if isinstance(key, str) else lc.item(key))[0] + 1
            node = node[key]
        except (KeyError, IndexError, TypeError):
            break
    return line


def build_snapshot(
    model: SnapshotIn, timezone: str, day_starts: dt.time, instruments: Instruments, calendar=None
) -> Snapshot:
    now = model.now
    orders = tuple(_order(o) for o in model.orders)
    positions = tuple(
        position_view(
            p.contract_id,
            p.size,
            p.avg_price,
            p.mark if p.mark is not None else p.avg_price,
            orders,
            instruments,
            p.age,
            p.uncovered_for,
        )
        for p in model.positions
    )
    for given, view in zip(model.positions, positions, strict=True):
        best, worst = given.max_favorable, given.max_adverse
        view.max_favorable = view.unrealized_pnl if best is None else max(view.unrealized_pnl, best)
        view.max_adverse = view.unrealized_pnl if worst is None else min(view.unrealized_pnl, worst)
    account = Account(model.account.id, model.account.name, model.account.balance, model.account.can_trade)
    trades = tuple(sorted((_trade(t, now) for t in model.trades), key=lambda t: t.time))
    day = _day(model.day, account.balance, now)
    day.losing_trades, day.winning_trades, day.loss_streak = trade_tallies(trades)
    account.high_water_balance = _high_water(model.account.high_water_balance, day)
    totals(account, day, positions)
    if calendar is None:
        from riskc.engine.core.calendar import TradingCalendar

        calendar = TradingCalendar(timezone, day_starts)
    session, next_day = _session(now, timezone, day_starts, model.session, calendar)
    event = _event(model.event, now, orders)
    snapshot = Snapshot(account, day, positions, orders, session, next_day, event, instruments)
    snapshot.trades, snapshot.week = trades, _week(model.week, day)
    snapshot.calendar = calendar
    snapshot.next_trading_week = calendar.next_trading_week_start(now)
    return snapshot


def _trade(t: TradeIn, now: dt.datetime) -> Trade:
    time = t.time.astimezone(dt.UTC) if t.time is not None else now
    closing = t.pnl is not None
    return Trade(symbol_of(t.contract_id), t.contract_id, t.side, t.size, t.price, t.pnl, t.fees, time, closing)


def _week(w: WeekIn, day: Day) -> Week:
    return Week(
        realized_pnl=w.realized_pnl if w.realized_pnl is not None else day.realized_pnl,
        trades=w.trades if w.trades is not None else day.trades,
        losing_trades=w.losing_trades if w.losing_trades is not None else day.losing_trades,
    )


def _order(o: OrderIn) -> Order:
    return Order(o.id, symbol_of(o.contract_id), o.contract_id, o.type, o.side, o.size, o.price, o.stop_price, o.age)


def _day(d: DayIn, balance: Decimal, now: dt.datetime) -> Day:
    high = d.high_balance if d.high_balance is not None else balance
    eod = d.eod_high_balance if d.eod_high_balance is not None else balance
    return Day(
        realized_pnl=d.realized_pnl,
        fees=d.fees,
        trades=d.trades,
        high_balance=high,
        eod_high_balance=eod,
        fill_times=tuple(sorted(t.astimezone(dt.UTC) for t in d.fills)),
        now=now,
    )


def _high_water(given: Decimal | None, day: Day) -> Decimal:
    """The all-time intraday high is at least every high the day counters know of."""
    return given if given is not None else max(day.high_balance, day.eod_high_balance)


def _session(now, timezone, day_starts, override: SessionIn, calendar):
    from zoneinfo import ZoneInfo

    local = now.astimezone(ZoneInfo(timezone))
    is_open = override.is_open if override.is_open is not None else calendar.is_session_open(now)
    session = Session(
        now,
        local.time().replace(second=0, microsecond=0),
        local.strftime("%A").lower(),
        calendar.trading_day(now),
        is_open,
    )
    return session, calendar.next_trading_day_start(now)


def _event(e: EventIn, now: dt.datetime, orders: tuple[Order, ...]) -> Event:
    order = next((o for o in orders if o.id == e.order_id), None) if e.order_id is not None else None
    return Event(
        kind=e.kind,
        time=now,
        symbol=symbol_of(e.contract_id) if e.contract_id else "",
        contract_id=e.contract_id,
        side=e.side,
        size=e.size,
        price=e.price,
        pnl=e.pnl,
        fees=e.fees,
        closing=e.closing,
        order=order,
        status=e.status,
        balance=e.balance if e.balance is not None else Decimal("0"),
        can_trade=e.can_trade if e.can_trade is not None else True,
        last=e.last,
        bid=e.bid,
        ask=e.ask,
    )
