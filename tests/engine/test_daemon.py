"""The daemon on the simulated broker: enforcement, hot reload (a good edit swaps, a broken one
is refused and reported), SIGTERM and restart keep the lockout. Every wait is bounded."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from riskc.engine.daemon.config import load_config
from riskc.engine.daemon.daemon import Daemon
from riskc.engine.daemon.loops import build_loops
from riskc.engine.daemon.reload import watch_and_reload
from riskc.engine.store import Store

MNQ = "CON.F.US.MNQ.Z25"
START = dt.datetime(2026, 3, 10, 15, 0, tzinfo=dt.UTC)  # 10:00 Chicago, a Tuesday
ACCOUNT = 13298777


def user(ts: dt.datetime, target: str, data: dict) -> str:
    return json.dumps({"ts": ts.isoformat(), "hub": "user", "target": target, "args": [{"action": 1, "data": data}]})


def quote(ts: dt.datetime, price: float) -> str:
    return json.dumps(
        {
            "ts": ts.isoformat(),
            "hub": "market",
            "target": "GatewayQuote",
            "args": [MNQ, {"lastPrice": price, "bestBid": price - 0.25, "bestAsk": price}],
        }
    )


def position(ts: dt.datetime, size: int, avg: float = 21000.0) -> str:
    return user(
        ts,
        "GatewayUserPosition",
        {
            "id": 7,
            "accountId": ACCOUNT,
            "contractId": MNQ,
            "type": 1 if size else 0,
            "size": size,
            "averagePrice": avg,
            "creationTimestamp": START.isoformat(),
        },
    )


def trade(ts: dt.datetime, trade_id: int, pnl: float | None) -> str:
    return user(
        ts,
        "GatewayUserTrade",
        {
            "id": trade_id,
            "accountId": ACCOUNT,
            "contractId": MNQ,
            "price": 21000.0,
            "profitAndLoss": pnl,
            "fees": 0.37,
            "side": 1,
            "size": 1,
            "voided": False,
            "creationTimestamp": ts.isoformat(),
        },
    )


def recording(path: Path, seconds: int, lines: list[tuple[int, str]]) -> Path:
    """Quotes every second for ``seconds``, plus ``lines`` at their second offsets."""
    at = {}
    for offset, line in lines:
        at.setdefault(offset, []).append(line)
    out = [user(START, "GatewayUserAccount", {"id": ACCOUNT, "name": "TEST", "balance": 50000.0, "canTrade": True})]
    for s in range(seconds):
        ts = START + dt.timedelta(seconds=s)
        out.append(quote(ts + dt.timedelta(milliseconds=500), 21000.0))
        out += at.get(s, [])
    path.write_text("\n".join(out) + "\n")
    return path


def write_config(tmp: Path, rec: Path, policy: Path, speed: float) -> Path:
    config = tmp / "riskc.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        state: {tmp / "state.db"}
        log: {tmp / "log.jsonl"}
        broker: {{kind: sim, recording: {rec}, speed: {speed}, timeout: 2s, retries: 1}}
        accounts:
          - policies: [{policy}]
        alerts: {{console: false}}
    """)
    )
    return config


POLICY = 'policy "t"\n  timezone America/Chicago\n\nuse max_contracts(limit: {limit})\n'


async def run_daemon(config_path: Path, seconds: float, during=None) -> Daemon:
    daemon = Daemon(load_config(config_path), live_view=False, max_seconds=seconds)
    task = asyncio.create_task(daemon.run(lambda d: build_loops(d, None), (watch_and_reload,)))
    if during is not None:
        await during(daemon)
    await asyncio.wait_for(task, seconds + 15)
    return daemon


def actions(tmp: Path) -> list[dict]:
    return [r for r in map(json.loads, (tmp / "log.jsonl").read_text().splitlines()) if r.get("kind") == "action"]


async def test_sim_daemon_enforces_a_breach(tmp_path: Path) -> None:
    rec = recording(tmp_path / "rec.jsonl", 20, [(2, position(START + dt.timedelta(seconds=2), 4))])
    policy = tmp_path / "p.risk"
    policy.write_text(POLICY.format(limit=2))
    daemon = await run_daemon(write_config(tmp_path, rec, policy, speed=0), seconds=5)
    reduce = [a for a in actions(tmp_path) if a["action"] == "reduce"]  # reduce_total, per position cut
    assert reduce and (reduce[0]["symbol"], reduce[0]["to"]) == ("MNQ", 2)
    with Store.open(tmp_path / "state.db") as store:
        done = [a for a in store.recent_actions(ACCOUNT) if a.state == "confirmed"]
        assert [a.action["call"] for a in done] == ["partial_close"]
        assert store.verify_audit().ok
    assert daemon.loops[0].engine.book.positions[MNQ].size == 2  # the sim's fill reached the book


async def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def test_hot_reload_swaps_a_good_edit_and_keeps_the_last_good_set_on_a_broken_one(tmp_path: Path) -> None:
    rec = recording(tmp_path / "rec.jsonl", 400, [(1, position(START + dt.timedelta(seconds=1), 3))])
    policy = tmp_path / "p.risk"
    policy.write_text(POLICY.format(limit=5))

    async def edit(daemon: Daemon) -> None:
        await wait_until(lambda: daemon.loops and daemon.loops[0].activity.messages > 5)
        await asyncio.sleep(0.3)  # the watcher is up
        lp = daemon.loops[0]
        first = lp.engine.policies.digest
        policy.write_text(POLICY.format(limit=5) + "use max_contracts(limit: nope) as broken\n")
        await wait_until(lambda: lp.activity.reload_errors == 1)
        assert lp.engine.policies.digest == first  # the old set stays active
        assert "nope" in (lp.activity.last_error or "")
        assert not [a for a in actions(tmp_path) if a["action"] == "reduce"]
        policy.write_text(POLICY.format(limit=1))
        await wait_until(lambda: lp.engine.policies.digest != first)
        await wait_until(lambda: any(a["action"] == "reduce" for a in actions(tmp_path)))
        daemon.stop()

    await run_daemon(write_config(tmp_path, rec, policy, speed=40), seconds=30, during=edit)
    reduce = [a for a in actions(tmp_path) if a["action"] == "reduce"]
    assert reduce[0]["to"] == 1
    with Store.open(tmp_path / "state.db") as store:
        hashes = {v.content_hash for v in store.current_policies()}
        assert len(store.audit_records()) > 0 and store.verify_audit().ok
    assert len(hashes) >= 1
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["outcome"] for r in log if r.get("kind") == "reload"] == ["rejected", "swapped"]


def test_sigterm_stops_cleanly_and_a_restart_keeps_the_lockout(tmp_path: Path) -> None:
    lines = [(1, position(START + dt.timedelta(seconds=1), 1)), (2, trade(START + dt.timedelta(seconds=2), 1, -1200.0))]
    rec = recording(tmp_path / "rec.jsonl", 600, lines)
    policy = tmp_path / "p.risk"
    policy.write_text('policy "t"\n  timezone America/Chicago\n\nuse daily_loss(limit: $1,000)\n')
    config = write_config(tmp_path, rec, policy, speed=20)
    env = dict(os.environ, PROJECT_X_USERNAME="", PROJECT_X_API_KEY="")
    command = [
        sys.executable,
        "-c",
        "from riskc.engine.cli.main import main; main()",
        "run",
        "--config",
        str(config),
        "--plain",
    ]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "log.jsonl").exists() or not any(a["action"] == "lockout" for a in actions(tmp_path)):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "no lockout in time"
            time.sleep(0.1)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=20) == 0
    finally:
        first.kill()
    lockout = next(a for a in actions(tmp_path) if a["action"] == "lockout")
    until = dt.datetime.fromisoformat(lockout["until"])
    assert until == dt.datetime(2026, 3, 10, 22, 0, tzinfo=dt.UTC)  # 17:00 Chicago (CDT since 2026-03-08)
    with Store.open(tmp_path / "state.db") as store:
        active = store.active_lockouts(ACCOUNT, START + dt.timedelta(minutes=5))
        assert [(lo.rule, lo.until) for lo in active] == [("daily_loss", until)]
        assert store.verify_audit().ok
    second = subprocess.run(command + ["--max-time", "3"], env=env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    with Store.open(tmp_path / "state.db") as store:
        assert [lo.rule for lo in store.active_lockouts(ACCOUNT, START + dt.timedelta(minutes=5))] == ["daily_loss"]


def test_the_embedded_demo_runs_without_credentials_and_takes_actions(tmp_path: Path, monkeypatch) -> None:
    from click.testing import CliRunner

    from riskc.engine.cli.main import main

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("RISKC_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./riskc.yaml here
    env = {"PROJECT_X_USERNAME": "", "PROJECT_X_API_KEY": ""}
    result = CliRunner().invoke(main, ["run", "--plain", "--speed", "0", "--max-time", "60"], env=env)
    assert result.exit_code == 0, result.output
    assert "riskc demo" in result.output and "daily_loss" in result.output
    with Store.open(tmp_path / "riskc" / "demo.db") as store:
        confirmed = [a for a in store.recent_actions(limit=100) if a.state == "confirmed"]
        assert len(confirmed) >= 3
        assert [lo.rule for lo in store.active_lockouts(None, dt.datetime(2026, 1, 14, 21, tzinfo=dt.UTC))]
        assert store.verify_audit().ok


def test_the_live_view_renders_positions_lockouts_and_actions(tmp_path: Path) -> None:
    from rich.console import Console

    from riskc.engine.daemon.live_view import render

    rec = recording(tmp_path / "rec.jsonl", 20, [(2, position(START + dt.timedelta(seconds=2), 4))])
    policy = tmp_path / "p.risk"
    policy.write_text(POLICY.format(limit=2))
    daemon = asyncio.run(run_daemon(write_config(tmp_path, rec, policy, speed=0), seconds=5))
    daemon.store = Store.open(tmp_path / "state.db")
    console = Console(record=True, width=160)
    console.print(render(daemon))
    text = console.export_text()
    assert "MNQ" in text and "reduce" in text and "max_contracts" in text and "0/2" in text


async def test_a_lock_from_another_process_is_enforced_on_the_next_tick(tmp_path: Path) -> None:
    rec = recording(tmp_path / "rec.jsonl", 400, [(1, position(START + dt.timedelta(seconds=1), 1))])
    policy = tmp_path / "p.risk"
    policy.write_text(POLICY.format(limit=5))

    async def lock(daemon: Daemon) -> None:
        lp = None
        await wait_until(lambda: daemon.loops and MNQ in daemon.loops[0].engine.book.positions)
        lp = daemon.loops[0]
        with Store.open(tmp_path / "state.db") as other:  # what `riskc lock` does, from its own connection
            other.add_lockout(
                ACCOUNT, "personal", "done for today", START, until=START + dt.timedelta(hours=2), origin="personal"
            )
        await wait_until(lambda: MNQ not in lp.engine.book.positions)
        daemon.stop()

    await run_daemon(write_config(tmp_path, rec, policy, speed=40), seconds=30, during=lock)
    closes = [a for a in actions(tmp_path) if a["action"] == "close"]
    assert closes and "locked by personal" in closes[0]["reason"]


async def test_a_reload_that_moves_the_trading_clock_is_rejected_until_a_restart(tmp_path: Path) -> None:
    """The book keeps the trading days it started with (Engine.swap): a policy edit that moves
    the timezone or the day start would leave rules reading another clock than the book's."""
    from types import SimpleNamespace

    from riskc.engine.daemon.reload import reload_loop
    from riskc.engine.runner import PolicySet

    policy = tmp_path / "p.risk"
    policy.write_text('policy "t"\n  timezone America/Chicago\n\nuse daily_loss(limit: $1,000)\n')
    current, _, _ = PolicySet.from_paths([policy])
    alerts: list[tuple[str, str]] = []
    daemon = SimpleNamespace(
        alerts=SimpleNamespace(alert=lambda severity, text, **_: alerts.append((severity, text))),
        log_record=lambda record: None,
    )
    lp = SimpleNamespace(
        paths=[policy],
        engine=SimpleNamespace(book=SimpleNamespace(account=SimpleNamespace(id=1)), policies=current),
        activity=SimpleNamespace(reload_errors=0, last_error=None),
        queue=asyncio.Queue(),
    )
    policy.write_text('policy "t"\n  timezone America/New_York\n\nuse daily_loss(limit: $1,000)\n')
    candidate = await reload_loop(daemon, lp)
    assert candidate.policies is None and lp.queue.empty() and lp.activity.reload_errors == 1
    assert "restart riskc to apply it" in alerts[-1][1] and "America/New_York" in alerts[-1][1]
    policy.write_text('policy "t"\n  timezone America/Chicago\n\nuse daily_loss(limit: $900)\n')
    assert (await reload_loop(daemon, lp)).policies is not None and not lp.queue.empty()


def test_the_policies_of_one_account_must_share_the_trading_clock(tmp_path: Path) -> None:
    from riskc.engine.runner import PolicySet

    a, b = tmp_path / "a.risk", tmp_path / "b.risk"
    a.write_text('policy "a"\n  timezone America/Chicago\n\nuse daily_loss(limit: $1,000)\n')
    b.write_text('policy "b"\n  timezone America/Chicago\n  trading_day_starts 18:00\n\nuse max_contracts(limit: 5)\n')
    policies, diagnostics, _ = PolicySet.from_paths([a, b])
    assert policies is None
    [clash] = [d for d in diagnostics if d.is_error]
    assert clash.code == "risk_bad_setting" and clash.span.file == str(b)
    assert clash.have == "America/Chicago, day from 18:00" and clash.want.startswith("America/Chicago, day from 17:00")
