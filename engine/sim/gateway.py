"""Gateway hub messages built from typed values: what the simulated broker sends, and what a
policy test's `events:` shorthand stands for (PRODUCT.md §6.1). Both go through the ProjectX
decoder like any recording, so the tests and the replay exercise the decode path.

The Gateway's enums: OrderSide BUY=0 SELL=1; OrderType LIMIT=1 .. JOIN_ASK=7; OrderStatus
NONE=0 .. SUSPENDED=8; PositionType LONG=1 SHORT=2.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from riskc.engine.adapters.projectx.intake import Message
from riskc.engine.core.events import ORDER_STATUSES
from riskc.engine.core.snapshot import ORDER_SIDES, ORDER_TYPES

ACCOUNT, POSITION, ORDER, TRADE = "GatewayUserAccount", "GatewayUserPosition", "GatewayUserOrder", "GatewayUserTrade"
QUOTE = "GatewayQuote"
LONG, SHORT = 1, 2


def user(target: str, data: dict[str, Any], now: dt.datetime, line: int = 0) -> Message:
    return Message(now, "user", target, [{"action": 1, "data": data}], line)


def account_data(account_id: int, name: str, balance: Decimal, can_trade: bool) -> dict[str, Any]:
    return {"id": account_id, "name": name, "balance": balance, "canTrade": can_trade}


def position_data(
    contract_id: str, size: int, avg_price: Decimal, opened_at: dt.datetime, account_id: int | None = None
) -> dict[str, Any]:
    data = {
        "contractId": contract_id,
        "creationTimestamp": opened_at.isoformat(),
        "type": LONG if size > 0 else SHORT if size < 0 else 0,
        "size": abs(size),
        "averagePrice": avg_price,
    }
    return data if account_id is None else {"accountId": account_id, **data}


def order_data(
    order_id: int,
    contract_id: str,
    *,
    status: str,
    type: str,
    side: str,
    size: int,
    price: Decimal | None = None,
    stop_price: Decimal | None = None,
    created: dt.datetime,
    updated: dt.datetime,
) -> dict[str, Any]:
    return {
        "id": order_id,
        "contractId": contract_id,
        "creationTimestamp": created.isoformat(),
        "updateTimestamp": updated.isoformat(),
        "status": ORDER_STATUSES.index(status),
        "type": ORDER_TYPES.index(type) + 1,
        "side": ORDER_SIDES.index(side),
        "size": size,
        "limitPrice": price,
        "stopPrice": stop_price,
    }


def trade_data(
    trade_id: Any,
    contract_id: str,
    *,
    side: str,
    size: int,
    price: Decimal,
    pnl: Decimal | None,
    fees: Decimal,
    voided: bool,
    order_id: int | None,
    at: dt.datetime,
) -> dict[str, Any]:
    return {
        "id": trade_id,
        "contractId": contract_id,
        "creationTimestamp": at.isoformat(),
        "price": price,
        "profitAndLoss": pnl,
        "fees": fees,
        "side": ORDER_SIDES.index(side),
        "size": size,
        "voided": voided,
        "orderId": order_id,
    }


def quote_args(
    contract_id: str, last: Decimal | None, bid: Decimal | None, ask: Decimal | None, at: dt.datetime
) -> list[Any]:
    data = {"lastPrice": last, "bestBid": bid, "bestAsk": ask, "timestamp": at.isoformat()}
    return [contract_id, {k: v for k, v in data.items() if v is not None}]
