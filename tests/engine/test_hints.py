"""Messages that say how to fix the mistake (issue 18): symbols are upper case, clocks are 24-hour,
a unit error says what it has and wants, a misspelt snapshot key gets a did-you-mean in `eval`
and in policy tests (not pydantic's "Extra inputs are not permitted")."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from riskc.engine.cli.main import main

ROOT = Path(__file__).parents[2]


def _check(tmp: Path, source: str):
    path = tmp / "p.risk"
    path.write_text(source)
    return CliRunner().invoke(main, ["check", str(path)])


@pytest.mark.parametrize(
    ("source", "hint"),
    [
        ("use symbol_block(symbols: [cl, NG])\n", "help: symbols are upper case: write `CL`"),
        ("rule r\n  for position p\n  when p.symbol == mnq\n  then close p\n", "write `MNQ`"),
        ("use trading_hours(start: 8:30am, end: 15:00)\n", "help: write 08:30 for 8:30am"),
        ("use trading_hours(start: 8:30, end: 3:08pm)\n", "help: write 15:08 for 3:08pm"),
    ],
)
def test_a_hint_says_how_to_write_it(tmp_path, source, hint):
    result = _check(tmp_path, source)
    assert result.exit_code == 1 and hint in result.stderr, result.stderr


def test_a_twelve_hour_clock_is_named_as_such(tmp_path):
    assert "clock times are 24-hour, without `am`" in _check(tmp_path, "use trading_hours(start: 8:30am)\n").stderr


@pytest.mark.parametrize(
    ("when", "have", "want"),
    [
        ("p.qty > $5", "have: contracts on the left, money on the right", "want: one unit on both sides"),
        ("p.unrealized_pnl + p.qty > $5", "have: money + contracts", "want: money + money"),
    ],
)
def test_every_unit_error_has_have_and_want(tmp_path, when, have, want):
    result = _check(tmp_path, f"rule r\n  for position p\n  when {when}\n  then close p\n")
    assert "risk_unit_error" in result.stderr and have in result.stderr and want in result.stderr, result.stderr


def test_eval_suggests_the_snapshot_key_that_was_meant(tmp_path):
    snapshot = tmp_path / "s.yaml"
    snapshot.write_text(
        (ROOT / "examples" / "snapshots" / "breach.yaml").read_text().replace("realized_pnl", "realised_pnl")
    )
    result = CliRunner().invoke(
        main, ["eval", str(ROOT / "policies" / "topstep-50k.risk"), "--snapshot", str(snapshot)]
    )
    assert result.exit_code == 1
    assert "day.realised_pnl: unknown key `realised_pnl`; did you mean `realized_pnl`?" in result.stderr
    assert "Extra inputs" not in result.output


def test_a_policy_test_suggests_the_snapshot_key_that_was_meant(tmp_path):
    fixture = tmp_path / "t.yaml"
    fixture.write_text(
        "policy: 'use daily_loss(limit: $500)'\n"
        "cases:\n"
        "  - name: typo\n"
        "    snapshot: {now: 2026-03-10T15:00:00Z, day: {realised_pnl: -600}}\n"
        "    expect: []\n"
        "  - name: a case key\n"
        "    snapshots: {now: 2026-03-10T15:00:00Z}\n"
        "    expect: []\n"
    )
    result = CliRunner().invoke(main, ["test", str(fixture)])
    assert result.exit_code == 1
    assert "snapshot day.realised_pnl: unknown key `realised_pnl`; did you mean `realized_pnl`?" in result.output
    assert "unknown key `snapshots`; did you mean `snapshot`?" in result.output
