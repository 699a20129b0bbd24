"""What the engine asks of a broker, and what it gets back.

The engine never talks to a broker directly: it turns a planned action into ``BrokerCall``s
(each with an idempotency key) and hands them to an executor, which sends them through a
``BrokerPort`` with a timeout, verifies the outcome against ``BrokerPort.state`` (the broker is
the source of truth: the SDK's close swallows errors) and retries only what did not take effect.

``BrokerState`` is typed, in the events of ``engine/core/events.py``: reconciliation applies it
to the book like any other event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol

from riskc.engine.core.events import AccountUpdate, Fill, OrderUpdate, PositionUpdate

CallKind = Literal["close", "partial_close", "cancel", "modify_stop", "place_stop", "place_target"]


class BrokerError(Exception):
    """A broker call that failed or whose outcome is unknown (timeout, HTTP error, rejected)."""

    def __init__(self, message: str, *, retryable: bool = True):
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class BrokerCall:
    """One call to the broker. ``size`` is the number of contracts to close (partial_close) or of
    the stop (place_stop); ``expect_size`` the signed position size the call should leave, used to
    verify it (0 for a close)."""

    kind: CallKind
    account_id: int
    contract_id: str | None = None
    order_id: int | None = None
    size: int | None = None
    side: Literal["buy", "sell"] | None = None
    stop_price: Decimal | None = None
    expect_size: int | None = None
    key: str = ""
    rule: str = ""
    reason: str = ""
    limit_price: Decimal | None = None  # of a target (place_target: a limit order on the closing side)

    def describe(self) -> str:
        match self.kind:
            case "close":
                return f"close {self.contract_id}"
            case "partial_close":
                return f"partial close {self.size} of {self.contract_id}"
            case "cancel":
                return f"cancel order {self.order_id}"
            case "modify_stop":
                return f"move stop {self.order_id} to {self.stop_price}"
            case "place_stop":
                return f"place {self.side} stop {self.size} {self.contract_id} at {self.stop_price}"
            case "place_target":
                return f"place {self.side} target {self.size} {self.contract_id} at {self.limit_price}"
        return self.kind

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"call": self.kind, "account_id": self.account_id}
        for name in ("contract_id", "order_id", "size", "side", "expect_size", "key", "rule"):
            value = getattr(self, name)
            if value is not None and value != "":
                record[name] = value
        if self.stop_price is not None:
            record["stop_price"] = str(self.stop_price)
        if self.limit_price is not None:
            record["limit_price"] = str(self.limit_price)
        return record


@dataclass(frozen=True, slots=True)
class BrokerState:
    """The broker's view of one account, typed (the adapter decodes its REST reads): open
    ``positions``, ``orders`` (open and suspended), today's ``trades``, and the ``account``
    (None when unknown). ``extra`` says what the read could and could not see."""

    positions: tuple[PositionUpdate, ...] = ()
    orders: tuple[OrderUpdate, ...] = ()
    trades: tuple[Fill, ...] = ()
    account: AccountUpdate | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def position_size(self, contract_id: str) -> int:
        """Signed size of the open position on ``contract_id`` (0 when flat)."""
        for p in self.positions:
            if p.contract_id == contract_id:
                return p.size
        return 0

    def open_order(self, order_id: int | None) -> OrderUpdate | None:
        for o in self.orders:
            if o.order_id == order_id:
                return o
        return None


class BrokerPort(Protocol):
    """A broker riskc can enforce through. ``send`` raises ``BrokerError`` when the call failed or
    its outcome is unknown; it never retries (the executor does, after verifying)."""

    name: str

    async def send(self, call: BrokerCall) -> dict[str, Any] | None: ...

    async def state(self, account_id: int) -> BrokerState: ...
