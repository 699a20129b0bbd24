"""One durable transaction per decision (``Store.batch``): what a breach plans, sets and audits
commits together, with one fsync, before its call reaches the broker."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from riskc.engine.adapters.projectx.intake import read_recording
from riskc.engine.runner import PolicySet
from riskc.engine.sim.replay import Replay
from riskc.engine.store import Store

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2026, 1, 14, 15, 0, tzinfo=dt.UTC)


def _statements(store: Store) -> list[str]:
    seen: list[str] = []
    store.db.conn.set_trace_callback(seen.append)
    return seen


def test_the_writes_of_a_batch_commit_once_and_durably(tmp_path):
    with Store.open(tmp_path / "s.db") as store:
        seen = _statements(store)
        with store.batch():
            store.append_audit("event", {"n": 1}, NOW)
            store.append_audit("event", {"n": 2}, NOW)
        assert [s for s in seen if s in ("BEGIN IMMEDIATE", "COMMIT")] == ["BEGIN IMMEDIATE", "COMMIT"]
        assert seen.index("PRAGMA synchronous = FULL") < seen.index("BEGIN IMMEDIATE")
        assert seen[-1] == "PRAGMA synchronous = NORMAL"
        assert [json.loads(r.payload)["n"] for r in store.audit_records()[-2:]] == [1, 2]


def test_a_batch_without_writes_writes_nothing_and_one_that_raises_keeps_nothing(tmp_path):
    with Store.open(tmp_path / "s.db") as store:
        before = len(store.audit_records())
        seen = _statements(store)
        with store.batch():
            pass
        assert seen == []
        with pytest.raises(RuntimeError), store.batch():
            store.append_audit("event", {"n": 1}, NOW)
            raise RuntimeError("boom")
        assert len(store.audit_records()) == before
        store.append_audit("event", {"n": 2}, NOW)  # the store is usable after it
        assert store.verify_audit().ok


def test_a_breach_reaches_the_broker_after_one_durable_commit(tmp_path):
    """Replaying a session with breaches on a daemon-like store (synchronous=NORMAL): between
    the event that breaches and the broker call, one commit under synchronous=FULL, which holds
    the planned call and the decision's audit record."""
    policies, diagnostics, _ = PolicySet.from_paths([REPO / "policies" / "topstep-50k.risk"])
    assert policies is not None, diagnostics
    with Store.open(tmp_path / "s.db") as store:
        replay = Replay(policies, store)
        seen = _statements(store)
        engine, sim = replay.engine, replay.sim
        on_event, submit = engine.on_event, sim.submit
        windows: list[list[str]] = []
        mark = [None]

        def entering(update):
            mark[0] = len(seen)
            return on_event(update)

        def submitting(call, now=None):
            if mark[0] is not None:
                windows.append(seen[mark[0] :])
                mark[0] = None
            return submit(call, now)

        engine.on_event, sim.submit = entering, submitting
        replay.run(read_recording(str(REPO / "examples" / "sessions" / "daily-loss-lockout.jsonl")))
    assert windows, "the session breaches nothing"
    for window in windows:
        durable = [i for i, s in enumerate(window) if s == "PRAGMA synchronous = FULL"]
        assert len(durable) == 1, window
        transaction = window[durable[0] : window.index("COMMIT", durable[0]) + 1]
        assert any("INSERT INTO actions" in s for s in transaction)
        assert sum(s.startswith("INSERT INTO audit") for s in transaction) >= 2  # the plan's and the decision's
