"""The live view fits the terminal (80×24 up): one screen line per line, `…` where a cell is cut,
`none` rows for empty tables, the grace an uncovered position counts toward. Goldens under
tests/fixtures/live_view/ (regenerate with RISKC_UPDATE_GOLDENS=1)."""

from __future__ import annotations

import datetime as dt
import io
import os
from collections import deque
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from riskc.engine.adapters.projectx.intake import Message, read_recording
from riskc.engine.daemon.daemon import Activity
from riskc.engine.daemon.live_view import plan_rows, render, uncovered_grace
from riskc.engine.runner import PolicySet
from riskc.engine.sim.replay import Replay
from riskc.engine.store import Store

ROOT = Path(__file__).parents[2]
DEMO = ROOT / "examples" / "sessions" / "demo.jsonl"
GOLDENS = ROOT / "tests" / "fixtures" / "live_view"


def _daemon(tmp: Path, seconds: float) -> SimpleNamespace:
    """A daemon as the view sees it, after the demo's first ``seconds`` of recorded time."""
    policy = ROOT / "policies" / "topstep-50k.risk"  # named relatively: the hash the view shows is path-independent
    policies, diagnostics, _ = PolicySet.from_sources([("policies/topstep-50k.risk", policy.read_text())])
    assert policies is not None, diagnostics
    activity = Activity(actions=deque(maxlen=12))
    replay = Replay(policies, Store.open(tmp / "state.db"), emit=activity.actions.appendleft)
    items = list(read_recording(str(DEMO)))
    start = next(i.ts for i in items if type(i) is Message)
    for item in items:
        if type(item) is Message and item.ts > start + dt.timedelta(seconds=seconds):
            break
        replay.feed(item)
        if type(item) is Message:
            activity.messages += 1
    loop = SimpleNamespace(engine=replay.engine, activity=activity)
    return SimpleNamespace(loops=[loop], config=SimpleNamespace(broker=SimpleNamespace(kind="sim")))


def _text(daemon, width: int, height: int) -> str:
    console = Console(file=io.StringIO(), width=width, height=height, color_system=None, record=True)
    console.print(render(daemon, width, height))
    return console.export_text()


def _golden(name: str, text: str) -> None:
    path = GOLDENS / name
    if os.environ.get("RISKC_UPDATE_GOLDENS"):
        path.write_text(text)
    assert text == path.read_text()


@pytest.mark.parametrize(("width", "height"), [(80, 24), (160, 45)])
@pytest.mark.parametrize(("moment", "seconds"), [("scale-in", 35), ("lockout", 280)])
def test_the_live_view_fits_the_terminal(tmp_path, moment, seconds, width, height):
    text = _text(_daemon(tmp_path, seconds), width, height)
    lines = text.splitlines()
    assert len(lines) <= height and all(len(line) <= width for line in lines), text
    _golden(f"{moment}-{width}x{height}.txt", text)


def test_an_uncovered_position_shows_the_grace_it_counts_toward(tmp_path):
    daemon = _daemon(tmp_path, 35)
    assert uncovered_grace(daemon.loops[0].engine.policies) == dt.timedelta(seconds=30)
    text = _text(daemon, 80, 24)
    assert " / 30s" in text and "none yet" in text and "none" in text


def test_a_cut_reason_ends_in_an_ellipsis_never_mid_value_without_one(tmp_path):
    daemon = _daemon(tmp_path, 280)
    reasons = [lo.reason for lo in daemon.loops[0].engine.lockouts_at(daemon.loops[0].engine.book.now)]
    assert reasons
    for width in (80, 120, 160):
        text = _text(daemon, width, 24)
        row = next(line for line in text.splitlines() if line.startswith("│ account "))
        assert row.rstrip(" │").endswith("…") or row.rstrip(" │").endswith(reasons[-1]), row
    assert "lockout until 2026-01-1 " not in _text(daemon, 160, 45)  # cut only with an ellipsis


def test_tables_get_rows_by_priority_and_say_how_many_more():
    assert plan_rows(0, 0, 0, 10) == (1, 1, 1) or plan_rows(0, 0, 0, 10).actions == 1
    rows = plan_rows(6, 2, 12, 8)
    assert (rows.positions, rows.lockouts, rows.actions) == (6, 1, 1)
    rows = plan_rows(1, 1, 12, 8)
    assert (rows.positions, rows.lockouts, rows.actions) == (1, 1, 6)
