"""What `riskc run` prints: each action once (a line with `--plain`, a row of the live view
otherwise), and an alert line only for an alert that reports no action (reconciliation drift, a
failed broker call, a rejected policy edit). The log and the webhooks still get every alert."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import textwrap
from pathlib import Path

from rich.console import Console
from test_daemon import ACCOUNT, START, position, recording, trade

from riskc.engine.daemon.alerts import Alert, ConsoleSink
from riskc.engine.daemon.config import load_config
from riskc.engine.daemon.daemon import Daemon
from riskc.engine.daemon.live_view import run_view
from riskc.engine.daemon.loops import build_loops
from riskc.engine.daemon.reload import watch_and_reload

POLICY = textwrap.dedent("""\
    policy "t"
      timezone America/Chicago

    use daily_loss(limit: $1,000)

    rule heads_up
      when day.realized_pnl < -$500
      then alert "half the daily limit is gone"
      severity medium
""")
DRIFT = "reconciliation corrected the book: MNQ size 2, not 1"


def _config(tmp: Path) -> Path:
    lines = [(1, position(START + dt.timedelta(seconds=1), 1)), (2, trade(START + dt.timedelta(seconds=2), 1, -1200.0))]
    rec = recording(tmp / "rec.jsonl", 20, lines)
    (tmp / "p.risk").write_text(POLICY)
    config = tmp / "riskc.yaml"  # console alerts on, as by default
    config.write_text(
        f"state: {tmp / 'state.db'}\nlog: {tmp / 'log.jsonl'}\n"
        f"broker: {{kind: sim, recording: {rec}, speed: 0}}\naccounts:\n  - policies: [{tmp / 'p.risk'}]\n"
    )
    return config


def _run(tmp: Path, *, live_view: bool) -> tuple[str, list[dict]]:
    """The console's text and the log's records after a run that breaches the daily loss limit
    (flatten, lockout, and the alert of `heads_up`) and raises an alert of its own."""
    out = io.StringIO()
    console = Console(file=out, width=400, color_system=None, highlight=False)

    async def main() -> None:
        daemon = Daemon(load_config(_config(tmp)), console=console, live_view=live_view, max_seconds=2)
        services = (watch_and_reload, run_view) if live_view else (watch_and_reload,)
        task = asyncio.create_task(daemon.run(lambda d: build_loops(d, None), services))
        await asyncio.sleep(0.5)
        daemon.alerts.alert("medium", DRIFT, account=ACCOUNT)
        await asyncio.wait_for(task, 20)

    asyncio.run(main())
    return out.getvalue(), [json.loads(line) for line in (tmp / "log.jsonl").read_text().splitlines()]


def test_plain_output_has_one_line_per_action_and_a_line_per_other_alert(tmp_path: Path) -> None:
    text, log = _run(tmp_path, live_view=False)
    acted = [r for r in log if r["kind"] == "action"]
    assert {r["action"] for r in acted} >= {"flatten", "lockout", "alert"}
    lines = text.splitlines()
    for record in acted:
        mine = [line for line in lines if record["reason"] in line and line.split()[3] == record["action"]]
        assert len(mine) == 1, (record, text)
    for rule in ("daily_loss", "heads_up"):  # said once per action, not again as an alert line
        assert sum(rule in line for line in lines) == sum(r["rule"] == rule for r in acted), text
    assert sum(DRIFT in line for line in lines) == 1 and f"MEDIUM [{ACCOUNT}]  {DRIFT}" in text
    alerted = [r for r in log if r["kind"] == "alert"]  # the log and the webhooks still hear of them all
    assert {r["rule"] for r in alerted} >= {"daily_loss", "heads_up", None}


def test_the_live_view_shows_actions_without_alert_lines_for_them(tmp_path: Path) -> None:
    text, log = _run(tmp_path, live_view=True)
    assert any(r["kind"] == "action" and r["rule"] == "daily_loss" for r in log)
    assert "last actions" in text and "daily_loss" in text  # the view's final frame
    assert "HIGH daily_loss" not in text and "MEDIUM heads_up" not in text
    assert f"MEDIUM [{ACCOUNT}]  {DRIFT}" in text


def test_a_console_sink_can_leave_out_the_alerts_that_report_an_action() -> None:
    out = io.StringIO()
    sink = ConsoleSink(Console(file=out, width=200, color_system=None), actions=False)
    now = dt.datetime.now(dt.UTC)
    sink.send(Alert(now, "high", "daily_loss", "flattened", ACCOUNT, action="flatten"))
    sink.send(Alert(now, "critical", "daily_loss", "flatten failed after 3 attempt(s)", ACCOUNT))
    assert "flattened" not in out.getvalue() and "flatten failed" in out.getvalue()
    ConsoleSink(Console(file=out, width=200, color_system=None)).send(
        Alert(now, "high", "daily_loss", "flattened", ACCOUNT, action="flatten")
    )
    assert "flattened" in out.getvalue()  # by default a console sink prints every alert


def test_a_firing_with_two_actions_is_one_alert_for_the_log_and_the_webhooks(tmp_path: Path) -> None:
    _, log = _run(tmp_path, live_view=False)
    acted = [r["action"] for r in log if r["kind"] == "action" and r["rule"] == "daily_loss"]
    alerted = [r for r in log if r["kind"] == "alert" and r["rule"] == "daily_loss"]
    assert acted[:2] == ["flatten", "lockout"]  # one firing, one reason
    assert len(alerted) == 1 and alerted[0]["severity"] == "critical"  # daily_loss's own severity
    [heads_up] = [r for r in log if r["kind"] == "alert" and r["rule"] == "heads_up"]
    assert heads_up["severity"] == "medium"
    assert alerted[0]["text"].endswith("→ flatten, lockout until 2026-03-10 17:00 CT")
