"""The status board's server, in process: `/api/status` keys and types (named as the snapshot
and §6.2 name them), the SSE stream, who may read it (loopback Host or the token), and the
refusals: a non-loopback bind without a token, a taken port (the daemon guards on without it)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import socket
import textwrap
from decimal import Decimal
from pathlib import Path

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_daemon import ACCOUNT, START, position, recording, trade, wait_until

from riskc.engine.daemon.board.series import PnlSeries
from riskc.engine.daemon.board.server import serve_board
from riskc.engine.daemon.config import ConfigError, load_config
from riskc.engine.daemon.daemon import Daemon
from riskc.engine.daemon.loops import build_loops

POLICY = 'policy "t"\n  timezone America/Chicago\n\nuse daily_loss(limit: $1,000)\nuse stop_required(grace: 30s)\n'


def board_config(tmp: Path, web: str, speed: float = 20) -> Path:
    lines = [(1, position(START + dt.timedelta(seconds=1), 1)), (3, trade(START + dt.timedelta(seconds=3), 1, -1200.0))]
    rec = recording(tmp / "rec.jsonl", 600, lines)
    policy = tmp / "p.risk"
    policy.write_text(POLICY)
    config = tmp / "riskc.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        state: {tmp / "state.db"}
        log: {tmp / "log.jsonl"}
        broker: {{kind: sim, recording: {rec}, speed: {speed}, timeout: 2s, retries: 1}}
        accounts:
          - policies: [{policy}]
        alerts: {{console: false}}
        web: {web}
    """)
    )
    return config


async def with_board(config: Path, during) -> Daemon:
    daemon = Daemon(load_config(config), live_view=False, max_seconds=40)
    task = asyncio.create_task(daemon.run(lambda d: build_loops(d, None), (serve_board,)))
    try:
        await wait_until(lambda: daemon.board is not None and daemon.board.url is not None, timeout=15)
        await during(daemon)
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 30)
    return daemon


async def get(url: str, **kwargs) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url, **kwargs) as response:
        return response.status, await response.text()


async def test_api_status_names_its_keys_as_the_snapshot_and_the_action_records(tmp_path: Path) -> None:
    async def look(daemon: Daemon) -> None:
        await wait_until(lambda: daemon.loops[0].engine.lockouts_at(daemon.loops[0].engine.book.now), timeout=20)
        status, text = await get(daemon.board.url + "api/status")
        assert status == 200
        document = json.loads(text)
        assert document["version"] == 1 and document["broker"] == "sim"
        [account] = document["accounts"]
        assert account["id"] == ACCOUNT and account["name"] == "TEST"
        assert re.fullmatch(r"\d+\.\d\d", account["balance"])  # money as an exact decimal string
        assert set(account["day"]) >= {"realized_pnl", "unrealized_pnl", "net_pnl", "trades"}
        assert Decimal(account["day"]["realized_pnl"]) <= Decimal("-1200.37")  # and the flatten's fees
        assert account["trading_state"]["state"] == "halted"
        assert "daily_loss" in account["trading_state"]["reason"]
        [lockout] = account["lockouts"]
        assert lockout["rule"] == "daily_loss" and lockout["scope"] == "account"
        assert lockout["until"] == "2026-03-10T22:00:00+00:00" and lockout["remaining_seconds"] > 0
        assert lockout["reason"].startswith("daily_loss: day.realized_pnl = -$1,200.37")
        assert account["actions"] and all(a["reason"] for a in account["actions"])
        assert {"flatten", "lockout"} <= {a["action"] for a in account["actions"]}
        assert {"ts", "rule", "action", "reason"} <= set(account["actions"][0])
        assert len(account["policy"]["hash"]) == 16 and account["policy"]["pending"] is None
        assert account["health"]["stale"] is False and account["health"]["messages"] > 0
        assert account["chart"]["daily_loss"] == "-1000.00" and account["chart"]["points"]

    await with_board(board_config(tmp_path, "{port: 0}"), look)


async def test_positions_carry_stop_coverage_and_the_grace_countdown(tmp_path: Path) -> None:
    async def look(daemon: Daemon) -> None:
        await wait_until(lambda: daemon.loops[0].engine.book.positions, timeout=20)
        await asyncio.sleep(0.5)
        [account] = json.loads((await get(daemon.board.url + "api/status"))[1])["accounts"]
        [p] = account["positions"]
        assert (p["symbol"], p["size"], p["qty"], p["stop_coverage"]) == ("MNQ", 1, 1, 0)
        assert p["grace"] == 30 and p["grace_remaining"] == max(0, 30 - p["uncovered_for"])

    await with_board(board_config(tmp_path, "{port: 0}", speed=2), look)


async def test_the_event_stream_pushes_the_status_as_it_changes(tmp_path: Path) -> None:
    async def look(daemon: Daemon) -> None:
        times = []
        async with aiohttp.ClientSession() as session, session.get(daemon.board.url + "api/events") as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            async for line in response.content:
                if line.startswith(b"data: "):
                    times.append(json.loads(line[6:])["accounts"][0]["time"])
                if len(set(times)) >= 3:
                    break
        assert len(set(times)) >= 3  # engine time moved on between pushes

    await with_board(board_config(tmp_path, "{port: 0}"), look)


async def test_only_loopback_hosts_are_answered_and_nothing_can_be_changed(tmp_path: Path) -> None:
    async def look(daemon: Daemon) -> None:
        url = daemon.board.url
        assert (await get(url))[0] == 200
        status, text = await get(url + "api/status", headers={"Host": "evil.example:8642"})  # DNS rebinding
        assert status == 403 and "only on this machine" in text
        async with aiohttp.ClientSession() as session, session.post(url + "api/status") as response:
            assert response.status == 405
        status, _ = await get(url + "nothing-here")
        assert status == 404

    await with_board(board_config(tmp_path, "{port: 0}"), look)


async def test_with_a_token_every_request_must_carry_it(tmp_path: Path) -> None:
    token = "s3cret-token-0123456789"

    async def look(daemon: Daemon) -> None:
        url = daemon.board.url
        assert (await get(url + "api/status"))[0] == 401
        assert (await get(url + "api/status?token=wrong-token-0123456789"))[0] == 401
        assert (await get(url + f"api/status?token={token}"))[0] == 200
        assert (await get(url + "api/status", headers={"Authorization": f"Bearer {token}"}))[0] == 200
        assert (await get(url + "api/status", headers={"Host": "riskc.lan", "Authorization": f"Bearer {token}"}))[
            0
        ] == 200

    await with_board(board_config(tmp_path, f"{{port: 0, token: {token}}}"), look)


def test_a_non_loopback_bind_without_a_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(board_config(tmp_path, "{host: 0.0.0.0, port: 8642}"))
    assert "without a token" in str(caught.value) and "riskc.yaml" in str(caught.value)
    assert load_config(board_config(tmp_path, "{host: 0.0.0.0, token: aaaaaaaaaaaaaaaaaaaa}")).web.host == "0.0.0.0"
    assert load_config(board_config(tmp_path, "false")).web.enabled is False


def test_run_refuses_a_non_loopback_web_option_without_a_token(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from riskc.engine.cli.main import main

    config = board_config(tmp_path, "{port: 0}")
    result = CliRunner().invoke(main, ["run", "--config", str(config), "--web", "192.168.1.5:8642", "--max-time", "1"])
    assert result.exit_code == 2
    assert "beyond this machine, without a token" in result.output
    result = CliRunner().invoke(main, ["run", "--config", str(config), "--web", "nonsense", "--max-time", "1"])
    assert result.exit_code == 2 and "expected HOST:PORT" in result.output


async def test_a_taken_port_leaves_the_daemon_guarding_without_a_board(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon = Daemon(load_config(board_config(tmp_path, f"{{port: {port}}}")), live_view=False, max_seconds=3)
        assert await daemon.run(lambda d: build_loops(d, None), (serve_board,)) == 0
    assert daemon.board is None and daemon.loops[0].activity.messages > 0
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert any(r.get("kind") == "board" and r["event"] == "unavailable" for r in log)


@given(
    limit=st.integers(min_value=2, max_value=50),
    steps=st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=400),
)
def test_the_pnl_series_keeps_its_bounds_for_any_sampling(limit: int, steps: list[int]) -> None:
    series, when = PnlSeries(limit=limit), START
    for i, step in enumerate(steps):
        when += dt.timedelta(milliseconds=step)
        series.add(dt.date(2026, 3, 10), when, Decimal(i))
    times = [t for t, _ in series.points]
    assert len(times) <= limit + 1 and times == sorted(times)
    assert series.points[-1] == (when, Decimal(len(steps) - 1))  # the latest value is always shown
    assert series.points[0][0] == START + dt.timedelta(milliseconds=steps[0])  # so is the first


def test_the_pnl_series_stays_small_and_evenly_spaced() -> None:
    series = PnlSeries(limit=100)
    day = dt.date(2026, 3, 10)
    for second in range(10_000):
        series.add(day, START + dt.timedelta(seconds=second), Decimal(second))
    assert len(series.points) <= 101
    assert series.points[0][1] == 0 and series.points[-1][1] == 9999  # the first and the latest are kept
    gaps = {(b[0] - a[0]).total_seconds() for a, b in zip(series.points, series.points[1:-1], strict=False)}
    assert gaps == {series.step.total_seconds()}
    series.add(day + dt.timedelta(days=1), START + dt.timedelta(days=1), Decimal(0))
    assert len(series.points) == 1  # a new trading day, a new chart


async def test_the_status_before_the_first_message_says_it_is_waiting(tmp_path: Path) -> None:
    from riskc.engine.daemon.board.status import status_json

    daemon = Daemon(load_config(board_config(tmp_path, "false")), live_view=False)
    try:
        daemon.loops = await build_loops(daemon, None)
        [account] = status_json(daemon)["accounts"]
        assert account["waiting"] is True and account["trading_day"] is None
        assert account["positions"] == [] and account["lockouts"] == [] and account["actions"] == []
        assert account["trading_state"]["state"] == "active"
        json.dumps(status_json(daemon))  # plain JSON all the way down
    finally:
        daemon.store.close()


async def test_after_a_restart_the_chart_and_the_last_actions_still_show_the_morning(tmp_path: Path) -> None:
    from test_daemon import quote, user

    from riskc.engine.daemon.board.status import status_json

    config = board_config(tmp_path, "false", speed=0)
    daemon = Daemon(load_config(config), live_view=False, max_seconds=3)
    await daemon.run(lambda d: build_loops(d, None))
    later = START + dt.timedelta(minutes=10)
    lines = [user(later, "GatewayUserAccount", {"id": ACCOUNT, "name": "TEST", "balance": 48800.0, "canTrade": True})]
    lines += [quote(later + dt.timedelta(seconds=s, milliseconds=500), 21000.0) for s in range(5)]
    (tmp_path / "rec.jsonl").write_text("\n".join(lines) + "\n")  # the afternoon, after a restart

    seen = {}

    async def look(daemon: Daemon) -> None:
        await wait_until(lambda: daemon.loops and daemon.loops[0].activity.pnl.points, timeout=10)
        account = status_json(daemon)["accounts"][0]
        seen.update(account["chart"], actions=account["actions"])
        daemon.stop()

    restarted = Daemon(load_config(config), live_view=False, max_seconds=20)
    task = asyncio.create_task(restarted.run(lambda d: build_loops(d, None)))
    await look(restarted)
    await asyncio.wait_for(task, 20)
    morning = [p for p in seen["points"] if p[0] < int(later.timestamp())]
    assert morning[0] == [int((START + dt.timedelta(seconds=3)).timestamp()), "-1200.37"]  # the loss, from the store
    assert len(morning) < len(seen["points"])  # and the afternoon's samples after it
    # The last actions too, read back from the audit log: the morning's flatten and lockout.
    assert {"flatten", "lockout"} <= {a["action"] for a in seen["actions"]}
    assert all(a["reason"] for a in seen["actions"]) and seen["actions"][0]["ts"] >= seen["actions"][-1]["ts"]
