"""The simulated broker: deterministic, and speaking the Gateway's own messages.

It watches the same messages the engine sees (``observe``) to know the account's positions,
orders and quotes. A call riskc sends becomes what a Gateway would answer with: a cancel, a stop
move or a new stop is acknowledged at once (an order update); a close or partial close is a
market order that fills at the **next quote** of its contract in the recording, producing the
order update, the trade (with P&L and fees), the position update and the account update that a
real fill produces. The engine applies those messages like any other, so enforcement shows up in
the book. Ids and timestamps come only from the input: the same recording gives the same output.

Fees are an approximation per contract side (``FEES``; micros $0.37, others $1.40 unless given).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from riskc.engine.adapters.port import BrokerCall, BrokerError, BrokerState
from riskc.engine.adapters.projectx import decode
from riskc.engine.adapters.projectx.intake import Message
from riskc.engine.core.events import MarketTrade, Quote
from riskc.engine.core.instruments import DEFAULT_INSTRUMENTS, Instruments, UnknownInstrument, symbol_of
from riskc.engine.sim import gateway

MICROS = frozenset({"MNQ", "MES", "M2K", "MYM", "MGC", "MCL", "M6E", "MBT", "SIL"})
_KEEP_TRADES = dt.timedelta(hours=24)
FIRST_ORDER_ID = 900_000_001
FIRST_TRADE_ID = 800_000_001


def default_fee(symbol: str) -> Decimal:
    return Decimal("0.37") if symbol in MICROS else Decimal("1.40")


@dataclass(slots=True)
class _Fill:
    call: BrokerCall
    order_id: int
    side: int  # 0 buy, 1 sell
    size: int
    placed: dt.datetime
    done: asyncio.Future | None = None


@dataclass(slots=True)
class _Account:
    id: int = 0
    name: str = ""
    balance: Decimal = Decimal("0")
    can_trade: bool = True
    positions: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[int, dict[str, Any]] = field(default_factory=dict)
    trades: list[dict[str, Any]] = field(default_factory=list)


class SimBroker:
    name = "sim"

    def __init__(self, instruments: Instruments = DEFAULT_INSTRUMENTS, fees: dict[str, Decimal] | None = None) -> None:
        self.instruments = instruments
        self.fees = fees or {}
        self.account = _Account()
        self.now = dt.datetime.min.replace(tzinfo=dt.UTC)
        self.sent: list[BrokerCall] = []
        self.waiting: dict[str, deque[_Fill]] = {}  # contract -> market orders filled at its next price
        self._outbox: list[Message] = []
        self._next_order = FIRST_ORDER_ID
        self._next_trade = FIRST_TRADE_ID

    # -- watching the feed ------------------------------------------------------------------

    def observe(self, message: Message) -> list[Message]:
        """Note one feed message; returns the messages it triggers (fills at this quote)."""
        if message.ts > self.now:
            self.now = message.ts
        target = message.target
        if target == "GatewayQuote" or target == "GatewayTrade":
            return self._on_price(message)
        payload = message.args[0]
        data = payload.get("data", payload) if isinstance(payload, dict) else None
        if not isinstance(data, dict):
            return []
        if target == "GatewayUserAccount":
            self.account.id, self.account.name = int(data.get("id", self.account.id)), data.get("name", "")
            self.account.balance = Decimal(str(data.get("balance", self.account.balance)))
            self.account.can_trade = bool(data.get("canTrade", True))
        elif target == "GatewayUserPosition":
            self._note_position(data)
        elif target == "GatewayUserOrder":
            self._note_order(data)
        elif target == "GatewayUserTrade":
            self._note_trade(data)
        return []

    def observe_quote(self, quote: Quote | MarketTrade) -> list[Message]:
        """``observe`` for a quote or a trade print decoded without its message
        (``intake.read_feed``): fills of the market orders waiting for this contract's next
        price, at its last (traded) price."""
        ts = quote.time
        if ts > self.now:
            self.now = ts
        contract_id = quote.contract_id
        if contract_id not in self.waiting:
            return []
        price = quote.last if type(quote) is Quote else quote.price
        return [] if price is None else self._fill_waiting(contract_id, price, ts)

    def _note_trade(self, data: dict[str, Any]) -> None:
        """Keep the trades a Gateway's trade search would still return for the current trading
        day (a day at most: older ones are dropped, or a long simulation grows without end)."""
        trades = self.account.trades
        trades.append(data)
        horizon = self.now - _KEEP_TRADES
        if _trade_time(trades[0], horizon) < horizon:
            self.account.trades = [t for t in trades if _trade_time(t, horizon) >= horizon]

    def _note_position(self, data: dict[str, Any]) -> None:
        if data.get("accountId") is not None and not self.account.id:
            self.account.id = int(data["accountId"])
        if data.get("size"):
            self.account.positions[data["contractId"]] = dict(data)
        else:
            self.account.positions.pop(data["contractId"], None)

    def _note_order(self, data: dict[str, Any]) -> None:
        if data.get("status") in (1, 6):
            self.account.orders[int(data["id"])] = dict(data)
        else:
            self.account.orders.pop(int(data["id"]), None)

    def _on_price(self, message: Message) -> list[Message]:
        """Fill the market orders waiting for this contract's next price (nothing to do for most
        quotes: the price itself is not kept, a fill only ever uses the next one)."""
        contract_id, data = message.args[0], message.args[1]
        if contract_id not in self.waiting:
            return []
        if isinstance(data, list):
            data = data[-1] if data else {}
        price = data.get("lastPrice", data.get("price"))
        if price is None:
            return []
        price = price if type(price) is Decimal else Decimal(str(price))
        return self._fill_waiting(contract_id, price, message.ts)

    def _fill_waiting(self, contract_id: str, price: Decimal, now: dt.datetime) -> list[Message]:
        """The messages of filling every market order waiting for the contract, at ``price``."""
        pending = self.waiting.pop(contract_id)
        out: list[Message] = []
        while pending:
            out += self._fill(pending.popleft(), price, now)
        return out

    # -- calls ------------------------------------------------------------------------------

    def submit(self, call: BrokerCall, now: dt.datetime | None = None) -> list[Message]:
        """Take one call; returns the messages the Gateway sends at once (acknowledgements).
        Market orders for closes are queued for the next quote. Raises ``BrokerError`` for a
        call the broker would reject (no such position or order)."""
        now = max(now or self.now, self.now)
        self.sent.append(call)
        match call.kind:
            case "close" | "partial_close":
                return self._market_close(call, now)
            case "cancel":
                return [self._order_update(self._order(call), now, status=3)]
            case "modify_stop":
                order = self._order(call)
                return [self._order_update(order, now, stopPrice=call.stop_price)]
            case "place_stop":
                return [self._new_order(call, now, type=4, stopPrice=call.stop_price)]
            case "place_target":
                return [self._new_order(call, now, type=1, limitPrice=call.limit_price)]
        raise BrokerError(f"unknown call {call.kind}", retryable=False)

    def drain(self) -> list[Message]:
        out, self._outbox = self._outbox, []
        return out

    async def send(self, call: BrokerCall) -> dict[str, Any] | None:
        """For the daemon: acknowledgements go out through ``drain``; a close returns once its
        market order filled (at the next quote), so verifying it finds the position gone."""
        self._outbox += self.submit(call)
        fills = self.waiting.get(call.contract_id or "")
        if call.kind in ("close", "partial_close") and fills:
            fill = fills[-1]
            fill.done = asyncio.get_running_loop().create_future()
            await fill.done
        return {"success": True, "errorCode": 0}

    async def state(self, account_id: int) -> BrokerState:
        return self.state_now()

    def state_now(self) -> BrokerState:
        """What the Gateway's REST searches would answer now, decoded as the adapter decodes them."""
        a = self.account
        account = gateway.account_data(a.id, a.name, a.balance, a.can_trade)
        return decode.broker_state(list(a.positions.values()), list(a.orders.values()), a.trades, account, self.now)

    def _order(self, call: BrokerCall) -> dict[str, Any]:
        order = self.account.orders.get(int(call.order_id or 0))
        if order is None:
            raise BrokerError(f"order {call.order_id} is not working", retryable=False)
        return order

    def _position(self, contract_id: str) -> dict[str, Any]:
        position = self.account.positions.get(contract_id)
        if position is None:
            raise BrokerError(f"no open position in {contract_id}", retryable=False)
        return position

    def _market_close(self, call: BrokerCall, now: dt.datetime) -> list[Message]:
        position = self._position(call.contract_id or "")
        size = int(position["size"]) if call.kind == "close" else min(int(call.size or 0), int(position["size"]))
        side = 1 if position.get("type") == 1 else 0  # sell to close a long
        order_id = self._take_order_id()
        fill = _Fill(call, order_id, side, size, now)
        self.waiting.setdefault(call.contract_id or "", deque()).append(fill)
        data = self._order_data(order_id, call.contract_id or "", now, status=1, type=2, side=side, size=size)
        return [self._user("GatewayUserOrder", data, now)]

    def _fill(self, fill: _Fill, price: Decimal, now: dt.datetime) -> list[Message]:
        contract_id = fill.call.contract_id or ""
        position = self.account.positions.get(contract_id)
        out = [
            self._user(
                "GatewayUserOrder",
                self._order_data(
                    fill.order_id,
                    contract_id,
                    fill.placed,
                    status=2,
                    type=2,
                    side=fill.side,
                    size=fill.size,
                    fillVolume=fill.size,
                    filledPrice=price,
                    updateTimestamp=now.isoformat(),
                ),
                now,
            )
        ]
        if position is not None:
            out += self._close_position(position, fill, price, now)
        if fill.done is not None and not fill.done.done():
            fill.done.set_result(None)
        for message in out:
            self.observe(message)
        return out

    def _close_position(self, position: dict[str, Any], fill: _Fill, price: Decimal, now: dt.datetime) -> list[Message]:
        contract_id = position["contractId"]
        symbol = symbol_of(contract_id)
        size = min(fill.size, int(position["size"]))
        direction = 1 if position.get("type") == 1 else -1
        avg = Decimal(str(position["averagePrice"]))
        try:
            spec = self.instruments.spec(symbol)
            pnl = (price - avg) * direction * size / spec.tick_size * spec.tick_value
        except UnknownInstrument:
            pnl = Decimal(0)  # a Gateway knows every contract; the simulation cannot price this one
        fees = self.fees.get(symbol, default_fee(symbol)) * size
        trade = {
            "id": self._take_trade_id(),
            "accountId": self.account.id,
            "contractId": contract_id,
            "creationTimestamp": now.isoformat(),
            "price": price,
            "profitAndLoss": pnl.quantize(Decimal("0.01")),
            "fees": fees,
            "side": fill.side,
            "size": size,
            "voided": False,
            "orderId": fill.order_id,
        }
        left = int(position["size"]) - size
        after = dict(position, size=left, type=position["type"] if left else 0)
        balance = self.account.balance + pnl - fees
        account = {
            "id": self.account.id,
            "name": self.account.name,
            "balance": balance.quantize(Decimal("0.01")),
            "canTrade": self.account.can_trade,
            "isVisible": True,
            "simulated": True,
        }
        return [
            self._user("GatewayUserTrade", trade, now),
            self._user("GatewayUserPosition", after, now),
            self._user("GatewayUserAccount", account, now),
        ]

    def _order_update(self, order: dict[str, Any], now: dt.datetime, **changes: Any) -> Message:
        data = dict(order, updateTimestamp=now.isoformat(), **changes)
        message = self._user("GatewayUserOrder", data, now)
        self.observe(message)
        return message

    def _new_order(self, call: BrokerCall, now: dt.datetime, **fields: Any) -> Message:
        """A stop or a target placed on an open position: acknowledged at once, left working."""
        self._position(call.contract_id or "")
        data = self._order_data(
            self._take_order_id(),
            call.contract_id or "",
            now,
            status=1,
            side=0 if call.side == "buy" else 1,
            size=int(call.size or 0),
            **fields,
        )
        message = self._user("GatewayUserOrder", data, now)
        self.observe(message)
        return message

    def _order_data(self, order_id: int, contract_id: str, now: dt.datetime, **fields: Any) -> dict[str, Any]:
        data = {
            "id": order_id,
            "accountId": self.account.id,
            "contractId": contract_id,
            "symbolId": f"F.US.{symbol_of(contract_id)}",
            "creationTimestamp": now.isoformat(),
            "updateTimestamp": now.isoformat(),
            "limitPrice": None,
            "stopPrice": None,
            "fillVolume": 0,
            "filledPrice": None,
            "customTag": "riskc",
        }
        data.update(fields)
        return data

    def _user(self, target: str, data: dict[str, Any], now: dt.datetime) -> Message:
        return gateway.user(target, data, now)

    def _take_order_id(self) -> int:
        self._next_order += 1
        return self._next_order - 1

    def _take_trade_id(self) -> int:
        self._next_trade += 1
        return self._next_trade - 1


def _trade_time(trade: dict[str, Any], default: dt.datetime) -> dt.datetime:
    stamp = trade.get("creationTimestamp")
    try:
        return dt.datetime.fromisoformat(stamp) if isinstance(stamp, str) else default
    except ValueError:
        return default
