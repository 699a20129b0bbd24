"""The compiled program remembers what ``plan`` keeps by a key of its own (``plan_keyed``: the
rules that held and what is not a literal in their actions, ``_key_N``), not by every value of
every action. The key must tell apart any two lists of actions that plan differently: over a
run of random snapshots against one program (its memo warm with the earlier ones), each
decision's actions are the ones planned afresh from the same actions, in the same order."""

from __future__ import annotations

from eval_strategies import SCHEMA, policies, snapshots
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from riskc.dsl import decision
from riskc.dsl.checker import check
from riskc.dsl.compiler import compile_policy
from riskc.dsl.library import stdlib_sources


def _fresh(program, snapshot) -> tuple:
    """The decision's actions with nothing remembered: plan run on the actions themselves."""
    actions = []
    for index, target in program._evaluate(snapshot):
        if index >= 0:
            actions += program._actions[index](snapshot, target, "")
    return decision._plan(actions)


def _values(actions) -> tuple:
    return tuple(a._replace(why="") for a in actions)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=policies(), batch=st.lists(snapshots(), min_size=2, max_size=10))
def test_remembered_plans_are_the_plans(text, batch):
    result = check([("generated.risk", text)], SCHEMA, stdlib_sources())
    if not result.ok:
        return
    program = compile_policy(result.policies[0], result)
    for snapshot in batch:
        have = program.evaluate(snapshot)
        if have.errors:  # a rule raised: planned by the actions' values (plan), not by the key
            event("a rule raised")
            continue
        assert _values(have.actions) == _values(_fresh(program, snapshot)), text
        event(f"{len(have.actions)} actions")
    event(f"{len(program._plans)} plans remembered")
    # (Checked to fail with _varying_fields returning nothing: the memo then mixes up targets.)
