"""Hostile input (PRODUCT.md §6.1, §8): any JSON value in any field of a recording line or a live
payload is one malformed line - counted, with its line number and a reason - or a message the
book can use. Nothing raises past intake and decode, and the replay goes on to the next line."""

from __future__ import annotations

import copy
import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskc.engine.adapters.projectx.decode import DECODE_ERRORS, decode
from riskc.engine.adapters.projectx.intake import CALLBACK_TARGETS, Malformed, Message, from_callback, parse_line
from riskc.engine.runner import PolicySet
from riskc.engine.sim.replay import Replay
from riskc.engine.store import Store

ROOT = Path(__file__).parents[2]
TS = "2025-10-29T15:50:13.776995+00:00"
MNQ = "CON.F.US.MNQ.Z25"
ACCOUNT = {"id": 1, "name": "50KTC", "balance": 50000.0, "canTrade": True, "isVisible": True, "simulated": True}
POSITION = {
    "id": 7,
    "accountId": 1,
    "contractId": MNQ,
    "creationTimestamp": TS,
    "type": 1,
    "size": 1,
    "averagePrice": 21000.25,
}
ORDER = {
    "id": 9,
    "accountId": 1,
    "contractId": MNQ,
    "creationTimestamp": TS,
    "updateTimestamp": TS,
    "status": 1,
    "type": 4,
    "side": 1,
    "size": 1,
    "fillVolume": 0,
    "limitPrice": None,
    "stopPrice": 20990.0,
}
TRADE = {
    "id": 11,
    "accountId": 1,
    "contractId": MNQ,
    "creationTimestamp": TS,
    "price": 21000.25,
    "profitAndLoss": -12.5,
    "fees": 0.37,
    "side": 1,
    "size": 1,
    "voided": False,
    "orderId": 9,
}
QUOTE = {"lastPrice": 21000.25, "bestBid": 21000.0, "bestAsk": 21000.25, "timestamp": TS}
MARKET_TRADE = {"price": 21000.25, "volume": 1, "type": 0, "timestamp": TS}

LINES: list[dict[str, Any]] = [
    {"ts": TS, "hub": "user", "target": "GatewayUserAccount", "args": [{"action": 1, "data": ACCOUNT}]},
    {"ts": TS, "hub": "user", "target": "GatewayUserPosition", "args": [{"action": 1, "data": POSITION}]},
    {"ts": TS, "hub": "user", "target": "GatewayUserOrder", "args": [{"action": 1, "data": ORDER}]},
    {"ts": TS, "hub": "user", "target": "GatewayUserTrade", "args": [{"action": 1, "data": TRADE}]},
    {"ts": TS, "hub": "market", "target": "GatewayQuote", "args": [MNQ, QUOTE]},
    {"ts": TS, "hub": "market", "target": "GatewayTrade", "args": [MNQ, [MARKET_TRADE]]},
    {"ts": TS, "hub": "market", "target": "GatewayDepth", "args": [MNQ, [{"price": 1.0, "volume": 1}]]},
]


def paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every field of a line, nested ones included, as a path of keys and indexes."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


FIELDS = [(i, path) for i, line in enumerate(LINES) for path in paths(line)]

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["", "CON.F.US.MNQ.Z25", TS, "2025-10-29", "NaN", "1e400", "-0", "1" * 40]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def mutated(index: int, path: tuple, value: Any, delete: bool) -> dict[str, Any]:
    line = copy.deepcopy(LINES[index])
    holder = line
    for key in path[:-1]:
        holder = holder[key]
    if delete and isinstance(holder, dict):
        del holder[path[-1]]
    else:
        holder[path[-1]] = value
    return line


_REPLAY: list[Replay] = []


def replay() -> Replay:
    """One replay for the whole run (a store per example would be slow); state carries over, as
    in a long recording."""
    if not _REPLAY:
        policies, _, _ = PolicySet.from_paths([ROOT / "policies/topstep-50k.risk"])
        store = Store.open(Path(tempfile.mkdtemp()) / "state.db", synchronous="OFF")
        _REPLAY.append(Replay(policies, store))
        _REPLAY[0].feed(parse_line(json.dumps(LINES[0]), 1))
    return _REPLAY[0]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=JSON, delete=st.booleans())
def test_any_json_value_in_any_field_is_a_message_or_one_malformed_line(field, value, delete) -> None:
    index, path = field
    text = json.dumps(mutated(index, path, value, delete))
    item = parse_line(text, 42)
    assert isinstance(item, Message | Malformed)
    if isinstance(item, Malformed):
        assert item.line == 42 and item.reason
    run = replay()
    before = (run.summary.messages, len(run.summary.malformed))
    run.feed(item)  # never raises
    after = (run.summary.messages, len(run.summary.malformed))
    assert after != before  # counted: as a message, a malformed line, or both (decoded but unusable)
    for bad in run.summary.malformed[before[1] :]:
        assert bad.line == 42 and bad.reason and "<class" not in bad.reason
    good = dict(LINES[4], ts=(run.engine.book.now + dt.timedelta(seconds=1)).isoformat())
    messages = run.summary.messages
    run.feed(parse_line(json.dumps(good), 43))  # the next good line is still applied
    assert run.summary.messages == messages + 1


@settings(max_examples=300, deadline=None)
@given(callback=st.sampled_from(sorted(CALLBACK_TARGETS)), payload=JSON)
def test_any_live_payload_is_wrapped_and_decoded_or_refused_with_a_reason(callback, payload) -> None:
    message = from_callback(callback, payload, dt.datetime(2025, 10, 29, tzinfo=dt.UTC))
    try:
        decode(message)
    except DECODE_ERRORS as error:
        assert str(error) or isinstance(error, KeyError)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_any_bytes_in_a_recording_are_lines_or_malformed_lines(tmp_path_factory, data) -> None:
    from riskc.engine.adapters.projectx.intake import read_recording

    path = tmp_path_factory.mktemp("rec") / "rec.jsonl"
    path.write_bytes(json.dumps(LINES[4]).encode() + b"\n" + data + b"\n" + json.dumps(LINES[4]).encode() + b"\n")
    items = list(read_recording(str(path)))
    assert isinstance(items[0], Message) and isinstance(items[-1], Message)
    assert all(isinstance(item, Message | Malformed) for item in items)
