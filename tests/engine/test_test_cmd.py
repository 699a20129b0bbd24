"""`riskc test` through the CLI: exit codes, pytest-like output, --coverage, --stdlib."""

from __future__ import annotations

import textwrap
from pathlib import Path

from click.testing import CliRunner

from riskc.engine.cli.main import main

REPO = Path(__file__).resolve().parents[2]


def riskc(*args: str):
    return CliRunner().invoke(main, list(args))


def fixture(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / "tests" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


PASSING = """\
    policy: |
      use daily_loss(limit: $1,000)
    base:
      now: 2026-03-10T15:00:00Z
    cases:
      - name: quiet
        expect: []
      - name: breach
        snapshot: {day: {realized_pnl: -1000}}
        expect: [{action: flatten}, {action: lockout, until: 2026-03-10T22:00:00Z}]
"""

FAILING = """\
    policy: |
      use daily_loss(limit: $1,000)
    base:
      now: 2026-03-10T15:00:00Z
    cases:
      - name: quiet
        expect: []
      - name: wrong lockout end
        snapshot: {day: {realized_pnl: -1000}}
        expect: [{action: flatten}, {action: lockout, until: 2026-03-10T23:00:00Z}]
"""


def test_passing_fixtures_exit_0_with_a_dot_per_case(tmp_path):
    fixture(tmp_path, "ok.yaml", PASSING)
    result = riskc("test", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / 'tests' / 'ok.yaml'} .." in result.output
    assert "2 passed in" in result.output


def test_a_failing_case_exits_1_with_its_line_the_diff_and_the_reason(tmp_path):
    path = fixture(tmp_path, "bad.yaml", FAILING)
    result = riskc("test", str(path))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert f"{path} .F" in lines
    assert f"FAILED {path}:8 wrong lockout end" in lines
    assert "  - {action: lockout, until: 2026-03-10T23:00:00+00:00}    (expected, not planned)" in lines
    assert (
        "  + {rule: daily_loss, action: lockout, until: 2026-03-10T22:00:00+00:00}    (planned, not expected)" in lines
    )
    assert any(
        line.startswith("      because daily_loss: day.realized_pnl = -$1,000.00 <= -$1,000.00") for line in lines
    )
    assert "    {rule: daily_loss, action: flatten}    (as expected)" in lines
    assert "1 failed, 1 passed in" in result.output


def test_a_broken_file_is_reported_and_the_others_still_run(tmp_path):
    broken = fixture(tmp_path, "a_broken.yaml", "policy: |\n  use daily_loss(limit: $1,000)\ncases: [\n")
    fixture(tmp_path, "b_ok.yaml", PASSING)
    result = riskc("test", str(tmp_path))
    assert result.exit_code == 1
    assert f"ERROR {broken}:4: not valid YAML" in result.output
    assert "2 passed, 1 error in" in result.output


def test_a_policy_that_does_not_check_is_an_error_with_the_diagnostic(tmp_path):
    path = fixture(tmp_path, "x.yaml", "policy: |\n  use daily_loss(limit: 5)\ncases: []\n")
    result = riskc("test", str(path))
    assert result.exit_code == 1
    assert f"{path}:2:25: risk_unit_error" in result.output


def test_usage_errors_exit_2(tmp_path):
    assert riskc("test", str(tmp_path / "missing")).exit_code == 2
    assert riskc("test").exit_code == 2
    (tmp_path / "empty").mkdir()
    result = riskc("test", str(tmp_path / "empty"))
    assert result.exit_code == 2
    assert "no policy tests" in result.output


def test_directories_are_searched_for_yaml_under_tests_only(tmp_path):
    fixture(tmp_path, "ok.yaml", PASSING)
    (tmp_path / "snapshot.yaml").write_text("now: 2026-03-10T15:00:00Z\n", encoding="utf-8")  # not a test
    result = riskc("test", str(tmp_path))
    assert result.exit_code == 0
    assert "snapshot.yaml" not in result.output


def test_coverage_reports_rules_and_when_clauses(tmp_path):
    fixture(
        tmp_path,
        "cov.yaml",
        """\
        policy: |
          use max_contracts(limit: 2)
        base:
          now: 2026-03-10T15:00:00Z
        cases:
          - name: flat
            expect: []
          - name: over
            snapshot: {positions: [{contract_id: CON.F.US.MNQ.H26, size: 3, avg_price: 21000}]}
            expect: [{action: reduce_total, to: 2}]
    """,
    )
    result = riskc("test", "--coverage", str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "coverage: 1/1 rules evaluated, 1/1 fired; 1/2 `when` clauses seen both true and false" in lines
    assert "  max_contracts (stdlib_rules/limits.risk): when evaluated 2x, fired 1x" in lines
    assert "      true 1, false 1: count == gross and account.open_contracts > limit" in lines
    assert "      true 0, false 2: count == net and abs(account.net_contracts) > limit  <- never true" in lines


def test_the_standard_library_tests_ship_with_riskc():
    result = riskc("test", "--stdlib")
    assert result.exit_code == 0, result.output
    assert "daily_loss.yaml" in result.output and " failed" not in result.output


def test_the_repository_policies_pass():
    result = riskc("test", str(REPO / "stdlib_rules"), str(REPO / "policies"))
    assert result.exit_code == 0, result.output


def test_coverage_counts_event_sequence_cases(tmp_path):
    """A rule exercised only through `events:` (the engine's own path) is counted, `on fill` ones too."""
    fixture(
        tmp_path,
        "events.yaml",
        """\
        policy: |
          use stop_required(grace: 30s)
          rule no_adding
            on fill
            for position p
            when event.adds_to(p) and p.qty > 5
            then alert "big"
        cases:
          - name: the grace period runs out
            events:
              - {at: 2026-03-10T15:00:00Z, account: {id: 1, balance: 50000}}
              - {at: +1s, quote: {contract_id: CON.F.US.MNQ.H26, last: 21000}}
              - {at: +1s, trade: {contract_id: CON.F.US.MNQ.H26, side: buy, size: 1, price: 21000}}
              - {at: +0s, position: {contract_id: CON.F.US.MNQ.H26, size: 1, avg_price: 21000}}
            until: +35s
            expect:
              - {rule: stop_required, action: close, symbol: MNQ, ts: 2026-03-10T15:00:32Z}
          - name: a second fill adds to the position
            events:
              - {at: 2026-03-10T15:00:00Z, account: {id: 1, balance: 50000}}
              - {at: +1s, quote: {contract_id: CON.F.US.MNQ.H26, last: 21000}}
              - {at: +0s, position: {contract_id: CON.F.US.MNQ.H26, size: 1, avg_price: 21000}}
              - {at: +1s, trade: {contract_id: CON.F.US.MNQ.H26, side: buy, size: 1, price: 21000}}
              - {at: +0s, position: {contract_id: CON.F.US.MNQ.H26, size: 2, avg_price: 21000}}
            expect: []
    """,
    )
    result = riskc("test", "--coverage", str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    stop = next(line for line in lines if line.startswith("  stop_required "))
    assert "fired 0x" not in stop and "fired" in stop, result.output
    fill = next(line for line in lines if line.startswith("  no_adding "))
    assert "never evaluated" not in fill and "when evaluated" in fill, result.output
