"""The Gateway's wire format in, typed events out (``engine/core/events.py``): the one place
that knows the hub payloads' field names and integer codes (PRODUCT.md §6.1).

Live callbacks, REST search results and recording lines all come through here. A user-hub
argument is read alike in its three shapes: wrapped (``{"action": 1, "data": {...}}``), the bare
entity, or a list of several of either; ``GatewayTrade`` data is one object or a list. A payload
that cannot be used raises ``ValueError`` (``KeyError``, ``TypeError``) with the reason, before
anything downstream sees any of it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from riskc.engine.adapters.port import BrokerState
from riskc.engine.adapters.projectx.intake import Message, TimeOutOfRange, parse_time
from riskc.engine.core.events import (
    ORDER_STATUSES,
    AccountUpdate,
    BrokerEvent,
    Depth,
    Fill,
    MarketTrade,
    OrderUpdate,
    PositionUpdate,
    Quote,
)
from riskc.engine.core.snapshot import ORDER_TYPES

SIDES = ("buy", "sell")  # OrderSide BUY=0 SELL=1
ORDER_TYPE = {i + 1: name for i, name in enumerate(ORDER_TYPES)}  # LIMIT=1 ... JOIN_ASK=7
LONG, SHORT = 1, 2  # PositionType
DECODE_ERRORS = (KeyError, TypeError, ValueError, ArithmeticError, IndexError)
_new = tuple.__new__


def decode(message: Message) -> list[BrokerEvent]:
    """The events of one hub message, in order (a list payload gives several). Raises one of
    ``DECODE_ERRORS`` with the reason when a payload cannot be used."""
    event = message.event
    if event is not None:  # decoded on the way in (intake's quote fast path)
        return [event]
    target = message.target
    if target == "GatewayQuote":
        return [quote(message.args, message.ts)]
    user = _USER.get(target)
    if user is not None:
        return [user(data, message.ts) for data in _entities(message.args[0], target)]
    if target == "GatewayTrade":
        trade = market_trade(message.args, message.ts)
        return [] if trade is None else [trade]
    if target == "GatewayDepth":
        return [Depth(message.ts, _contract(message.args[0]))]
    raise ValueError(f"unknown target {target!r}")


def _entities(payload: Any, target: str) -> list[dict[str, Any]]:
    items = payload if type(payload) is list else [payload]
    entities = []
    for item in items:
        data = item.get("data", item) if type(item) is dict else None
        if type(data) is not dict:
            raise ValueError(f"{target} payload is not an object")
        entities.append(data)
    return entities


# -- the user hub (and the REST searches, which share its field names) ---------------------


def account(data: dict[str, Any], ts: dt.datetime) -> AccountUpdate:
    return AccountUpdate(
        ts, int(data["id"]), _money(data["balance"]), bool(data.get("canTrade", True)), data.get("name") or None
    )


def position(data: dict[str, Any], ts: dt.datetime) -> PositionUpdate:
    contract_id = _contract(data["contractId"])
    size = int(data.get("size") or 0)
    kind = data.get("type")
    if size < 0 or size and kind not in (LONG, SHORT):
        raise ValueError(f"position type {kind!r} with size {size}: expected 1 (LONG) or 2 (SHORT)")
    signed = size if kind == LONG else -size if kind == SHORT else 0
    avg_price = _money(data.get("averagePrice") or 0)
    return PositionUpdate(
        ts, contract_id, signed, avg_price, _time(data.get("creationTimestamp")), _account(data.get("accountId"))
    )


def order(data: dict[str, Any], ts: dt.datetime) -> OrderUpdate:
    contract_id = _contract(data["contractId"])
    code = int(data["status"])
    status = ORDER_STATUSES[code] if 0 <= code < len(ORDER_STATUSES) else "unknown"
    limit, stop = data.get("limitPrice"), data.get("stopPrice")
    return OrderUpdate(
        ts,
        int(data["id"]),
        contract_id,
        status,
        ORDER_TYPE.get(int(data["type"]), "market"),
        _side(data["side"]),
        int(data["size"]) - int(data.get("fillVolume") or 0),
        _money(limit) if limit is not None else None,
        _money(stop) if stop is not None else None,
        _time(data.get("creationTimestamp")),
        _time(data.get("updateTimestamp")),
        _account(data.get("accountId")),
    )


def fill(data: dict[str, Any], ts: dt.datetime) -> Fill:
    pnl = data.get("profitAndLoss")
    order_id = data.get("orderId")
    return Fill(
        ts,
        _trade_id(data["id"]),
        _contract(data["contractId"]),
        _side(data["side"]),
        int(data["size"]),
        _money(data["price"]),
        _money(pnl) if pnl is not None else None,
        _money(data.get("fees") or 0),
        bool(data.get("voided")),
        _time(data.get("creationTimestamp")),
        _account(data.get("accountId")),
        int(order_id) if order_id is not None else None,
    )


_USER = {
    "GatewayUserAccount": account,
    "GatewayUserPosition": position,
    "GatewayUserOrder": order,
    "GatewayUserTrade": fill,
}


# -- the market hub ------------------------------------------------------------------------


def quote(args: list[Any], ts: dt.datetime) -> Quote:
    """The hot path (most messages are quotes): the three prices checked in one test when they
    are what intake makes of them (finite decimals)."""
    contract_id, data = args[0], args[1]
    if type(contract_id) is not str or not contract_id or type(data) is not dict:
        contract_id, data = _contract(contract_id), _object(data, "GatewayQuote data")  # raise why
    at = _time(data.get("timestamp"))
    stamped = at is not None
    stamp = at if stamped else ts
    last, bid, ask = data.get("lastPrice"), data.get("bestBid"), data.get("bestAsk")
    if not (
        type(last) is Decimal
        and type(bid) is Decimal
        and type(ask) is Decimal
        and last.is_finite()
        and bid.is_finite()
        and ask.is_finite()
    ):
        last = None if last is None else _money(last)
        bid = None if bid is None else _money(bid)
        ask = None if ask is None else _money(ask)
        if last is None and bid is not None and ask is not None:
            last = (bid + ask) / 2
    # Stamped by the broker when the payload has a timestamp (not `stamp is not ts`: parse_time's
    # cache may hand back the line's own ts); tuple.__new__ skips Quote's Python-level __new__.
    return _new(Quote, (ts, contract_id, last, bid, ask, stamp, stamped))


def market_trade(args: list[Any], ts: dt.datetime) -> MarketTrade | None:
    """The last of the trades a `GatewayTrade` carries (one object or a list); None for none."""
    contract_id, trades = _contract(args[0]), args[1]
    if isinstance(trades, dict):
        trades = [trades]
    if not trades:
        return None
    last = _object(trades[-1], "GatewayTrade data")
    stamp = _time(last.get("timestamp"))
    return MarketTrade(ts, contract_id, _money(last["price"]), stamp or ts, stamp is not None)


# -- REST: the account's state -------------------------------------------------------------


def broker_state(
    positions: list[Any],
    orders: list[Any],
    trades: list[Any],
    account_data: dict[str, Any] | None,
    now: dt.datetime,
    extra: dict[str, Any] | None = None,
) -> BrokerState:
    """The REST search results (Gateway field names, as the hubs') as a typed ``BrokerState``.
    Raises one of ``DECODE_ERRORS`` on an entity that cannot be used."""
    return BrokerState(
        positions=tuple(p for p in (position(_object(d, "position"), now) for d in positions) if p.size),
        orders=tuple(order(_object(d, "order"), now) for d in orders),
        trades=tuple(fill(_object(d, "trade"), now) for d in trades),
        account=None if account_data is None else account(account_data, now),
        extra=dict(extra or {}),
    )


# -- fields --------------------------------------------------------------------------------


def _object(value: Any, what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise ValueError(f"{what} is not an object")
    return value


def _contract(value: Any) -> str:
    if type(value) is not str or not value:
        raise ValueError(f"contract id {value!r} is not a string")
    return value


def _trade_id(value: Any) -> int | str:
    if type(value) is int or (type(value) is str and value):
        return value
    raise ValueError(f"trade id {value!r} is not a number or a string")


def _account(value: Any) -> int | None:
    return None if value is None else int(value)


def _time(text: Any) -> dt.datetime | None:
    """A payload's timestamp; None (the receive time stands in) when absent or outside the
    years riskc reads (.NET's default 0001-01-01 for one the Gateway did not set)."""
    if not text:
        return None
    try:
        return parse_time(text)
    except TimeOutOfRange:
        return None


def _money(value: Any) -> Decimal:
    if type(value) is Decimal:
        amount = value
    elif isinstance(value, float):
        amount = Decimal(repr(value))
    elif isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise ValueError(f"{value!r} is not a number")
    else:
        try:
            amount = Decimal(value)
        except ArithmeticError:  # decimal.InvalidOperation says only "[<class 'decimal.ConversionSyntax'>]"
            raise ValueError(f"{value!r} is not a number") from None
    if not amount.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return amount


def _side(value: Any) -> str:
    side = int(value)
    if side not in (0, 1):
        raise ValueError(f"side {value!r}: expected 0 (BUY) or 1 (SELL)")
    return SIDES[side]
