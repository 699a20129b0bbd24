"""What durability costs the state store: audit records appended one per transaction under the
store's default (synchronous=NORMAL, WAL) against synchronous=FULL (an fsync per commit), and the
rate of exactly-once actions, whose planned/sent/confirmed commits are always fsynced.

The gap between the first two rows is why the store does not run FULL for everything: the engine
may audit every market event. See ``engine/store/base.py``.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from riskc.engine.store import Store, idempotency_key

BUDGET_S = 2.0
T0 = datetime(2025, 10, 29, 15, 0, tzinfo=UTC)
PAYLOAD = {"target": "GatewayQuote", "contract": "CON.F.US.MNQ.Z25", "lastPrice": "26247.25"}


def run() -> list[tuple[str, str]]:
    return [
        ("audit append, 1 per transaction, synchronous=NORMAL (records/s)", f"{_appends('NORMAL'):,.0f}"),
        ("audit append, 1 per transaction, synchronous=FULL (records/s)", f"{_appends('FULL'):,.0f}"),
        ("action plan→sent→confirmed, durable commits (actions/s)", f"{_actions():,.0f}"),
    ]


def _timed(step, budget_s: float = BUDGET_S, limit: int = 200_000) -> float:
    """Call ``step(i)`` until the budget is spent; the rate per second."""
    began, done = time.perf_counter(), 0
    while done < limit and time.perf_counter() - began < budget_s:
        step(done)
        done += 1
    return done / (time.perf_counter() - began)


def _appends(synchronous: str) -> float:
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "s.db", synchronous=synchronous) as store:
        return _timed(lambda i: store.append_audit("event", PAYLOAD | {"i": i}, T0 + timedelta(microseconds=i)))


def _actions() -> float:
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "s.db") as store:

        def step(i: int) -> None:
            key = idempotency_key("position_loss", f"pos:{i}", "2025-10-29", 1)
            now = T0 + timedelta(microseconds=i)
            store.plan_action(key, 1, "position_loss", {"action": "close"}, now, policy_hash="h")
            store.mark_sent(key, now)
            store.mark_confirmed(key, now, {"ok": True})

        return _timed(step)


if __name__ == "__main__":
    for label, value in run():
        print(f"{label}: {value}")
