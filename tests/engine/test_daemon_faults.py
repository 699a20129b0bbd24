"""The daemon when its state file refuses writes mid-run: it keeps enforcing, alerts on every sink
(the JSON log here), holds the account flat while a lockout or a call is only in memory, and once
the file takes writes again the ledger is whole and the audit chain verifies. Every wait is
bounded."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

from test_daemon import ACCOUNT, START, position, recording, run_daemon, trade, wait_until, write_config

from riskc.engine.daemon.daemon import Daemon
from riskc.engine.store import StateFileError, Store

POLICY = 'policy "t"\n  timezone America/Chicago\n\nuse daily_loss(limit: $100)\n'


def log_lines(tmp: Path) -> list[dict]:
    path = tmp / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_refused_writes_mid_run_lose_nothing_and_are_alerted(tmp_path: Path) -> None:
    at = lambda s: START + dt.timedelta(seconds=s)  # noqa: E731
    lines = [(2, position(at(2), 1))]
    lines += [(10 + i, trade(at(10 + i), 100 + i, -10.0)) for i in range(12)]  # $120 of losses: a breach
    rec = recording(tmp_path / "rec.jsonl", 400, lines)
    policy = tmp_path / "p.risk"
    policy.write_text(POLICY)

    async def fault(daemon: Daemon) -> None:
        await wait_until(lambda: daemon.loops and daemon.loops[0].activity.messages > 3)
        daemon.store.store.db.execute("PRAGMA query_only = ON")  # every write refused from here
        await wait_until(lambda: any("cannot be written" in str(r.get("text")) for r in log_lines(tmp_path)))
        await wait_until(lambda: daemon.store.holding, timeout=20)
        await wait_until(lambda: daemon.loops[0].activity.messages > 60, timeout=20)
        daemon.store.store.db.execute("PRAGMA query_only = OFF")
        await wait_until(lambda: not daemon.store.backlog, timeout=10)
        daemon.stop()

    asyncio.run(run_daemon(write_config(tmp_path, rec, policy, speed=20), seconds=40, during=fault))
    texts = [str(r.get("text")) for r in log_lines(tmp_path) if r.get("kind") == "alert"]
    assert any("cannot be written" in t for t in texts)
    assert any("held flat" in t for t in texts)
    assert any("writable again" in t for t in texts)
    with Store.open(tmp_path / "state.db") as store:
        ids = {t.trade_id for t in store.day_trades(ACCOUNT, "2026-03-10")}
        assert {str(100 + i) for i in range(12)} <= ids  # every recorded fill (and the sim's close fill)
        assert [lo.rule for lo in store.active_lockouts(ACCOUNT, START + dt.timedelta(minutes=10))] == ["daily_loss"]
        closes = [a for a in store.recent_actions(ACCOUNT, limit=100) if a.action.get("call") == "close"]
        assert len({a.key for a in closes}) == len(closes) >= 1  # each close planned once
        assert store.verify_audit().ok and store.state_problems() == []


def test_a_second_daemon_on_the_same_state_file_says_who_holds_it(tmp_path: Path) -> None:
    from riskc.engine.daemon.config import load_config

    rec = recording(tmp_path / "rec.jsonl", 5, [])
    policy = tmp_path / "p.risk"
    policy.write_text(POLICY)
    config = load_config(write_config(tmp_path, rec, policy, speed=0))
    first = Daemon(config, live_view=False)
    try:
        try:
            Daemon(config, live_view=False)
        except StateFileError as error:
            assert "in use by another riskc daemon (pid" in str(error)
        else:
            raise AssertionError("a second daemon started")
    finally:
        first.store.close()
        first.lock.release()


def test_run_refuses_an_unusable_state_file_unless_new_state(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from riskc.engine.cli.main import main

    rec = recording(tmp_path / "rec.jsonl", 3, [])
    policy = tmp_path / "p.risk"
    policy.write_text(POLICY)
    config = write_config(tmp_path, rec, policy, speed=0)
    (tmp_path / "state.db").write_bytes(b"")
    refused = CliRunner().invoke(main, ["run", "--config", str(config), "--plain", "--max-time", "5"])
    assert refused.exit_code == 2 and "state.db is empty (0 bytes)" in refused.output
    assert "--new-state" in refused.output and (tmp_path / "state.db").read_bytes() == b""
    fresh = CliRunner().invoke(main, ["run", "--config", str(config), "--plain", "--max-time", "5", "--new-state"])
    assert fresh.exit_code == 0, fresh.output
    assert list(tmp_path.glob("state.db.unusable-*"))


def test_a_line_the_simulated_broker_cannot_use_is_counted_and_the_feed_goes_on(tmp_path: Path) -> None:
    at = lambda s: START + dt.timedelta(seconds=s)  # noqa: E731
    bad = json.dumps(
        {"ts": at(1).isoformat(), "hub": "market", "target": "GatewayQuote", "args": [["a", "list"], {"lastPrice": 1}]}
    )
    lines = [(1, bad), (2, position(at(2), 1))] + [(5 + i, trade(at(5 + i), 100 + i, -30.0)) for i in range(4)]
    rec = recording(tmp_path / "rec.jsonl", 30, lines)
    policy = tmp_path / "p.risk"
    policy.write_text(POLICY)
    daemon = asyncio.run(run_daemon(write_config(tmp_path, rec, policy, speed=0), seconds=6))
    assert daemon.loops[0].engine.malformed >= 1
    with Store.open(tmp_path / "state.db") as store:
        assert [lo.rule for lo in store.active_lockouts(ACCOUNT, at(60))] == ["daily_loss"]  # the later breach acted
