"""Intake: every broker message, live or recorded, becomes one ``Message`` (PRODUCT.md §6.1).

A recording line is ``{"ts", "hub", "target", "args"}`` with ``args`` exactly as the Gateway hub
sent them. The live SDK hands riskc the same payloads through ``realtime.add_callback`` (user hub:
``{"action", "data"}``; market hub: the contract id and the data), so ``from_callback`` wraps them
into the same ``Message`` and everything after intake is one code path.

A line that cannot be used is a ``Malformed`` with its line number, reason and content: counted,
logged and skipped by the caller, never raised.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from riskc.engine.core.events import Malformed, MarketTrade, Quote

USER_TARGETS = frozenset({"GatewayUserAccount", "GatewayUserPosition", "GatewayUserOrder", "GatewayUserTrade"})
MARKET_TARGETS = frozenset({"GatewayQuote", "GatewayTrade", "GatewayDepth"})
HUB_OF = {**{t: "user" for t in USER_TARGETS}, **{t: "market" for t in MARKET_TARGETS}}
# The SDK's callback names for each Gateway target (realtime/event_handling.py).
CALLBACK_TARGETS = {
    "account_update": "GatewayUserAccount",
    "position_update": "GatewayUserPosition",
    "order_update": "GatewayUserOrder",
    "trade_execution": "GatewayUserTrade",
    "quote_update": "GatewayQuote",
    "market_trade": "GatewayTrade",
}


@dataclass(slots=True)  # not frozen: a frozen dataclass costs 0.6 µs more to build, once per message
class Message:
    """One hub message. ``args`` is the Gateway's argument list, numbers as ``Decimal``.
    Treat it as read-only: the book, the simulated broker and the audit all see the same one."""

    ts: dt.datetime
    hub: str
    target: str
    args: list[Any]
    line: int = 0  # 1-based line in a recording; 0 when live
    # The event this message already is, when intake could decode it on the way (a recorded
    # quote in its usual shape: see ``parse_line``); ``decode`` returns it as is.
    event: Any = field(default=None, compare=False, repr=False)

    def to_json(self) -> str:
        """The recording line (PRODUCT.md §6.1) for this message."""
        return json.dumps(
            {"ts": self.ts.isoformat(), "hub": self.hub, "target": self.target, "args": self.args},
            default=_json_default,
            ensure_ascii=False,
        )


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value) if value == value.to_integral_value() or len(str(value)) < 17 else str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} to a recording")


_last_time: tuple[Any, dt.datetime | None] = (None, None)
# The instants riskc reads. One outside them is a placeholder (.NET's default 0001-01-01) or a
# typo, and the exchange calendar, the local clock and a lockout's end cannot place it (the
# datetime arithmetic would overflow).
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)


class TimeOutOfRange(ValueError):
    """A timestamp outside ``EARLIEST`` .. ``LATEST``."""


def parse_time(text: Any) -> dt.datetime:
    """An ISO-8601 instant (the Gateway's timestamps; UTC when it names no zone), as an aware datetime. A quote
    carries its timestamp twice (the message's and the data's): the last one parsed is kept. Raises
    ``ValueError`` for a text that is not one, ``TimeOutOfRange`` for one outside the years riskc reads."""
    global _last_time
    last_text, last_moment = _last_time
    if text == last_text and type(text) is str:
        return last_moment  # type: ignore[return-value]
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)  # the Gateway's zone-less timestamps are UTC (PRODUCT.md §6.1)
    if not EARLIEST <= moment < LATEST:
        raise TimeOutOfRange(f"time {text!r} is outside the years riskc reads (1970 to 8999)")
    _last_time = (text, moment)
    return moment


def parse_line(text: str | bytes, line: int) -> Message | Malformed | None:
    """One recording line (text or UTF-8 bytes): a ``Message``, a ``Malformed`` (why), or None
    for a blank line."""
    if not text or text.isspace():
        return None
    try:
        raw = orjson.loads(text)  # floats, made exact decimals below as the live path does
    except ValueError as error:
        return Malformed(line, f"not JSON ({error})", _content(text))
    return _parsed(raw, text, line)


def _parsed(raw: Any, text: str | bytes, line: int) -> Message | Malformed:
    """``parse_line`` after the JSON parse."""
    if type(raw) is not dict:
        return Malformed(line, "not a JSON object", _content(text))
    if raw.get("target") == "GatewayQuote":  # most lines: decoded here at once, or by the general path below
        message = _quote_line(raw, line)
        if message is not None:
            return message
    try:  # one function, not two: this runs for every line of a recording
        target = raw["target"]
        hub = HUB_OF.get(target)
        if hub is None:
            raise ValueError(f"unknown target {target!r}")
        if raw.get("hub", hub) != hub:
            raise ValueError(f"target {target} belongs to the {hub} hub, not {raw.get('hub')!r}")
        args = raw["args"]
        if type(args) is not list or not args:
            raise ValueError("`args` must be a non-empty list")
        if len(args) == 2 and type(args[1]) is dict:  # a quote: its own dict, converted in place
            _floats_in_place(args[1])
        else:
            args = _decimals(args)
        return Message(parse_time(raw["ts"]), hub, target, args, line)
    except (KeyError, TypeError, ValueError, RecursionError) as error:  # RecursionError: absurdly nested args
        return Malformed(line, _why(error), _content(text))


def _quote_line(raw: dict[str, Any], line: int) -> Message | None:
    """The quote fast path of ``parse_line``: a ``GatewayQuote`` line in its usual shape (see
    ``_quote_of``) becomes a ``Message`` that carries its ``Quote`` already, its prices made
    decimals in place as the general path makes them. Any other shape returns None and takes the
    general path, which decodes it (or says why it cannot): the event is the one ``decode``
    would make of the same line."""
    quote = _quote_of(raw)
    if quote is None:
        return None
    args = raw["args"]
    data = args[1]
    data["lastPrice"], data["bestBid"], data["bestAsk"] = quote.last, quote.bid, quote.ask
    if len(data) > 5:  # more than symbol, the prices and the timestamp: the rest as the general path has them
        _floats_in_place(data)
    return Message(quote.time, "market", "GatewayQuote", args, line, quote)


def _quote_of(raw: dict[str, Any]) -> Quote | None:
    """The ``Quote`` of a ``GatewayQuote`` line in its usual shape (a contract id, a dict whose
    three prices are JSON numbers with a fraction and whose ``timestamp`` is a string), its
    instant parsed once when the payload's ``timestamp`` is the line's ``ts`` (as a recording
    writes it); None for any other shape (the general path decodes it, or says why not)."""
    try:  # subscripts, not get(): a fifth of the cost, on every quote
        args, ts_text, hub = raw["args"], raw["ts"], raw["hub"]
        if type(args) is not list or len(args) != 2 or type(ts_text) is not str or hub != "market":
            return None
        contract_id, data = args
        if type(contract_id) is not str or type(data) is not dict:
            return None
        last, bid, ask, stamp_text = data["lastPrice"], data["bestBid"], data["bestAsk"], data["timestamp"]
    except KeyError:
        return None  # (a line without `hub` is a market one all the same: the general path reads it)
    return _quote(ts_text, contract_id, last, bid, ask, stamp_text)


def _quote(ts_text: str, contract_id: str, last: Any, bid: Any, ask: Any, stamp_text: Any) -> Quote | None:
    """The ``Quote`` of a quote line's parts (see ``_quote_of``), or None when they are not in the usual shape."""
    if (
        not contract_id
        or type(last) is not float
        or type(bid) is not float
        or type(ask) is not float
        or type(stamp_text) is not str
        or not stamp_text  # no broker time: the general path orders it by the receive time
    ):
        return None
    try:
        ts = _fromisoformat(ts_text)
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=_UTC)  # as parse_time
        stamp = ts if stamp_text == ts_text else parse_time(stamp_text)
    except (TypeError, ValueError):
        return None  # the general path reports it
    if not _EARLIEST <= ts < _LATEST:
        return None  # as parse_time: the general path reports it
    cached = _cached
    # tuple.__new__: a named tuple's own constructor costs three times as much, on every quote
    return _new_tuple(
        Quote,
        (
            ts,
            contract_id,
            cached(last) or _decimal(last),
            cached(bid) or _decimal(bid),
            cached(ask) or _decimal(ask),
            stamp,
            True,
        ),
    )  # stamped: by the broker


def _trade(ts_text: str, contract_id: str, price: Any, stamp_text: str) -> MarketTrade | None:
    """The ``MarketTrade`` of a `GatewayTrade` line's last trade in its usual shape (a contract
    id, a price that is a JSON number with a fraction, a timestamp), as ``decode.market_trade``
    makes it of the general path's message; None for any other shape. The checks and the
    instants are a quote's (a twentieth of the lines: one more tuple is nothing)."""
    quote = _quote(ts_text, contract_id, price, price, price, stamp_text)
    if quote is None:
        return None
    return _new_tuple(MarketTrade, (quote.time, contract_id, quote.last, quote.stamp, True))


_fromisoformat = dt.datetime.fromisoformat
_UTC = dt.UTC
_EARLIEST, _LATEST = EARLIEST, LATEST
_new_tuple = tuple.__new__


def _content(text: str | bytes) -> str:
    if type(text) is bytes:
        text = text.decode("utf-8", "replace")
    return text.rstrip("\n")


def _why(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"missing field {error.args[0]!r}"
    return str(error)


def from_callback(callback: str, payload: Any, now: dt.datetime) -> Message:
    """A live SDK callback payload as a ``Message``. User-hub callbacks receive the Gateway's
    ``{"action", "data"}``; market-hub callbacks ``{"contract_id", "data"}``."""
    target = CALLBACK_TARGETS[callback]
    payload = _decimals(payload)
    if HUB_OF[target] == "market" and isinstance(payload, dict) and "contract_id" in payload:
        args = [payload["contract_id"], payload.get("data")]
    else:
        args = [payload]
    return Message(now, HUB_OF[target], target, args)


def _decimals(value: Any) -> Any:
    """Floats from a JSON decoder become exact decimals (shortest repr: 0.37 stays 0.37)."""
    kind = type(value)  # exact types first: this runs on every recorded line
    if kind is dict:
        return {
            k: v if type(v) in _PLAIN else _cached(v) or _decimal(v) if type(v) is float else _decimals(v)
            for k, v in value.items()
        }
    if kind is list:
        return [
            v if type(v) in _PLAIN else _cached(v) or _decimal(v) if type(v) is float else _decimals(v) for v in value
        ]
    if kind is float:
        return _decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decimals(v) for v in value]
    return value


def _floats_in_place(data: dict[str, Any]) -> None:
    """``_decimals`` for the market hub's ``[contract, {...}]``, the bulk of a recording: the
    dict is the decoder's own, so its floats are replaced where they are."""
    for key, value in data.items():
        kind = type(value)
        if kind is float:
            data[key] = _cached(value) or _decimal(value)
        elif kind is dict or kind is list:
            data[key] = _decimals(value)


_PLAIN = frozenset({str, int, bool, type(None)})  # JSON values with nothing to convert
_DECIMALS: dict[float, Decimal] = {}  # prices repeat: repr + Decimal costs more than the JSON parse
_cached = _DECIMALS.get


def _decimal(value: float) -> Decimal:
    exact = _DECIMALS.get(value)
    if exact is None:
        exact = Decimal(repr(value))
        if value:  # 0.0 and -0.0 are one key but two decimals
            if len(_DECIMALS) >= 20_000:  # a few days of prices of a handful of contracts
                _DECIMALS.clear()
            _DECIMALS[value] = exact
    return exact


def read_recording(path: str) -> Iterator[Message | Malformed]:
    """Messages and malformed lines of a recording file, in file order. A line that is not UTF-8
    (what a recorder killed in the middle of a character leaves) is a malformed line like any
    other, not the end of the file."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            item = _read_line(raw, number)
            if item is not None:
                yield item


def _read_line(raw: bytes, number: int) -> Message | Malformed | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        content = raw.decode("utf-8", "replace").rstrip("\n")
        return Malformed(number, f"not UTF-8 text (byte {error.start + 1}: {error.reason})", content)
    return parse_line(text, number)


def read_feed(path: str) -> Iterator[Quote | MarketTrade | Message | Malformed]:
    """``read_recording`` for `riskc replay`: the same items, except that a quote line in its
    usual shape comes as its ``Quote`` alone, and a trade print as its ``MarketTrade`` (no
    ``Message``: nearly all lines are these). One stamped before a line read earlier still
    comes as a ``Message``, whose line number the replay reports (a message behind the clock);
    the clock is never ahead of the lines read.

    A quote or trade line is first decoded by its shape (``quote_lines``: msgspec checks the
    fields and their types while it parses); a line of any other shape, or one behind the clock,
    is read as ``read_recording`` reads it, and both ways make the same event of the same line."""
    from riskc.engine.adapters.projectx import quote_lines  # msgspec: only a replay needs it

    decode, not_a_quote_line, quote_line = quote_lines.decode, quote_lines.NOT_A_QUOTE_LINE, quote_lines.QuoteLine
    read_line, make_quote, make_trade = _read_line, _quote, _trade
    last_trade = quote_lines.last_trade
    latest = None  # the latest `ts` of the lines yielded
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            try:
                shaped = decode(line)
            except not_a_quote_line:
                pass
            else:
                contract_id, data = shaped.args
                if type(shaped) is quote_line:
                    event = make_quote(
                        shaped.ts, contract_id, data.lastPrice, data.bestBid, data.bestAsk, data.timestamp
                    )
                else:  # a trade print: its last trade (decode.market_trade)
                    trade = last_trade(data)
                    event = None if trade is None else make_trade(shaped.ts, contract_id, trade.price, trade.timestamp)
                if event is not None and (latest is None or event.time >= latest):
                    latest = event.time
                    yield event
                    continue
            item = read_line(line, number)  # read_recording's way (a quote behind: a Message with its line)
            if item is not None:
                if type(item) is Message and (latest is None or item.ts > latest):
                    latest = item.ts
                yield item
