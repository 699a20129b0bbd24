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
from riskc.engine.adapters.projectx.intake import read_feed
from riskc.engine.core.events import Quote

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


def _items(path: Path) -> list:
    out = []
    for item in read_feed(str(path)):
        if type(item) is Quote:  # its instants' zones as well as their values
            out.append((item, item.time.utcoffset(), item.stamp.utcoffset(), item.time.isoformat()))
        else:
            out.append(item)
    return out


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(quote_lines_(), min_size=1, max_size=6))
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
        b"\n",
    ],
    ids=["a repeated key", "a sum that overflows", "cut short", "not UTF-8", "blank"],
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
