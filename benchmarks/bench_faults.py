"""What a storage fault and a hostile recording cost (issue 16): fills handled while another
process holds the state file's write lock (before: a 5 s stall per event, and the event's effect
dropped), the replay of what was buffered, and a recording whose last line is a year later
(before: 31.5 million one-second ticks)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from riskc.engine.adapters.projectx.intake import read_recording
from riskc.engine.runner import Engine, PolicySet
from riskc.engine.sim.replay import Replay
from riskc.engine.store import Store
from riskc.engine.store.faults import FailSafeStore

ROOT = Path(__file__).parents[1]
T0 = dt.datetime(2025, 12, 3, 16, 0, tzinfo=dt.UTC)
FILLS = 200
POLICY = 'policy "bench"\n\nuse daily_loss(limit: $100000)\n'


def run() -> list[tuple[str, str]]:
    held, replayed = _locked_fills()
    ticks, seconds = _year_gap()
    return [
        (f"{FILLS} fills, write lock held by another process (s, total)", f"{held:.2f}"),
        (f"replay of the {FILLS} buffered writes once the lock is free (ms)", f"{replayed * 1000:.0f}"),
        ("recording with one line a year later: clock ticks", f"{ticks:,}"),
        ("recording with one line a year later: replay (s)", f"{seconds:.2f}"),
    ]


def _fill(i: int) -> dict:
    return {
        "action": 1,
        "data": {
            "id": i,
            "accountId": 1,
            "contractId": "CON.F.US.MNQ.Z25",
            "creationTimestamp": (T0 + dt.timedelta(seconds=i)).isoformat(),
            "price": Decimal("21000"),
            "profitAndLoss": Decimal("-1"),
            "fees": Decimal("0.37"),
            "side": 1,
            "size": 1,
            "voided": False,
        },
    }


def _locked_fills() -> tuple[float, float]:
    from riskc.engine.adapters.projectx.decode import decode
    from riskc.engine.adapters.projectx.intake import Message

    folder = Path(tempfile.mkdtemp(prefix="riskc-bench-"))
    policies, _, _ = PolicySet.from_sources([("bench.risk", POLICY)])
    store = FailSafeStore(Store.open(folder / "state.db", busy_ms=1000))
    engine = Engine(policies, store, account_id=1)
    account = {"action": 1, "data": {"id": 1, "name": "x", "balance": Decimal(50000), "canTrade": True}}
    for event in decode(Message(T0, "user", "GatewayUserAccount", [account])):
        engine.on_event(event)
    other = sqlite3.connect(folder / "state.db", timeout=0)
    other.execute("BEGIN IMMEDIATE")
    began = time.perf_counter()
    for i in range(1, FILLS + 1):
        for event in decode(Message(T0 + dt.timedelta(seconds=i), "user", "GatewayUserTrade", [_fill(i)])):
            engine.on_event(event)
    held = time.perf_counter() - began
    other.rollback()
    other.close()
    began = time.perf_counter()
    assert store.retry()
    return held, time.perf_counter() - began


def _year_gap() -> tuple[int, float]:
    folder = Path(tempfile.mkdtemp(prefix="riskc-bench-"))
    quote = {"lastPrice": 25600.0, "bestBid": 25599.75, "bestAsk": 25600.0}
    account = {"id": 1, "name": "x", "balance": 50000.0, "canTrade": True}
    lines = [
        {"ts": T0.isoformat(), "hub": "user", "target": "GatewayUserAccount", "args": [{"action": 1, "data": account}]},
        {"ts": (T0 + dt.timedelta(seconds=1)).isoformat(), "hub": "market", "target": "GatewayQuote",
         "args": ["CON.F.US.MNQ.Z25", quote]},
        {"ts": (T0 + dt.timedelta(days=365)).isoformat(), "hub": "market", "target": "GatewayQuote",
         "args": ["CON.F.US.MNQ.Z25", quote]},
    ]  # fmt: skip
    recording = folder / "year.jsonl"
    recording.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    policies, _, _ = PolicySet.from_paths([ROOT / "policies" / "topstep-50k.risk"])
    with Store.open(folder / "state.db", synchronous="OFF") as store:
        began = time.perf_counter()
        summary = Replay(policies, store).run(read_recording(str(recording)))
        return summary.ticks, time.perf_counter() - began
