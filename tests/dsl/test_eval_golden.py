"""Golden evaluation cases: a policy and a snapshot in, the planned action records out.

Each case under ``tests/fixtures/eval/`` is ``NAME.snapshot.yaml`` (the `riskc eval --snapshot`
format, loaded by ``engine.snapshot_file``) with either ``NAME.risk`` (the policy) or
``NAME.policy`` (one line: a policy path in the repository), and ``NAME.expected.yaml``: the
rules that fired and the §6.2 action records, reasons included. Regenerate with
``RISKC_UPDATE_GOLDEN=1`` and read the diff. Every case is also checked against the reference
interpreter, and the cases together must cover every action kind and every snapshot field.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import os
from decimal import Decimal
from pathlib import Path

import pytest
from interpreter import Interpreter, comparable
from ruamel.yaml import YAML

from riskc.dsl import ast
from riskc.dsl.checker import check
from riskc.dsl.compiler import compile_policy
from riskc.dsl.decision import KIND_ORDER
from riskc.dsl.library import stdlib_sources
from riskc.dsl.walk import walk
from riskc.engine.core.snapshot import EVENT_KIND_FIELDS, SCHEMA
from riskc.engine.testing.snapshot_file import load_snapshot

REPO = Path(__file__).resolve().parents[2]
CASES_DIR = REPO / "tests" / "fixtures" / "eval"
CASES = sorted(p.name.removesuffix(".snapshot.yaml") for p in CASES_DIR.glob("*.snapshot.yaml"))
UPDATE = os.environ.get("RISKC_UPDATE_GOLDEN") == "1"


def policy_source(name: str) -> tuple[str, str]:
    own = CASES_DIR / f"{name}.risk"
    if own.exists():  # paths relative to the repository: the goldens quote them in run-time errors
        return own.relative_to(REPO).as_posix(), own.read_text(encoding="utf-8")
    path = REPO / (CASES_DIR / f"{name}.policy").read_text(encoding="utf-8").strip()
    return path.relative_to(REPO).as_posix(), path.read_text(encoding="utf-8")


def evaluate(name: str):
    result = check([policy_source(name)], SCHEMA, stdlib_sources())
    assert result.ok, [d.message for d in result.errors]
    policy = result.policies[0]
    settings = policy.settings
    snapshot = load_snapshot(
        CASES_DIR / f"{name}.snapshot.yaml", timezone=settings.timezone, day_starts=settings.trading_day_starts
    )
    return result, policy, snapshot, compile_policy(policy, result).evaluate(snapshot)


def outcome(decision, snapshot) -> dict:
    fired = [f.rule + (f" [{f.target}]" if f.target else "") for f in (*decision.errors, *decision.fired)]
    return {"fired": fired, "actions": decision.records(snapshot.event.time or snapshot.session.now)}


def dump(data: dict) -> str:
    yaml = YAML()
    yaml.width = 4096
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


@pytest.mark.parametrize("name", CASES)
def test_eval_golden(name):
    _, _, snapshot, decision = evaluate(name)
    expected_path = CASES_DIR / f"{name}.expected.yaml"
    have = dump(outcome(decision, snapshot))
    if UPDATE:
        expected_path.write_text(have, encoding="utf-8")
    assert expected_path.exists(), f"no {expected_path.name}: run with RISKC_UPDATE_GOLDEN=1"
    assert have == expected_path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", CASES)
def test_eval_golden_matches_interpreter(name):
    result, policy, snapshot, decision = evaluate(name)
    reference = Interpreter(policy, result).run(snapshot)
    assert comparable(decision.actions) == comparable(reference.actions)
    assert [(f.rule, f.target) for f in decision.fired] == list(reference.fired)


def _expected(name: str) -> dict:
    return YAML(typ="safe").load((CASES_DIR / f"{name}.expected.yaml").read_text(encoding="utf-8"))


def test_cases_cover_every_action_kind():
    kinds = {record["action"] for name in CASES for record in _expected(name)["actions"]}
    assert not set(KIND_ORDER) - kinds, sorted(set(KIND_ORDER) - kinds)


def test_cases_cover_every_snapshot_field():
    read = set()
    for name in CASES:
        result = check([policy_source(name)], SCHEMA, stdlib_sources())
        for instance in result.policies[0].instances:
            binder = instance.rule.binder
            for part in (instance.rule.when, *instance.rule.actions):
                loops = _loop_variables(part)
                read |= {_path(node, binder, loops) for node in walk(part) if isinstance(node, ast.Field)}
            read |= {node.id for node in walk(instance.rule.when) if isinstance(node, ast.Name)}
    missing = sorted(_schema_paths() - read)
    assert not missing, missing


_ITEM_KIND = {"positions": "position", "orders": "order", "trades": "trade"}


def _loop_variables(part) -> dict[str, str]:
    """Aggregate variables by the record they range over: `t` in `for t in trades` is a trade."""
    return {
        node.var.text: _ITEM_KIND[node.items.id]
        for node in walk(part)
        if isinstance(node, ast.Aggregate) and isinstance(node.items, ast.Name) and node.items.id in _ITEM_KIND
    }


def _path(node: ast.Field, binder: ast.Binder | None, loops: dict[str, str]) -> str:
    if isinstance(node.obj, ast.Name):
        owner = loops.get(node.obj.id, node.obj.id)
        if binder is not None and owner == binder.var.text:
            owner = binder.kind
        return f"{owner}.{node.name}"
    if isinstance(node.obj, ast.Field):
        return f"{node.obj.name}.{node.name}"  # event.order.type -> order.type
    return node.name


def _schema_paths() -> set[str]:
    paths = {"next_trading_day"}
    for root in ("account", "day", "week", "session"):
        paths |= {f"{root}.{m}" for m in SCHEMA.roots[root].type.members}
    paths |= {f"trade.{m}" for m in SCHEMA.roots["trades"].type.elem.members}
    for kind in ("position", "order"):
        paths |= {f"{kind}.{m}" for m in SCHEMA.binders[kind].members}
    paths |= {f"event.{f}" for fields in EVENT_KIND_FIELDS.values() for f in fields if f != "order"}
    return paths | {"event.kind", "event.time", "event.order"}


def _scramble(obj, seen: set) -> None:
    """Every number, duration, instant and clock reachable from ``obj`` changed in place."""
    if id(obj) in seen or not dataclasses.is_dataclass(obj):
        return
    seen.add(id(obj))
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if type(value) is Decimal:
            setattr(obj, field.name, value - Decimal("987.65"))
        elif type(value) is int:
            setattr(obj, field.name, value + 41)
        elif isinstance(value, dt.datetime):
            setattr(obj, field.name, value + dt.timedelta(days=100, minutes=7))
        elif isinstance(value, dt.timedelta):
            setattr(obj, field.name, value + dt.timedelta(hours=5))
        elif isinstance(value, tuple):
            for item in value:
                _scramble(item, seen)
        else:
            _scramble(value, seen)


@pytest.mark.parametrize("name", CASES)
def test_a_reason_is_the_text_of_the_snapshot_its_rule_fired_on(name):
    """Reasons are made text when read (``runtime.Reason``) from the values captured when the
    rule fired: a snapshot changed after the decision (the engine's is, by the next event) does
    not change them, and the text is the golden one."""
    _, _, snapshot, decision = evaluate(name)
    at = snapshot.event.time or snapshot.session.now
    assert decision.actions is not None  # built (values captured), not yet rendered
    _scramble(snapshot, set())
    records = {"fired": outcome(decision, snapshot)["fired"], "actions": decision.records(at)}
    assert dump(records) == (CASES_DIR / f"{name}.expected.yaml").read_text(encoding="utf-8")
