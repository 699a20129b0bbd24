"""Signs of life: `riskc status` tells a live daemon from one killed with SIGKILL, an outside
monitor receives pings while riskc runs and none after, and systemd hears READY, WATCHDOG and
STOPPING on its notify socket. Every wait is bounded."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from aiohttp import web
from click.testing import CliRunner
from test_daemon import ACCOUNT, START, position, recording

from riskc.engine.cli.main import main
from riskc.engine.daemon.config import load_config
from riskc.engine.daemon.daemon import Daemon
from riskc.engine.daemon.heartbeat import keep_alive, sd_notify, watchdog_interval
from riskc.engine.daemon.loops import build_loops
from riskc.engine.store import Store, StoreError, heartbeat

POLICY = 'policy "t"\n  timezone America/Chicago\n\nuse max_contracts(limit: 5)\n'


def config_with(tmp: Path, heartbeat_yaml: str, seconds: int = 600, speed: float = 5) -> Path:
    rec = recording(tmp / "rec.jsonl", seconds, [(1, position(START + dt.timedelta(seconds=1), 1))])
    policy = tmp / "p.risk"
    policy.write_text(POLICY)
    config = tmp / "riskc.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        state: {tmp / "state.db"}
        log: {tmp / "log.jsonl"}
        broker: {{kind: sim, recording: {rec}, speed: {speed}}}
        accounts:
          - policies: [{policy}]
        alerts: {{console: false}}
        web: false
        heartbeat: {heartbeat_yaml}
    """)
    )
    return config


def status_text(config: Path) -> str:
    result = CliRunner().invoke(main, ["status", "--config", str(config)])
    assert result.exit_code == 0, result.output
    return result.output


def test_status_says_the_daemon_is_alive_then_gone_after_sigkill(tmp_path: Path) -> None:
    config = config_with(tmp_path, "{every: 0.5}")
    env = dict(os.environ, PROJECT_X_USERNAME="", PROJECT_X_API_KEY="")
    command = [sys.executable, "-c", "from riskc.engine.cli.main import main; main()", "run", "--config", str(config)]
    daemon = subprocess.Popen([*command, "--plain"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert daemon.poll() is None, daemon.stderr.read().decode()
            assert time.monotonic() < deadline, "the daemon wrote no heartbeat in time"
            try:
                with Store.open_readonly(tmp_path / "state.db") as store:
                    beat = heartbeat.read(store)
            except (StoreError, sqlite3.Error):  # not there yet, or still being created
                beat = None
            if beat is not None and beat.beat_at > beat.started_at:
                break
            time.sleep(0.2)
        assert "daemon alive (" in status_text(config)
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(timeout=10)
    finally:
        daemon.kill()
    text = status_text(config)
    assert "no daemon since" in text and f"process {daemon.pid} is gone" in text
    assert "daemon alive" not in text


def test_a_stale_heartbeat_from_another_machine_reads_as_gone(tmp_path: Path) -> None:
    """No pid to check across machines: the age of the last beat decides."""
    config = config_with(tmp_path, "{every: 5s}")
    now = dt.datetime.now(dt.UTC)
    with Store.open(tmp_path / "state.db") as store:
        heartbeat.start(store, now - dt.timedelta(minutes=3), pid=1, host="elsewhere", every=dt.timedelta(seconds=5))
        store.add_lockout(1, "x", "a row so the file knows the account", now, until=now + dt.timedelta(minutes=1))
    text = status_text(config)
    assert "no daemon since" in text and "no heartbeat for 3m" in text
    with Store.open(tmp_path / "state.db") as store:
        heartbeat.beat(store, dt.datetime.now(dt.UTC))
    assert "daemon alive (0 s ago)" in status_text(config)


async def test_the_monitor_receives_pings_while_riskc_runs_and_none_after(tmp_path: Path) -> None:
    pings: list[tuple[str, float, object]] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        pings.append((request.method, time.monotonic(), body))
        return web.Response(text="OK")

    app = web.Application()
    app.router.add_route("*", "/ping/abc-123", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        url = f"http://127.0.0.1:{port}/ping/abc-123"
        config = config_with(tmp_path, f"{{every: 0.3, url: '{url}', method: POST}}")
        daemon = Daemon(load_config(config), live_view=False, max_seconds=2.5)
        assert await asyncio.wait_for(daemon.run(lambda d: build_loops(d, None), (keep_alive,)), 30) == 0
        stopped_at = time.monotonic()
        assert len(pings) >= 4
        assert {method for method, _, _ in pings} == {"POST"}
        assert pings[-1][2]["riskc"] == "alive" and pings[-1][2]["accounts"][0]["trading_state"] == "active"
        count = len(pings)
        await asyncio.sleep(1.2)  # four intervals: a running daemon would have pinged by now
        assert len(pings) == count and all(when <= stopped_at for _, when, _ in pings)
    finally:
        await runner.cleanup()


async def test_an_unreachable_monitor_is_logged_once_and_riskc_goes_on(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens there once closed
    config = config_with(tmp_path, f"{{every: 0.2, url: 'http://127.0.0.1:{port}/ping'}}")
    daemon = Daemon(load_config(config), live_view=False, max_seconds=1.5)
    assert await asyncio.wait_for(daemon.run(lambda d: build_loops(d, None), (keep_alive,)), 30) == 0
    log = (tmp_path / "log.jsonl").read_text()
    assert log.count('"monitor_failing"') == 1 and "/ping" not in log  # the URL's path (its secret) is redacted
    assert daemon.loops[0].activity.messages > 0


async def test_systemd_hears_ready_watchdog_and_stopping(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "notify.sock"
    messages: list[str] = []

    async def read(sock: socket.socket) -> None:  # systemd's side: read as datagrams arrive
        while True:
            try:
                messages.append(sock.recv(256).decode())
            except BlockingIOError:
                await asyncio.sleep(0.01)

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        monkeypatch.setenv("WATCHDOG_USEC", "400000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        reader = asyncio.create_task(read(sock))
        daemon = Daemon(load_config(config_with(tmp_path, "{every: 0.4}")), live_view=False, max_seconds=1.5)
        assert await asyncio.wait_for(daemon.run(lambda d: build_loops(d, None), (keep_alive,)), 30) == 0
        await asyncio.sleep(0.1)
        reader.cancel()
    assert messages[0] == "READY=1" and messages[-1] == "STOPPING=1"
    assert messages.count("WATCHDOG=1") >= 3  # every 0.2 s over 1.5 s
    assert f"STATUS=guarding 1 account: {ACCOUNT} active" in messages


def test_a_notify_socket_nobody_reads_never_blocks(tmp_path: Path) -> None:
    path = tmp_path / "full.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        results = [sd_notify("WATCHDOG=1", {"NOTIFY_SOCKET": str(path)}) for _ in range(200)]
    assert results[0] is True and results[-1] is False  # the queue filled up: dropped, not blocked


def test_the_notify_protocol_details() -> None:
    assert sd_notify("READY=1", {}) is False  # not under systemd: nothing to do
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None  # another process's
    assert watchdog_interval({}) is None and watchdog_interval({"WATCHDOG_USEC": "0"}) is None
