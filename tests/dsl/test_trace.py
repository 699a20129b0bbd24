"""Program.trace: what coverage sees of one evaluation, without touching evaluate."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from riskc.dsl import parse
from riskc.dsl.checker import check
from riskc.dsl.compiler import compile_policy, when_clauses
from riskc.dsl.format import format_expr
from riskc.engine.core.snapshot import SCHEMA, Event, Position, Snapshot

POLICY = """
rule a
  when day.realized_pnl < $0 or account.balance > $10 or day.trades > 3
  then alert "a"

rule b
  on fill
  when day.trades > 0
  then alert "b"

rule c
  for position p
  when p.qty > 1 and p.unrealized_pnl < $0
  then close p

rule d
  when day.trades / (day.trades - day.trades) > 1
  then alert "d"
"""


def program():
    result = check([("p.risk", POLICY)], SCHEMA)
    assert result.ok, [d.message for d in result.errors]
    return compile_policy(result.policies[0], result)


def snapshot(kind: str = "clock", positions=()) -> Snapshot:
    s = Snapshot(positions=tuple(positions), event=Event(kind=kind, time=dt.datetime(2026, 3, 10, tzinfo=dt.UTC)))
    s.account.balance = Decimal("50")
    s.day.trades = 2
    return s


def test_when_clauses_are_the_top_level_chain():
    rule = parse(POLICY).module.rules[0]
    assert [format_expr(c) for c in when_clauses(rule.when)] == [
        "day.realized_pnl < $0",
        "account.balance > $10",
        "day.trades > 3",
    ]
    assert [format_expr(c) for c in when_clauses(parse(POLICY).module.rules[1].when)] == ["day.trades > 0"]


def test_trace_reports_each_clause_per_target_and_the_on_filter():
    long2 = Position(symbol="MNQ", contract_id="C", size=2, qty=2, unrealized_pnl=Decimal("-5"))
    long1 = Position(symbol="ES", contract_id="D", size=1, qty=1, unrealized_pnl=Decimal("5"))
    traces = program().trace(snapshot(positions=[long2, long1]))
    a, b, c, d = traces
    assert (a.evaluated, a.outcomes) == (True, ((False, True, False),))
    assert (b.evaluated, b.outcomes) == (False, ())  # `on fill`, and this is a clock tick
    assert c.outcomes == ((True, True), (False, False))
    assert d.outcomes == ((None,),)  # the clause raised (division by zero)


def test_trace_does_not_change_what_evaluate_decides():
    p = program()
    s = snapshot("fill")
    before = p.evaluate(s)
    p.trace(s)
    assert p.evaluate(s) == before
