"""Alerts: the console and JSON log sinks, and the webhook sink against a real HTTP server on
127.0.0.1 (success, 5xx then success, 429 Retry-After, 4xx, server down, a full queue), with the
one promise under test everywhere: ``send`` returns at once and never raises."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import stat
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from rich.console import Console

from riskc.engine.daemon.alerts import Alert, Alerts, ConsoleSink, JsonLogSink, WebhookSink, discord_body
from riskc.engine.daemon.config import AccountConfig, AlertsConfig, Config, WebhookConfig

T0 = datetime(2025, 10, 29, 20, 8, tzinfo=UTC)
TOKEN = "AbCdEf-sEcReT-ToKeN"
WAIT = 5.0  # upper bound for anything the tests wait on


def alert(text: str = "daily loss hit", severity: str = "critical", rule: str | None = "daily_loss") -> Alert:
    return Alert(T0, severity, rule, text, 13298777)  # type: ignore[arg-type]


@dataclass
class Hook:
    """A webhook endpoint: replies from ``script`` in order, then 204; records what arrived."""

    url: str
    script: list[Callable[[], web.StreamResponse]] = field(default_factory=list)
    received: list[tuple[float, dict]] = field(default_factory=list)
    gate: asyncio.Event | None = None

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while len(self.received) < count:
                await asyncio.sleep(0.005)


@pytest.fixture
async def hook() -> AsyncIterator[Hook]:
    state = Hook(url="")

    async def handle(request: web.Request) -> web.StreamResponse:
        state.received.append((time.monotonic(), await request.json()))
        if state.gate is not None:
            await state.gate.wait()
        return state.script.pop(0)() if state.script else web.Response(status=204)

    app = web.Application()
    app.router.add_post("/api/webhooks/1/{token}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}/api/webhooks/1/{TOKEN}"
    yield state
    await runner.cleanup()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fast(url: str, **options) -> WebhookSink:
    return WebhookSink(url, **({"backoff": 0.01, "max_backoff": 0.05, "timeout": 1.0} | options))


# -- the record ------------------------------------------------------------------------------


def test_alert_json_shape() -> None:
    assert alert().to_json() == {
        "ts": "2025-10-29T20:08:00+00:00",
        "severity": "critical",
        "rule": "daily_loss",
        "text": "daily loss hit",
        "account": 13298777,
    }


@pytest.mark.parametrize("bad", [{"severity": "urgent"}, {"ts": datetime(2025, 10, 29, 20, 8)}])
def test_alert_refuses_unknown_severity_and_naive_time(bad: dict) -> None:
    fields = {"ts": T0, "severity": "high", "rule": None, "text": "x"} | bad
    with pytest.raises(ValueError):
        Alert(**fields)


def test_discord_body_is_capped_and_pings_nobody() -> None:
    body = discord_body(alert("@everyone " + "x" * 5000))
    assert len(body["content"]) == 2000 and body["content"].endswith("…")
    assert body["allowed_mentions"] == {"parse": []}
    assert body["content"].startswith("**CRITICAL daily_loss [13298777]**\n@everyone")


# -- console and JSON log ---------------------------------------------------------------------


def test_console_prints_brackets_literally_and_filters_by_severity() -> None:
    out = io.StringIO()
    sink = ConsoleSink(Console(file=out, width=200, color_system=None), min_severity="medium")
    sink.send(alert("stop [MNQ] missing", severity="high"))
    sink.send(alert("just info", severity="info"))
    text = out.getvalue()
    assert "HIGH daily_loss [13298777]  stop [MNQ] missing" in text and "just info" not in text


def test_json_log_appends_one_object_per_line_privately(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "riskc.log.jsonl"
    path.parent.mkdir()
    path.write_text('{"kind": "earlier"}\n')
    sink = JsonLogSink(path)
    sink.send(alert("one"))
    sink.send(alert("two", severity="low"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]  # flushed: no close needed
    assert [line.get("text") for line in lines] == [None, "one", "two"]
    assert lines[1] == {"kind": "alert"} | alert("one").to_json()
    sink.close()
    fresh = tmp_path / "new" / "a.jsonl"
    JsonLogSink(fresh).send(alert())
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o600


def test_json_log_follows_rotation(tmp_path: Path) -> None:
    path = tmp_path / "riskc.log.jsonl"
    sink = JsonLogSink(path)
    sink.send(alert("before"))
    path.rename(tmp_path / "riskc.log.jsonl.1")  # what logrotate does
    sink.send(alert("after"))
    assert "after" in path.read_text() and "after" not in (tmp_path / "riskc.log.jsonl.1").read_text()


def test_json_log_error_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "file").write_text("")
    JsonLogSink(tmp_path / "file" / "below.jsonl").send(alert())  # a file where a directory must be
    assert "cannot write to the JSON log" in caplog.text


# -- webhooks --------------------------------------------------------------------------------


async def test_webhook_posts_json(hook: Hook) -> None:
    sink = fast(hook.url)
    sink.send(alert())
    await hook.wait_for(1)
    await sink.aclose(WAIT)
    assert hook.received[0][1] == alert().to_json()
    assert (sink.stats.sent, sink.stats.failed) == (1, 0)


async def test_webhook_posts_discord_format(hook: Hook) -> None:
    sink = fast(hook.url, format="discord")
    sink.send(alert())
    await hook.wait_for(1)
    await sink.aclose(WAIT)
    assert hook.received[0][1] == discord_body(alert())


async def test_webhook_retries_after_a_server_error(hook: Hook) -> None:
    hook.script = [lambda: web.Response(status=500), lambda: web.Response(status=502)]
    sink = fast(hook.url)
    sink.send(alert())
    await hook.wait_for(3)
    await sink.aclose(WAIT)
    assert (sink.stats.sent, sink.stats.failed) == (1, 0)


async def test_webhook_backoff_grows(hook: Hook) -> None:
    hook.script = [lambda: web.Response(status=500)] * 3
    sink = WebhookSink(hook.url, backoff=0.05, max_backoff=1.0)
    sink.send(alert())
    await hook.wait_for(4)
    await sink.aclose(WAIT)
    gaps = [b[0] - a[0] for a, b in zip(hook.received, hook.received[1:], strict=False)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.2


async def test_webhook_honours_retry_after_header(hook: Hook) -> None:
    hook.script = [lambda: web.Response(status=429, headers={"Retry-After": "0.3"})]
    sink = fast(hook.url)
    sink.send(alert())
    await hook.wait_for(2)
    await sink.aclose(WAIT)
    assert hook.received[1][0] - hook.received[0][0] >= 0.3
    assert sink.stats.sent == 1


async def test_webhook_honours_discord_retry_after_body(hook: Hook) -> None:
    hook.script = [lambda: web.json_response({"message": "rate limited", "retry_after": 0.25}, status=429)]
    sink = fast(hook.url, format="discord")
    sink.send(alert())
    await hook.wait_for(2)
    await sink.aclose(WAIT)
    assert hook.received[1][0] - hook.received[0][0] >= 0.25


async def test_webhook_does_not_retry_a_client_error(hook: Hook) -> None:
    hook.script = [lambda: web.Response(status=404)]
    sink = fast(hook.url)
    sink.send(alert())
    await hook.wait_for(1)
    await sink.aclose(WAIT)
    assert len(hook.received) == 1 and (sink.stats.sent, sink.stats.failed) == (0, 1)
    assert sink.stats.last_error == "HTTP 404 (not retried)"


async def test_webhook_gives_up_after_its_retries(hook: Hook) -> None:
    hook.script = [lambda: web.Response(status=503)] * 10
    sink = fast(hook.url, retries=2)
    sink.send(alert())
    await hook.wait_for(3)
    await sink.aclose(WAIT)
    assert len(hook.received) == 3 and sink.stats.failed == 1


async def test_server_down_send_returns_at_once_and_shutdown_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/webhooks/1/{TOKEN}"
    sink = WebhookSink(url, backoff=0.2, max_backoff=0.2, retries=100)
    started = time.monotonic()
    for i in range(50):
        sink.send(alert(f"alert {i}"))
    assert time.monotonic() - started < 0.05
    await asyncio.sleep(0.3)  # let it fail a few times
    started = time.monotonic()
    await sink.aclose(0.2)
    assert time.monotonic() - started < 1.0
    assert sink.stats.undelivered > 0 and sink.stats.sent == 0
    assert TOKEN not in caplog.text and "127.0.0.1" in caplog.text
    assert TOKEN not in repr(sink)


async def test_full_queue_drops_the_oldest(hook: Hook) -> None:
    hook.gate = asyncio.Event()
    sink = fast(hook.url, max_queue=2)
    sink.send(alert("first"))
    await hook.wait_for(1)  # "first" is in flight, held by the gate
    for text in ("second", "third", "fourth"):
        sink.send(alert(text))
    assert sink.stats.dropped == 1
    hook.gate.set()
    await hook.wait_for(3)
    await sink.aclose(WAIT)
    assert [body["text"] for _, body in hook.received] == ["first", "third", "fourth"]


async def test_alerts_before_the_loop_runs_are_sent_once_it_does(hook: Hook) -> None:
    sink = fast(hook.url)
    await asyncio.to_thread(sink.send, alert("from a thread without a loop"))
    sink.send(alert("from the loop"))
    await hook.wait_for(2)
    await sink.aclose(WAIT)
    assert [body["text"] for _, body in hook.received] == ["from a thread without a loop", "from the loop"]


async def test_min_severity_filters(hook: Hook) -> None:
    sink = fast(hook.url, min_severity="high")
    sink.send(alert("noise", severity="low"))
    sink.send(alert("matters", severity="high"))
    await hook.wait_for(1)
    await sink.aclose(WAIT)
    assert [body["text"] for _, body in hook.received] == ["matters"]


async def test_shutdown_drains_the_queue(hook: Hook) -> None:
    sink = fast(hook.url)
    for i in range(5):
        sink.send(alert(f"a{i}"))
    await sink.aclose(WAIT)
    assert len(hook.received) == 5 and sink.stats.undelivered == 0


# -- fan-out ---------------------------------------------------------------------------------


class Broken:
    def send(self, alert: Alert) -> None:
        raise RuntimeError("boom")

    async def aclose(self, timeout: float) -> None:
        raise RuntimeError("boom")


async def test_fan_out_survives_a_broken_sink(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "log.jsonl"
    alerts = Alerts([Broken(), JsonLogSink(path)])
    alerts.send(alert())
    alerts.alert("urgent", "bad severity still gets through", rule="x")  # type: ignore[arg-type]
    await alerts.aclose(1.0)
    texts = [json.loads(line)["text"] for line in path.read_text().splitlines()]
    assert texts == ["daily loss hit", "bad severity still gets through"]
    assert "boom" in caplog.text


async def test_from_config(tmp_path: Path, hook: Hook) -> None:
    config = Config(
        log=tmp_path / "riskc.log.jsonl",
        accounts=[AccountConfig(policies=[tmp_path])],
        alerts=AlertsConfig(console=False, webhooks=[WebhookConfig(url=hook.url, format="discord")]),
    )
    alerts = Alerts.from_config(config)
    assert [type(s).__name__ for s in alerts.sinks] == ["JsonLogSink", "WebhookSink"]
    assert TOKEN not in repr(config.alerts.webhooks[0]) and TOKEN not in repr(alerts.sinks[1])
    alerts.alert("high", "sent everywhere", rule="stop_required", account=1)
    await alerts.aclose(WAIT)
    assert hook.received[0][1]["content"].endswith("sent everywhere")
    assert "sent everywhere" in (tmp_path / "riskc.log.jsonl").read_text()
