"""`riskc diff OLD NEW SESSION...`: both policy sets replayed as `riskc replay` does; the first
divergence with both reasons, per-rule counts, each day's simulated realized P&L; --json."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from click.testing import CliRunner

from riskc.engine.cli.main import main
from riskc.engine.runner import PolicySet
from riskc.engine.sim.diff import diff_session

ROOT = Path(__file__).parents[2]
POLICY = ROOT / "policies" / "topstep-50k.risk"
SESSIONS = ROOT / "examples" / "sessions"
LOCKOUT = SESSIONS / "daily-loss-lockout.jsonl"


def _looser(tmp: Path) -> Path:
    path = tmp / "looser.risk"
    path.write_text(POLICY.read_text().replace("use daily_loss(limit: $1,000)", "use daily_loss(limit: $1,500)"))
    return path


def test_a_looser_daily_loss_shows_where_the_actions_part_and_what_it_costs(tmp_path):
    result = CliRunner().invoke(main, ["diff", str(POLICY), str(_looser(tmp_path)), str(LOCKOUT)])
    assert result.exit_code == 1, result.output
    out = result.output
    assert "the actions differ" in out and "first divergence, action 1:" in out
    assert "old  2025-11-12 09:09:00 CST  flatten account (daily_loss)" in out
    assert "day.realized_pnl = -$1,012.21 <= -$1,000.00" in out and "new  (no action from here on)" in out
    assert "daily_loss                 flatten       old   1  new   0  (-1)" in out
    assert "realized P&L, trading day 2025-11-12: old -$997.06, new -$1,012.95  (-$15.89)" in out


def test_the_same_policy_over_a_folder_of_sessions_is_the_same_and_exits_0():
    result = CliRunner().invoke(main, ["diff", str(POLICY), str(POLICY), str(SESSIONS)])
    assert result.exit_code == 0, result.output
    assert f"the same actions in {len(list(SESSIONS.glob('*.jsonl')))} session(s)" in result.output


def test_diff_json_has_both_reasons_counts_and_days(tmp_path):
    result = CliRunner().invoke(main, ["diff", str(POLICY), str(_looser(tmp_path)), str(LOCKOUT), "--json"])
    document = json.loads(result.stdout)
    [session] = document["sessions"]
    assert document["same"] is False and session["first_divergence"]["index"] == 0
    assert session["first_divergence"]["old"]["action"] == "flatten" and session["first_divergence"]["new"] is None
    assert session["first_divergence"]["old"]["ts"].endswith("+00:00")  # JSON stays UTC
    assert {"rule": "daily_loss", "action": "lockout", "old": 1, "new": 0} in session["rules"]
    assert session["days"] == [
        {"trading_day": "2025-11-12", "old_realized_pnl": "-997.06", "new_realized_pnl": "-1012.95"}
    ]


def test_diff_replays_exactly_as_replay_does(tmp_path):
    """The records of each side are `riskc replay --json`'s, byte for byte."""
    policies, _, _ = PolicySet.from_paths([POLICY])
    diff = diff_session(policies, policies, LOCKOUT)
    replayed = CliRunner().invoke(main, ["replay", str(LOCKOUT), "--policy", str(POLICY), "--json"])
    lines = [json.loads(line) for line in replayed.stdout.splitlines()]
    assert list(diff.old.records) == lines == list(diff.new.records)
    assert diff.same and diff.days()[0][1] == Decimal("-997.06")


def test_diff_refuses_a_policy_that_does_not_check_and_a_missing_session(tmp_path):
    broken = tmp_path / "broken.risk"
    broken.write_text("use daily_loss(limit: 5)\n")
    result = CliRunner().invoke(main, ["diff", str(POLICY), str(broken), str(LOCKOUT)])
    assert result.exit_code == 2 and "NEW" in result.stderr and "risk_unit_error" in result.stderr
    missing = CliRunner().invoke(main, ["diff", str(POLICY), str(POLICY), str(tmp_path / "nope.jsonl")])
    assert missing.exit_code == 2 and "no such file" in missing.output
