"""``intake.read_feed`` decodes a quote line in its usual shape with msgspec (``quote_lines``),
and any other line the general way (orjson, ``_quote_of``, ``parse_line``): both ways must make
the same item of the same line, or a replay would depend on which way a line went."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskc.engine.adapters.projectx import quote_lines
from riskc.engine.adapters.projectx.decode import DECODE_ERRORS, decode
from riskc.engine.adapters.projectx.intake import Message, read_feed
from riskc.engine.core.events import MarketTrade, Quote

_PRICE = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([25479.75, 59.4, 0.0, -0.0, 1e308, 5e-324]),
    st.integers(-(10**6), 10**6),
    st.none(),
    st.just("25479.75"),
)
_TIME = st.sampled_from(
    [
        "2026-01-14T14:45:00.250000+00:00",
        "2026-01-14T14:45:00.25Z",
        "2026-01-14T14:45:00",  # no zone: UTC
        "2026-01-14T09:45:00.250000-05:00",
        "2026-01-14T14:45:00.2500001+00:00",  # seven digits, as .NET writes them
        "2026-01-14 14:45:00+00:00",
        "2026-01-14T14:44:59.5+00:00",
        "2026-01-14T14:45:01+00:00",
        "2026-02-30T14:45:00+00:00",  # no such day
        "yesterday",
        "",
        "0001-01-01T00:00:00",  # .NET's default: outside the years riskc reads
        "9999-12-31T23:59:59.5+00:00",
    ]
)


@st.composite
def quote_lines_(draw) -> bytes:
    ts = draw(_TIME)
    data = {"symbol": "F.US.MNQ", "lastPrice": draw(_PRICE), "bestBid": draw(_PRICE), "bestAsk": draw(_PRICE)}
    stamp = draw(st.one_of(st.just(ts), _TIME, st.none(), st.just(7)))
    if draw(st.booleans()) or stamp is not None:
        data["timestamp"] = stamp
    for key in draw(st.sets(st.sampled_from(["lastPrice", "bestBid", "symbol"]), max_size=1)):
        del data[key]
    line = {"ts": ts, "hub": draw(st.sampled_from(["market", "user", None])), "target": "GatewayQuote"}
    if line["hub"] is None:
        del line["hub"]
    line["args"] = draw(
        st.sampled_from(
            [["CON.F.US.MNQ.H26", data], ["", data], ["CON.F.US.MNQ.H26", data, 1], [7, data], ["CON.F.US.MNQ.H26"]]
        )
    )
    return json.dumps(line).encode()


@st.composite
def trade_lines(draw) -> bytes:
    ts = draw(_TIME)

    def trade() -> dict:
        entry = {"symbolId": "F.US.MNQ", "price": draw(_PRICE), "type": 0, "volume": 1}
        stamp = draw(st.one_of(st.just(ts), _TIME, st.none(), st.just(7)))
        if stamp is not None or draw(st.booleans()):
            entry["timestamp"] = stamp
        if draw(st.integers(0, 3)) == 0:
            entry["lastPrice"] = draw(_PRICE)
        if draw(st.integers(0, 9)) == 0:
            del entry["price"]
        return entry

    trades = [trade() for _ in range(draw(st.integers(0, 3)))]
    payload = draw(st.sampled_from(["list", "dict", "list"]))
    data = trades if payload == "list" else (trades[-1] if trades else {})
    contract = draw(st.sampled_from(["CON.F.US.MNQ.H26", "", None]))
    line = {"ts": ts, "hub": draw(st.sampled_from(["market", "market", "user"])), "target": "GatewayTrade"}
    line["args"] = [contract, data]
    return json.dumps(line).encode()


def _items(path: Path) -> list:
    """What a replay takes of each line: the events of a Quote, a MarketTrade or a Message (as
    ``decode`` makes them of it, or the error it raises), with their instants' zones; a
    Malformed as is."""
    out = []
    for item in read_feed(str(path)):
        if type(item) is Message:
            out.append(("events", item.hub, _decoded(item), _fills(item)))
        elif type(item) is Quote or type(item) is MarketTrade:
            out.append(("events", "market", [_zoned(item)], _fills(item)))
        else:
            out.append(item)
    return out


def _fills(item) -> list:
    """What the simulated broker makes of the item with a market order waiting on its contract."""
    import datetime as dt
    from collections import deque

    from riskc.engine.adapters.port import BrokerCall
    from riskc.engine.sim.broker import SimBroker, _Fill

    sim = SimBroker()
    placed = dt.datetime(2026, 1, 14, tzinfo=dt.UTC)
    call = BrokerCall("close_position", 1, contract_id="CON.F.US.MNQ.H26")
    sim.waiting["CON.F.US.MNQ.H26"] = deque([_Fill(call, 7, 1, 1, placed)])
    try:
        made = sim.observe(item) if type(item) is Message else sim.observe_quote(item)
    except Exception as error:  # the general way may raise on a payload it cannot read: the same, both ways
        return [type(error)]
    return [m.to_json() for m in made]


def _zoned(event) -> tuple:
    return (event, event.time.utcoffset(), event.stamp.utcoffset(), event.time.isoformat())


def _decoded(message: Message) -> list | type:
    try:
        events = decode(message)
    except DECODE_ERRORS as error:
        return type(error)
    return [_zoned(e) for e in events]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(quote_lines_(), trade_lines()), min_size=1, max_size=6))
def test_a_quote_line_makes_the_same_item_either_way(lines, tmp_path_factory, monkeypatch):
    path = tmp_path_factory.mktemp("feed") / "r.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    shaped = _items(path)

    def refuse(line):
        raise quote_lines.NOT_A_QUOTE_LINE("not tried")

    with monkeypatch.context() as patched:
        patched.setattr(quote_lines, "decode", refuse)
        general = _items(path)
    assert shaped == general


def _line(data: str, contract: str = '"C"', end: str = "]}") -> bytes:
    ts = '"2026-01-14T14:45:00+00:00"'
    head = f'{{"ts": {ts}, "hub": "market", "target": "GatewayQuote", "args": [{contract}, '
    return (head + data + end).encode("utf-8", "surrogateescape")


_STAMP = '"timestamp": "2026-01-14T14:45:00+00:00"'


@pytest.mark.parametrize(
    "line",
    [
        _line(f'{{"lastPrice": 1.5, "lastPrice": 2, "bestBid": 1.0, "bestAsk": 2.0, {_STAMP}}}'),
        _line(f'{{"lastPrice": 1e308, "bestBid": 1e308, "bestAsk": 1e308, {_STAMP}}}'),
        _line(f'{{"lastPrice": 1.5, "bestBid": 1.0, "bestAsk": 2.0, {_STAMP}}}', end="]"),
        _line(f'{{"lastPrice": 1.5, "bestBid": 1.0, "bestAsk": 2.0, {_STAMP}}}', contract='"C\udcff"'),
        _line(
            '[{"price": 2.5, "lastPrice": 1.5, "timestamp": "2026-01-14T14:45:00+00:00"}]', '"CON.F.US.MNQ.H26"'
        ).replace(b"GatewayQuote", b"GatewayTrade"),
        b"\n",
    ],
    ids=["a repeated key", "a sum that overflows", "cut short", "not UTF-8", "a trade with a lastPrice", "blank"],
)
def test_odd_quote_lines_make_the_same_item_either_way(line, tmp_path, monkeypatch):
    path = tmp_path / "r.jsonl"
    path.write_bytes(line + b"\n")
    shaped = _items(path)
    monkeypatch.setattr(quote_lines, "decode", lambda line: (_ for _ in ()).throw(quote_lines.NOT_A_QUOTE_LINE()))
    assert shaped == _items(path)


def test_most_lines_of_a_recording_take_the_shaped_way(tmp_path, monkeypatch):
    """Control: the comparisons above compare something (the usual quote line is decoded by shape)."""
    line = _line(f'{{"lastPrice": 1.5, "bestBid": 1.0, "bestAsk": 2.0, {_STAMP}}}')
    path = tmp_path / "r.jsonl"
    path.write_bytes(line + b"\n")
    decoded = []
    real = quote_lines.decode
    monkeypatch.setattr(quote_lines, "decode", lambda line: decoded.append(line) or real(line))
    [quote] = list(read_feed(str(path)))
    assert decoded == [line + b"\n"] and str(quote.last) == "1.5"
