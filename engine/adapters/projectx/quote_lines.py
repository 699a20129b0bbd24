"""The usual shapes of a recorded quote line and trade-print line, checked and decoded in one
pass of C (msgspec), for ``intake.read_feed``: nearly every line of a recording is one of them,
and their Python checks cost as much again as the JSON parse. A line of any other shape fails
here and is read the general way, which decodes it or says why not; imported by ``read_feed``
alone, so `riskc check` never loads it."""

from __future__ import annotations

from typing import Literal

import msgspec


class QuoteData(msgspec.Struct):
    # int | float: an integer price is not the usual shape (intake takes the general path for it)
    lastPrice: int | float  # the Gateway's field names
    bestBid: int | float
    bestAsk: int | float
    timestamp: str


class QuoteLine(msgspec.Struct, tag_field="target", tag="GatewayQuote"):
    ts: str
    hub: Literal["market"]
    args: tuple[str, QuoteData]


class TradeData(msgspec.Struct):
    price: int | float
    timestamp: str
    # The simulated broker fills at a `lastPrice` before the `price` (SimBroker._on_price): a
    # trade that has one is not the usual shape.
    lastPrice: int | float | str | None | msgspec.UnsetType = msgspec.UNSET


class TradeLine(msgspec.Struct, tag_field="target", tag="GatewayTrade"):
    ts: str
    hub: Literal["market"]
    args: tuple[str, list[TradeData]]


def last_trade(trades: list[TradeData]) -> TradeData | None:
    """The trade a `GatewayTrade` line means (its last, as ``decode.market_trade`` reads it)
    when it is in the usual shape; None for none, or one with a `lastPrice`."""
    if not trades or trades[-1].lastPrice is not msgspec.UNSET:
        return None
    return trades[-1]


decode = msgspec.json.Decoder(QuoteLine | TradeLine).decode
NOT_A_QUOTE_LINE = msgspec.DecodeError  # ValidationError is one: any other shape, or not JSON at all
