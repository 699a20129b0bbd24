"""Derived snapshot fields, computed the same way for every source (snapshot files, the book).

Stop coverage counts only working stop orders on the opposite side of the same contract, capped
at the position size (a stop for 2 of 4 contracts covers 2); risk at stop is unbounded while
any contract is uncovered; unrealized P&L uses the instrument's own tick value.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal

from riskc.engine.core.instruments import Instruments, UnknownInstrument, symbol_of
from riskc.engine.core.snapshot import UNBOUNDED, ZERO, Account, Day, Order, Position

STOP_TYPES = frozenset({"stop", "stop_limit", "trailing_stop"})


def covering_stops(contract_id: str, size: int, orders: Iterable[Order]) -> list[Order]:
    """Working stops that would close (part of) a position of ``size`` on ``contract_id``."""
    closing_side = "sell" if size > 0 else "buy"
    return [
        o
        for o in orders
        if o.contract_id == contract_id and o.type in STOP_TYPES and o.side == closing_side and o.size > 0
    ]


def stop_coverage(contract_id: str, size: int, orders: Iterable[Order]) -> int:
    covered = sum(o.size for o in covering_stops(contract_id, size, orders))
    return min(covered, abs(size))


def risk_at_stop(
    contract_id: str, size: int, avg_price: Decimal, orders: Iterable[Order], instruments: Instruments
) -> Decimal:
    """Loss if every covering stop filled at its stop price; unbounded when contracts are uncovered.
    Stops nearest the entry are counted first (they fill first)."""
    qty, direction = abs(size), (1 if size > 0 else -1)
    stops = sorted(covering_stops(contract_id, size, orders), key=lambda o: -(o.stop_price or ZERO) * direction)
    remaining, loss = qty, ZERO
    spec = instruments.spec(symbol_of(contract_id))
    for order in stops:
        if remaining == 0:
            break
        if order.stop_price is None:
            continue
        take = min(remaining, order.size)
        loss += (avg_price - order.stop_price) * direction * take / spec.tick_size * spec.tick_value
        remaining -= take
    return UNBOUNDED if remaining else loss


def unrealized(contract_id: str, size: int, avg_price: Decimal, mark: Decimal, instruments: Instruments) -> Decimal:
    spec = instruments.spec(symbol_of(contract_id))
    return (mark - avg_price) * size / spec.tick_size * spec.tick_value


def position_view(
    contract_id: str,
    size: int,
    avg_price: Decimal,
    mark: Decimal,
    orders: Iterable[Order],
    instruments: Instruments,
    age: dt.timedelta,
    uncovered_for: dt.timedelta,
) -> Position:
    """A position in an instrument without a spec still gets a view (its side, size, coverage):
    its P&L counts as zero and its risk as unbounded, and the engine acts on it as on a rule
    that cannot be evaluated (``Engine._unpriced_actions``)."""
    orders = tuple(orders)
    symbol = symbol_of(contract_id)
    coverage = stop_coverage(contract_id, size, orders)
    stops = tuple(o.stop_price for o in covering_stops(contract_id, size, orders) if o.stop_price is not None)
    try:
        spec = instruments.spec(symbol)
    except UnknownInstrument:
        spec = None
    return Position(
        symbol=symbol,
        contract_id=contract_id,
        side="long" if size > 0 else "short",
        size=size,
        qty=abs(size),
        direction=1 if size > 0 else -1,
        avg_price=avg_price,
        mark=mark,
        unrealized_pnl=unrealized(contract_id, size, avg_price, mark, instruments) if spec else ZERO,
        stop_coverage=coverage,
        risk_at_stop=risk_at_stop(contract_id, size, avg_price, orders, instruments) if spec else UNBOUNDED,
        age=age,
        uncovered_for=uncovered_for if coverage < abs(size) else dt.timedelta(0),
        tick_size=spec.tick_size if spec else ZERO,
        tick_value=spec.tick_value if spec else ZERO,
        stop_prices=stops,
    )


def totals(account: Account, day: Day, positions: Iterable[Position]) -> None:
    """Fill the account and day fields that sum over positions."""
    positions = tuple(positions)
    account.open_contracts = sum(p.qty for p in positions)
    account.net_contracts = sum(p.size for p in positions)
    day.unrealized_pnl = sum((p.unrealized_pnl for p in positions), ZERO)
    day.net_pnl = day.realized_pnl + day.unrealized_pnl
