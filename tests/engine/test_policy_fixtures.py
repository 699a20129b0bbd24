"""Policy tests: every fixture file of the standard library and the ready-made policies passes,
every standard rule has at least three cases, and the fixture format behaves as documented in
docs/testing.md (subset matching, one-to-one pairing, errors with their line)."""

from __future__ import annotations

import datetime as dt
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from riskc.dsl.library import library_rules
from riskc.engine.cli.test_cmd import describe_failure
from riskc.engine.testing.policy_tests import Coverage, Expected, FixtureError, Runner, load_fixture, pair_up

REPO = Path(__file__).resolve().parents[2]
FIXTURES = sorted((REPO / "stdlib_rules" / "tests").glob("*.yaml")) + sorted(
    (REPO / "policies" / "tests").glob("*.yaml")
)


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner()


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_fixture_file_passes(path: Path, runner: Runner):
    result = runner.run_path(path)
    problems = result.errors + [describe_failure(result.path, c) for c in result.cases if c.status != "passed"]
    assert not problems, "\n".join(problems)
    assert result.cases, "a fixture file without cases tests nothing"


def test_every_standard_rule_has_three_cases():
    cases: Counter[str] = Counter()
    for path in (REPO / "stdlib_rules" / "tests").glob("*.yaml"):
        fixture = load_fixture(path)
        from riskc.engine.core.policy_loader import load_sources

        program = load_sources([(fixture.policy_path, fixture.policy_source)]).programs[0]
        for name in {instance.rule.id for instance in program.rules}:
            cases[name] += len(fixture.cases)
    thin = {rule.name: cases[rule.name] for rule in library_rules() if cases[rule.name] < 3}
    assert not thin, f"standard rules with fewer than 3 cases: {thin}"


def test_every_ready_made_policy_has_fixtures():
    tested = {Path(load_fixture(p).policy_path).resolve() for p in (REPO / "policies" / "tests").glob("*.yaml")}
    untested = [p.name for p in (REPO / "policies").glob("*.risk") if p.resolve() not in tested]
    assert not untested


def test_the_cases_exercise_every_standard_rule_and_clause():
    coverage = Coverage()
    runner = Runner(coverage)
    for path in (REPO / "stdlib_rules" / "tests").glob("*.yaml"):
        runner.run_path(path)
    gaps = [(e.rule, text) for e in coverage.entries() for i, text in enumerate(e.clauses) if not e.clause_covered(i)]
    assert not gaps
    assert {e.rule for e in coverage.entries() if e.fired} == {r.name for r in library_rules()}


# ---- the format --------------------------------------------------------------------------------------


def write(tmp_path: Path, text: str, name: str = "case.yaml") -> Path:
    path = tmp_path / "tests" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def run(tmp_path: Path, text: str):
    return Runner().run_path(write(tmp_path, text))


DAILY_LOSS = """\
    policy: |
      use daily_loss(limit: $1,000)
    base:
      now: 2026-03-10T15:00:00Z
    cases:
"""


def test_expected_actions_match_on_the_keys_they_give(tmp_path):
    result = run(
        tmp_path,
        DAILY_LOSS
        + """\
      - name: breach
        snapshot: {day: {realized_pnl: -1000}}
        expect:
          - {action: flatten, reason: "<= -$1,000.00"}
          - {rule: daily_loss, action: lockout, until: "2026-03-10T17:00:00-05:00"}
    """,
    )
    assert [c.status for c in result.cases] == ["passed"]


def test_an_unexpected_extra_action_fails(tmp_path):
    result = run(
        tmp_path,
        DAILY_LOSS
        + """\
      - name: only the flatten expected
        snapshot: {day: {realized_pnl: -1000}}
        expect: [{action: flatten}]
    """,
    )
    case = result.cases[0]
    assert case.status == "failed"
    assert [r["action"] for r in case.unexpected] == ["lockout"]
    assert not case.missing


def test_a_wrong_value_is_missing_and_unexpected(tmp_path):
    result = run(
        tmp_path,
        DAILY_LOSS
        + """\
      - name: wrong end
        snapshot: {day: {realized_pnl: -1000}}
        expect:
          - {action: flatten}
          - {action: lockout, until: 2026-03-10T23:00:00Z}
    """,
    )
    case = result.cases[0]
    assert [e.fields["action"] for e in case.missing] == ["lockout"]
    assert [r["until"] for r in case.unexpected] == ["2026-03-10T22:00:00+00:00"]


def test_pairing_is_one_to_one_and_order_free():
    records = ({"rule": "a", "action": "close", "symbol": "MNQ"}, {"rule": "a", "action": "close", "symbol": "ES"})
    general, specific = Expected({"action": "close"}, 1), Expected({"symbol": "MNQ"}, 2)
    assert pair_up((general, specific), records) == ((), ())  # a greedy pairing would leave `specific` unmatched
    assert pair_up((general, general, general), records) == ((general,), ())


def test_prices_compare_as_decimals_and_instants_across_offsets():
    record = {"action": "move_stop", "price": "21000.50", "until": "2026-03-10T22:00:00+00:00"}
    assert Expected({"price": __import__("decimal").Decimal("21000.5")}, 1).matches(record)
    assert Expected({"until": dt.datetime(2026, 3, 10, 17, tzinfo=dt.timezone(dt.timedelta(hours=-5)))}, 1).matches(
        record
    )


def test_cases_merge_over_the_base_snapshot(tmp_path):
    result = run(
        tmp_path,
        """\
    policy: |
      use max_contracts(limit: 2)
    base:
      now: 2026-03-10T15:00:00Z
      account: {balance: 50000, can_trade: true}
      positions:
        - {contract_id: CON.F.US.MNQ.H26, size: 3, avg_price: 21000}
    cases:
      - name: base positions apply
        expect: [{action: reduce_total, to: 2}]
      - name: a list replaces the base's
        snapshot: {positions: [], account: {balance: 1}}
        expect: []
    """,
    )
    assert [c.status for c in result.cases] == ["passed", "passed"]


def test_a_mistake_in_one_case_is_reported_with_its_line_and_the_others_run(tmp_path):
    result = run(
        tmp_path,
        DAILY_LOSS
        + """\
      - name: typo in the snapshot
        snapshot: {day: {realised_pnl: -1000}}
        expect: []
      - name: typo in an expectation
        expect: [{acton: flatten}]
      - name: fine
        expect: []
    """,
    )
    assert [c.status for c in result.cases] == ["error", "passed"]
    assert result.cases[0].error.endswith(
        ":7: case 'typo in the snapshot': snapshot day.realised_pnl: unknown key `realised_pnl`;"
        " did you mean `realized_pnl`?"
    )
    assert any(":10: case 'typo in an expectation': unknown key `acton`" in e for e in result.errors)
    assert not result.ok


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("policy: x\ncases: [\n", ":3: not valid YAML"),
        ("policy: 'use daily_loss(limit: $5)'\ncases: []\nextra: 1\n", ":3: extra: unknown key"),
        ("cases: []\n", ":1: give the policy under test"),
        ("policy_file: nowhere.risk\ncases: []\n", ":1: cannot read policy_file"),
        ("- a list\n", ":1: a policy test file is a mapping"),
    ],
)
def test_file_errors_name_the_line(tmp_path, text, where):
    with pytest.raises(FixtureError) as caught:
        load_fixture(write(tmp_path, text))
    assert where in str(caught.value)


def test_an_inline_policy_keeps_its_place_in_the_file(tmp_path):
    result = run(
        tmp_path,
        """\
    # a comment
    policy: |
      use daily_loss(limit: 5)
    cases: []
    """,
    )
    assert result.errors[0].splitlines()[1].startswith(f"{tmp_path / 'tests' / 'case.yaml'}:3:25: risk_unit_error")


def test_a_policy_file_is_read_relative_to_the_fixture(tmp_path):
    (tmp_path / "mine.risk").write_text("use daily_loss(limit: $100)\n", encoding="utf-8")
    result = run(
        tmp_path,
        """\
    policy_file: ../mine.risk
    cases:
      - name: breach
        snapshot: {now: 2026-03-10T15:00:00Z, day: {realized_pnl: -100}}
        expect: [{action: flatten}, {action: lockout}]
    """,
    )
    assert result.ok


# ---- event sequences -----------------------------------------------------------------------------------


EVENTS = """\
    policy: |
      use stop_required(grace: 10s)
    cases:
      - name: grace
        events:
          - {at: 2026-03-10T15:00:00Z, account: {id: 1, balance: 50000}}
          - {at: +1s, position: {contract_id: CON.F.US.MNQ.H26, size: 1, avg_price: 21000}}
"""


def test_events_run_on_the_engine_clock_up_to_until(tmp_path):
    result = run(
        tmp_path,
        EVENTS
        + """\
        until: +15s
        expect: [{action: close, ts: 2026-03-10T15:00:11Z}]
    """,
    )
    assert result.ok, [describe_failure(result.path, c) for c in result.cases]


def test_without_until_the_clock_stops_at_the_last_event(tmp_path):
    result = run(
        tmp_path,
        EVENTS
        + """\
        expect: []
    """,
    )
    assert result.ok


def test_a_recording_line_can_be_pasted_as_an_event(tmp_path):
    result = run(
        tmp_path,
        """\
    policy: |
      use auth_guard
    cases:
      - name: raw
        events:
          - {ts: "2025-10-29T15:40:00+00:00", hub: user, target: GatewayUserAccount,
             args: [{action: 1, data: {id: 13298777, name: X, balance: 50000.0, canTrade: false}}]}
        expect: [{action: lockout, condition: while}]
    """,
    )
    assert result.ok, [describe_failure(result.path, c) for c in result.cases] + result.errors


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ("- {at: +1s, account: {balance: 1}}", "relative, but there is no earlier time"),
        ("- {at: 2026-03-10T15:00:00Z, account: {balance: 1}, quote: {contract_id: X}}", "give exactly one of"),
        ("- {at: 2026-03-10T15:00:00Z, fill: {}}", "unknown key `fill`"),
        ("- {at: 2026-03-10T15:00:00Z, order: {id: 1, contract_id: X, type: stopp}}", "events.0.order.type"),
        (
            "- {at: 2026-03-10T15:00:00Z, account: {balance: 1}}\n          - {at: 2026-03-10T14:00:00Z, account: {balance: 1}}",  # noqa: E501
            "goes back in time",
        ),
        ("- {ts: 2026-03-10T15:00:00Z, target: GatewayNope, args: [1]}", "unknown target"),
    ],
)
def test_event_mistakes_are_case_errors_with_a_line(tmp_path, events, message):
    result = run(
        tmp_path,
        f"""\
    policy: |
      use auth_guard
    cases:
      - name: bad
        events:
          {events}
        expect: []
    """,
    )
    assert any(message in e and ":6:" in e or message in e and ":7:" in e for e in result.errors), result.errors


def test_a_case_has_a_snapshot_or_events_not_both(tmp_path):
    result = run(
        tmp_path,
        EVENTS
        + """\
        snapshot: {now: 2026-03-10T15:00:00Z}
        expect: []
    """,
    )
    assert "give `snapshot` or `events`, not both" in result.errors[0]
