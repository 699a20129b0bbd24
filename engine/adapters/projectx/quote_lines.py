"""The usual shape of a recorded quote line, checked and decoded in one pass of C (msgspec), for
``intake.read_feed``: most lines of a recording are quotes, and their Python checks cost as much
again as the JSON parse. A line of any other shape fails here and is read the general way, which
decodes it or says why not; imported by ``read_feed`` alone, so `riskc check` never loads it."""

from __future__ import annotations

from typing import Literal

import msgspec


class QuoteData(msgspec.Struct):
    # int | float: an integer price is not the usual shape (intake takes the general path for it)
    lastPrice: int | float  # the Gateway's field names
    bestBid: int | float
    bestAsk: int | float
    timestamp: str


class QuoteLine(msgspec.Struct):
    ts: str
    hub: Literal["market"]
    target: Literal["GatewayQuote"]
    args: tuple[str, QuoteData]


decode = msgspec.json.Decoder(QuoteLine).decode
NOT_A_QUOTE_LINE = msgspec.DecodeError  # ValidationError is one: any other shape, or not JSON at all
