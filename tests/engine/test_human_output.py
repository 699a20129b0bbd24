"""What people read (issue 18): one time format (the account's zone with its abbreviation) in
`run --plain` lines and alert lines, no hard wraps when the output is not a terminal, `run`
counting messages as `replay` does, and `replay` reporting a malformed line once."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from pathlib import Path
from zoneinfo import ZoneInfo

from click.testing import CliRunner
from rich.console import Console

from riskc.engine.cli.main import main
from riskc.engine.core.timefmt import human_time
from riskc.engine.daemon.alerts import Alert, ConsoleSink

ROOT = Path(__file__).parents[2]
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d C[SD]T  ")


def test_human_time_is_zoned_with_the_date_only_where_it_is_not_obvious():
    chicago = ZoneInfo("America/Chicago")
    winter = dt.datetime(2026, 1, 14, 14, 45, 42, tzinfo=dt.UTC)
    assert human_time(winter, chicago) == "2026-01-14 08:45:42 CST"
    assert human_time(winter, "America/Chicago", today=winter + dt.timedelta(hours=1)) == "08:45:42 CST"
    assert human_time(winter, chicago, today=winter + dt.timedelta(days=1)) == "2026-01-14 08:45:42 CST"
    assert human_time(dt.datetime(2026, 3, 10, 20, 8, tzinfo=dt.UTC), chicago) == "2026-03-10 15:08:00 CDT"


def test_an_alert_line_is_in_the_accounts_zone():
    out = io.StringIO()
    sink = ConsoleSink(Console(file=out, width=200, color_system=None))
    sink.zone = ZoneInfo("America/Chicago")
    sink.send(Alert(dt.datetime(2026, 1, 14, 16, 12, 35, tzinfo=dt.UTC), "high", None, "hub lost", 1))
    assert out.getvalue().startswith("2026-01-14 10:12:35 CST HIGH [1]  hub lost")


def _demo(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.delenv("RISKC_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    env = {"PROJECT_X_USERNAME": "", "PROJECT_X_API_KEY": ""}
    return CliRunner().invoke(main, ["run", "--plain", "--speed", "0", "--max-time", "60"], env=env)


def test_run_plain_lines_are_zoned_unwrapped_and_count_messages_as_replay_does(tmp_path, monkeypatch):
    result = _demo(tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    actions = [line for line in lines if "daily_loss:" in line or "stop_required [" in line]
    assert actions and all(STAMP.match(line) for line in actions), actions
    assert "2026-01-14 08:45:42 CST  close" in result.output  # the demo's first close, in Chicago time
    # Not a terminal: long lines stay whole (the banner, the summary with its path).
    assert any(line.startswith("riskc demo:") and line.endswith("Ctrl-C stops it.") for line in lines), lines[:3]
    stopped = next(line for line in lines if line.startswith("stopped:"))
    assert stopped.endswith(str(tmp_path / "riskc" / "demo.db"))
    replayed = CliRunner().invoke(
        main,
        ["replay", str(ROOT / "examples/sessions/demo.jsonl"), "--policy", str(ROOT / "policies" / "topstep-50k.risk")],
    )
    count = re.search(r"([\d,]+) messages", replayed.output).group(1)
    assert stopped.startswith(f"stopped: {count} messages, ")


def test_replay_reports_each_malformed_line_once(tmp_path):
    session = ROOT / "examples" / "sessions" / "daily-loss-lockout.jsonl"
    policy = ROOT / "policies" / "topstep-50k.risk"
    text = CliRunner().invoke(main, ["replay", str(session), "--policy", str(policy)])
    assert text.exit_code == 0
    assert text.stdout.count("line 134: not JSON") == 1 and "line 134" not in text.stderr
    as_json = CliRunner().invoke(main, ["replay", str(session), "--policy", str(policy), "--json"])
    # --json: stderr is JSON lines too (issue 16), one per malformed line, with its number
    malformed = [json.loads(line)["malformed"] for line in as_json.stderr.splitlines() if '"malformed": {' in line]
    assert [m["line"] for m in malformed].count(134) == 1 and malformed[0]["reason"].startswith("not JSON")
    assert "line 134" not in as_json.stdout
