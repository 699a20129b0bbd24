"""A reference interpreter: a plain tree walk over the checked AST, for testing the compiler.

It shares nothing with ``dsl.compiler`` beyond the runtime value helpers (``dsl.runtime``), the
values of literals (``literal_value``/``constant_value``) and ``plan``: every rule is evaluated
by walking its `on`, `for`, `when` and actions directly. It is deliberately slow and simple; a
difference from the compiled ``Program`` is a bug in one of them. Reasons are not built (they are
the compiler's job): actions carry an empty reason.
"""

from __future__ import annotations

import datetime as dt
import math
import operator
from dataclasses import dataclass
from typing import Any

from riskc.dsl import ast, runtime
from riskc.dsl import types as T
from riskc.dsl.checker import CheckedPolicy, CheckResult, RuleInstance
from riskc.dsl.compiler import constant_value, literal_value, zero_of
from riskc.dsl.decision import Action, plan
from riskc.engine.core.snapshot import SCHEMA

ROOTS = frozenset(
    {
        "account",
        "day",
        "week",
        "positions",
        "orders",
        "trades",
        "session",
        "next_trading_day",
        "next_trading_week",
        "event",
    }
)
ORDERING = frozenset({"<", "<=", ">", ">="})

_COMPARE = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "in": lambda a, b: a in b,
    "not in": lambda a, b: a not in b,
}


@dataclass(frozen=True)
class Outcome:
    """What one evaluation decided: planned actions, and (rule id, target id) of what fired."""

    actions: tuple[Action, ...]
    fired: tuple[tuple[str, str | None], ...]
    errors: tuple[str, ...]  # ids of rules that raised


class Interpreter:
    """A policy ready to interpret: parameters resolved once, like a compiled program."""

    def __init__(self, policy: CheckedPolicy, result: CheckResult):
        self.policy = policy
        self.types = result.types
        self.params = [
            {name: constant_value(value, self.types) for name, value in instance.args.items()}
            for instance in policy.instances
        ]

    def run(self, s) -> Outcome:
        actions: list[Action] = []
        fired: list[tuple[str, str | None]] = []
        errors: list[str] = []
        for instance, params in zip(self.policy.instances, self.params, strict=False):
            try:
                for target, env in self._holding(instance, params, s):
                    fired.append((instance.id, _target_id(target)))
                    actions += self._actions(instance, env, s)
            except Exception as error:
                errors.append(instance.id)
                actions += self._on_error(instance, error)
        return Outcome(plan(actions), tuple(fired), tuple(errors))

    def _holding(self, instance: RuleInstance, params: dict, s):
        """(target, names) for each target the rule's condition holds for, lazily."""
        rule = instance.rule
        if rule.on and s.event.kind not in {k.text for k in rule.on}:
            return
        if rule.binder is None:
            if self.eval(rule.when, params, s):
                yield None, params
            return
        for target in s.positions if rule.binder.kind == "position" else s.orders:
            env = {**params, rule.binder.var.text: target}
            if self.eval(rule.when, env, s):
                yield target, env

    def _on_error(self, instance: RuleInstance, error: Exception) -> list[Action]:
        on_error = self.policy.settings.on_error
        why = f"{instance.id} could not be evaluated ({type(error).__name__}: {error}); on_error {on_error}"
        alert = Action("alert", instance.id, "critical", why, message=why)
        return [alert] if on_error == "alert" else [Action("flatten", instance.id, "critical", why), alert]

    # ---- expressions -------------------------------------------------------------------------

    def eval(self, e: ast.Expr, env: dict[str, Any], s) -> Any:
        ev = lambda x: self.eval(x, env, s)  # noqa: E731
        match e:
            case ast.Name(id=name):
                if name in env:
                    return env[name]
                return getattr(s, name) if name in ROOTS else name  # else an enum constant
            case ast.Field(obj=obj, name=name):
                return getattr(ev(obj), name)
            case ast.Call():
                return self._call(e, env, s)
            case ast.Neg(operand=x):
                return -ev(x)
            case ast.Not(operand=x):
                return not ev(x)
            case ast.BoolOp(op="and", left=left, right=right):
                return bool(ev(left)) and bool(ev(right))
            case ast.BoolOp(op="or", left=left, right=right):
                return bool(ev(left)) or bool(ev(right))
            case ast.Compare(op=op, left=left, right=right):
                a, b = ev(left), ev(right)
                if op in ORDERING and (a is None or b is None):
                    return False  # a comparison with none is false
                return _COMPARE[op](a, b)
            case ast.Conditional(body=body, test=test, orelse=orelse):
                return ev(body) if ev(test) else ev(orelse)
            case ast.Aggregate():
                return self._aggregate(e, env, s)
            case ast.Arith(op=op, left=left, right=right):
                return arith(op, ev(left), ev(right))
            case ast.ListExpr(items=items):
                return tuple(ev(i) for i in items)
            case ast.MapExpr(entries=entries):
                return {ev(m.key): ev(m.value) for m in entries}
        return literal_value(e, self.types.get(id(e)))

    def _aggregate(self, e: ast.Aggregate, env: dict, s) -> Any:
        """Written as a plain loop, unlike the compiler's generator expressions."""
        chosen = []
        for item in self.eval(e.items, env, s):
            inner = {**env, e.var.text: item}
            if e.where is None or self.eval(e.where, inner, s):
                chosen.append(inner)
        if e.func == "count":
            if self.types[id(e.expr)] == T.BOOL:
                return len([inner for inner in chosen if self.eval(e.expr, inner, s)])
            return len(chosen)
        values = [self.eval(e.expr, inner, s) for inner in chosen]
        if e.func == "any":
            return any(values)
        if e.func == "all":
            return all(values)
        values = [v for v in values if v is not None]
        if e.func == "sum":
            total = zero_of(self.types[id(e)])
            for v in values:
                total = total + v
            return total
        if not values:
            return None
        return min(values) if e.func == "min" else max(values)

    def _call(self, e: ast.Call, env: dict, s) -> Any:
        if isinstance(e.func, ast.Field):
            owner = self.eval(e.func.obj, env, s)
            signature = self.types[id(e.func)]
            return getattr(owner, e.func.name)(*self._args(e, signature, env, s))
        name = e.func.id
        args = self._args(e, SCHEMA.functions[name], env, s)
        if name in BUILTINS:
            return BUILTINS[name](*args)
        return getattr(s, name)(*args)  # an engine function

    def _args(self, e: ast.Call, signature, env: dict, s) -> list:
        """Argument values in parameter order, whether written by position or by name."""
        order = [p.name for p in signature.params]
        values = {}
        for index, arg in enumerate(e.args):
            values[order[index] if arg.name is None else arg.name.text] = self.eval(arg.value, env, s)
        return [values[n] for n in order if n in values]

    # ---- actions -----------------------------------------------------------------------------

    def _actions(self, instance: RuleInstance, env: dict, s) -> list[Action]:
        return [self._action(a, instance, env, s) for a in instance.rule.actions]

    def _action(self, a: ast.Action, instance: RuleInstance, env: dict, s) -> Action:
        ev = lambda x: self.eval(x, env, s)  # noqa: E731

        def make(kind: str, **fields) -> Action:
            return Action(kind, instance.id, instance.severity, "", **fields)

        def on(target) -> dict:
            return {"symbol": target.symbol, "contract_id": target.contract_id}

        match a:
            case ast.Flatten():
                return make("flatten")
            case ast.Close(target=t):
                return make("close", **on(ev(t)))
            case ast.Reduce(target=t, to=to):
                return make("reduce", **on(ev(t)), to=ev(to))
            case ast.ReduceTotal(to=to, counting=counting) if counting is not None and ev(counting) == "net":
                return make("reduce_total", to=ev(to), condition="net")
            case ast.ReduceTotal(to=to):
                return make("reduce_total", to=ev(to))
            case ast.CancelOrders(symbol=symbol):
                return make("cancel_orders", symbol=None if symbol is None else ev(symbol))
            case ast.Cancel(target=t):
                order = ev(t)
                return make("cancel", **on(order), order_id=order.id)
            case ast.Lockout(mode="for", value=v):
                return make("lockout", until=s.session.now + ev(v))
            case ast.Lockout(mode="until", value=v):
                return make("lockout", until=self._until(ev(v), s))
            case ast.Lockout(mode=mode):  # manual | while
                return make("lockout", condition=mode)
            case ast.Block(symbol=symbol, duration=d):
                until = s.next_trading_day if d is None else s.session.now + ev(d)
                return make("block", symbol=ev(symbol), until=until)
            case ast.MoveStop(target=t, price=price) | ast.PlaceStop(target=t, price=price):
                kind = "move_stop" if isinstance(a, ast.MoveStop) else "place_stop"
                position = ev(t)
                return make(kind, **on(position), price=ev(price), side=position.side)
            case ast.PlaceTarget(target=t, price=price):
                position = ev(t)
                return make("place_target", **on(position), price=ev(price), side=position.side)
            case ast.Alert(message=m):
                return make("alert", message=ev(m))
        raise AssertionError(f"unknown action {a!r}")

    def _until(self, value, s) -> dt.datetime:
        if isinstance(value, dt.time) and getattr(s, "calendar", None) is not None:
            return s.calendar.next_open_clock(s.session.now, value)
        if isinstance(value, dt.time):
            return runtime.next_clock(s.session.now, value, self.policy.settings.timezone)
        return value


def arith(op: str, a, b):
    """The language's arithmetic on runtime values (see ``dsl.runtime`` for representations)."""
    if op == "/":
        return runtime.divide(a, b)
    if op == "*":
        return runtime.multiply(a, b)
    if _is_clock(a) and _is_clock(b):
        return runtime.clock_diff(a, b)
    if _is_clock(a):
        return runtime.clock_add(a, b, 1 if op == "+" else -1)
    return a + b if op == "+" else a - b


def _is_clock(value) -> bool:
    return isinstance(value, dt.time)


BUILTINS = {
    "abs": abs,
    "min": min,
    "max": max,
    "len": len,
    "coalesce": runtime.coalesce,
    "ceil": lambda x: x if isinstance(x, int) else math.ceil(x),
    "floor": lambda x: x if isinstance(x, int) else math.floor(x),
    "get": lambda mapping, key, fallback: mapping.get(key, fallback),
}


def _target_id(target) -> str | None:
    if target is None:
        return None
    return getattr(target, "contract_id", None) or str(getattr(target, "id", ""))


def comparable(actions) -> list[Action]:
    """Actions without their reason (the compiler's job); an on_error alert's message is its
    reason, so it goes too."""
    return [a._replace(why="", message=None if a.message == a.reason else a.message) for a in actions]


def interpret(policy: CheckedPolicy, result: CheckResult, snapshot) -> list[Action]:
    """The planned actions of one evaluation (reasons left empty)."""
    return list(Interpreter(policy, result).run(snapshot).actions)
