"""A rule that cannot be evaluated is always reported (PRODUCT.md §8): under `on_error flatten`
the flatten acts on what is open, and the alert says why even when nothing is open."""

from __future__ import annotations

from gateway_messages import MNQ
from test_engine import Harness, f, summary

from riskc.engine.store import Store

BROKEN = """policy "test"
  on_error flatten

rule ratio
  when account.balance / (account.balance - account.balance) > 1
  then alert "never"
"""


def test_a_rule_error_on_a_flat_account_is_alerted(tmp_path) -> None:
    with Store.open(tmp_path / "state.db") as store:
        h = Harness(store, BROKEN)
        assert h.feed(f.account(0, 50000)) == []
        assert [(r["rule"], r["action"]) for r in h.records] == [("ratio", "alert")]
        assert "could not be evaluated" in h.alerts[0]["reason"] and h.alerts[0]["severity"] == "critical"


def test_a_rule_error_with_a_position_flattens_and_alerts(tmp_path) -> None:
    with Store.open(tmp_path / "state.db") as store:
        h = Harness(store, BROKEN)
        calls = h.feed(f.account(0, 50000), f.position(1, MNQ, 1, 21000))
        assert summary(calls) == [("close", MNQ, None, None)]
        assert {r["action"] for r in h.records} == {"flatten", "alert"}


def test_a_constant_that_cannot_be_computed_is_a_run_time_rule_error_not_a_crash(tmp_path) -> None:
    source = 'policy "test"\n\nrule zero\n  when 0.5 == -(3s / 0s)\n  then alert "never"\n'
    with Store.open(tmp_path / "state.db") as store:
        h = Harness(store, source)  # compiles: the division is left for run time
        h.feed(f.account(0, 50000))
        assert [(r["rule"], r["action"]) for r in h.records] == [("zero", "alert")]
        assert "could not be evaluated" in h.records[0]["reason"]
