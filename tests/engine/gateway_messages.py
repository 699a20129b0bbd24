"""Gateway hub messages for engine tests, in the recording's shape (PRODUCT.md §6.1).

``Feed`` builds one account's messages at times given in seconds after ``start``; numbers are
Decimals (as ``parse_line`` makes them). Enum values are the Gateway's: OrderSide BUY=0 SELL=1,
OrderType LIMIT=1 MARKET=2 STOP_LIMIT=3 STOP=4 TRAILING_STOP=5, OrderStatus OPEN=1 FILLED=2
CANCELLED=3 PENDING=6, PositionType LONG=1 SHORT=2.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from riskc.engine.adapters.projectx.intake import Message

MNQ = "CON.F.US.MNQ.Z25"
ES = "CON.F.US.ES.Z25"
CL = "CON.F.US.CL.F26"
BUY, SELL = 0, 1
LIMIT, MARKET, STOP_LIMIT, STOP, TRAILING_STOP = 1, 2, 3, 4, 5
OPEN, FILLED, CANCELLED, PENDING = 1, 2, 3, 6
LONG, SHORT = 1, 2
# Wednesday 2025-10-29 10:00 CT: mid-session, mid-week, far from the 17:00 CT day boundary.
START = dt.datetime(2025, 10, 29, 15, 0, tzinfo=dt.UTC)


def D(value: Any) -> Decimal:
    return Decimal(str(value))


@dataclass
class Feed:
    account_id: int = 13298777
    start: dt.datetime = START

    def at(self, seconds: float) -> dt.datetime:
        return self.start + dt.timedelta(seconds=seconds)

    def _user(self, target: str, data: dict[str, Any], t: float) -> Message:
        return Message(self.at(t), "user", target, [{"action": 1, "data": data}])

    def account(
        self,
        t: float,
        balance: Any = 50000,
        *,
        can_trade: bool = True,
        account_id: int | None = None,
        name: str = "50KTC",
    ) -> Message:
        data = {
            "id": account_id or self.account_id,
            "name": name,
            "balance": D(balance),
            "canTrade": can_trade,
            "isVisible": True,
            "simulated": True,
        }
        return self._user("GatewayUserAccount", data, t)

    def position(
        self,
        t: float,
        contract: str,
        size: int,
        avg: Any = 0,
        *,
        opened: float | None = None,
        account_id: int | None = None,
        position_id: int = 400,
    ) -> Message:
        """``size`` signed: positive long, negative short, 0 flat. ``opened`` (seconds) is the
        broker's creationTimestamp, default ``t``."""
        kind = LONG if size > 0 else SHORT if size < 0 else 0
        data = {
            "id": position_id,
            "accountId": account_id or self.account_id,
            "contractId": contract,
            "creationTimestamp": self.at(t if opened is None else opened).isoformat(),
            "type": kind,
            "size": abs(size),
            "averagePrice": D(avg),
        }
        return self._user("GatewayUserPosition", data, t)

    def order(
        self,
        t: float,
        order_id: int,
        contract: str,
        *,
        type: int = STOP,
        side: int = SELL,
        size: int = 1,
        status: int = OPEN,
        stop: Any = None,
        limit: Any = None,
        fill_volume: int = 0,
        updated: float | None = None,
        created: float | None = None,
        account_id: int | None = None,
        with_update_time: bool = True,
    ) -> Message:
        data: dict[str, Any] = {
            "id": order_id,
            "accountId": account_id or self.account_id,
            "contractId": contract,
            "symbolId": "F.US." + contract.split(".")[3],
            "creationTimestamp": self.at(t if created is None else created).isoformat(),
            "status": status,
            "type": type,
            "side": side,
            "size": size,
            "limitPrice": None if limit is None else D(limit),
            "stopPrice": None if stop is None else D(stop),
            "fillVolume": fill_volume,
            "filledPrice": None,
            "customTag": None,
        }
        if with_update_time:
            data["updateTimestamp"] = self.at(t if updated is None else updated).isoformat()
        return self._user("GatewayUserOrder", data, t)

    def trade(
        self,
        t: float,
        trade_id: int,
        contract: str,
        *,
        side: int = BUY,
        size: int = 1,
        price: Any = 100,
        pnl: Any = None,
        fees: Any = "0.37",
        voided: bool = False,
        account_id: int | None = None,
        filled: float | None = None,
    ) -> Message:
        data = {
            "id": trade_id,
            "accountId": account_id or self.account_id,
            "contractId": contract,
            "creationTimestamp": self.at(t if filled is None else filled).isoformat(),
            "price": D(price),
            "profitAndLoss": None if pnl is None else D(pnl),
            "fees": D(fees),
            "side": side,
            "size": size,
            "voided": voided,
            "orderId": 1,
        }
        return self._user("GatewayUserTrade", data, t)

    def quote(self, t: float, contract: str, last: Any, *, stamp: float | None = None) -> Message:
        data = {
            "symbol": "F.US." + contract.split(".")[3],
            "lastPrice": D(last),
            "bestBid": D(last),
            "bestAsk": D(last),
            "timestamp": self.at(t if stamp is None else stamp).isoformat(),
        }
        return Message(self.at(t), "market", "GatewayQuote", [contract, data])
