"""What the broker tells riskc, typed: the events the book is a state machine over.

An adapter decodes its wire format into these once, at the edge (the ProjectX adapter in
``engine/adapters/projectx/decode.py``: camelCase keys, integer codes, floats and ISO strings
never get past it). Money and prices are exact ``Decimal``s, times aware ``datetime``s, codes
names. Every event carries ``time``: when riskc received it (a recording's ``ts``), the clock the
book runs on; the broker's own timestamps, where it sends them, order updates of one thing.

They are named tuples: immutable, and cheap to build for the kind most messages are (quotes).
The rule-facing ``Event`` of ``engine/core/snapshot.py`` is another thing: what a rule reads.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, NamedTuple

# Order statuses by name (the Gateway's OrderStatus 0..8); `unknown` is a code riskc does not
# know, which is reported and never taken as final (PRODUCT.md §6.1).
ORDER_STATUSES = (
    "none",
    "open",
    "filled",
    "cancelled",
    "expired",
    "rejected",
    "pending",
    "pending_cancellation",
    "suspended",
)
WORKING = frozenset({"open"})  # covers a position, can be modified
SUSPENDED = frozenset({"pending", "pending_cancellation", "suspended"})  # waiting: a flatten cancels them
STOP_TYPES = frozenset({"stop", "stop_limit", "trailing_stop"})


class AccountUpdate(NamedTuple):
    time: dt.datetime
    account_id: int
    balance: Decimal
    can_trade: bool = True
    name: str | None = None


class PositionUpdate(NamedTuple):
    """One contract's position as the broker states it; ``size`` is signed (long +, short -,
    flat 0)."""

    time: dt.datetime
    contract_id: str
    size: int
    avg_price: Decimal
    opened_at: dt.datetime | None = None
    account_id: int | None = None


class OrderUpdate(NamedTuple):
    """One order as the broker states it; ``size`` is what remains to fill."""

    time: dt.datetime
    order_id: int
    contract_id: str
    status: str
    type: str
    side: str
    size: int
    price: Decimal | None = None
    stop_price: Decimal | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    account_id: int | None = None

    @property
    def working(self) -> bool:
        return self.status in WORKING


class Fill(NamedTuple):
    """One execution of the account. ``pnl`` is None on an opening fill."""

    time: dt.datetime
    fill_id: Any
    contract_id: str
    side: str
    size: int
    price: Decimal
    pnl: Decimal | None = None
    fees: Decimal = Decimal(0)
    voided: bool = False
    executed_at: dt.datetime | None = None
    account_id: int | None = None
    order_id: int | None = None

    @property
    def at(self) -> dt.datetime:
        """When it executed (the broker's time, else when riskc heard of it)."""
        return self.executed_at or self.time


class Quote(NamedTuple):
    """A partial price update: any of ``last``, ``bid``, ``ask`` may be None (a quote without a
    last price but with both sides takes the mid as ``last``). ``stamp`` orders the updates of
    one contract: the broker's time when it sent one, else ``time``."""

    time: dt.datetime
    contract_id: str
    last: Decimal | None
    bid: Decimal | None
    ask: Decimal | None
    stamp: dt.datetime
    stamped: bool = True  # ``stamp`` is the broker's (False: the receive time stands in)


class MarketTrade(NamedTuple):
    """The last trade printed on a contract (the market hub's `GatewayTrade`)."""

    time: dt.datetime
    contract_id: str
    price: Decimal
    stamp: dt.datetime
    stamped: bool = True  # ``stamp`` is the exchange's (False: the receive time stands in)


class Depth(NamedTuple):
    """Market depth arrived for a contract (riskc reads no level of it)."""

    time: dt.datetime
    contract_id: str


class Malformed(NamedTuple):
    """A message or line that could not be used: counted, reported with where and why, skipped."""

    line: int
    reason: str
    content: str

    def describe(self) -> str:
        return f"line {self.line}: {self.reason}: {self.content[:200]}"


BrokerEvent = AccountUpdate | PositionUpdate | OrderUpdate | Fill | Quote | MarketTrade | Depth
MARKET_EVENTS = (Quote, MarketTrade, Depth)
