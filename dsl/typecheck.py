"""Types every expression and action of a rule body, reporting unknown names and unit errors.

The result of checking an expression is its type; the type is also recorded in ``types`` (keyed
by node identity) for the compiler. An expression that fails gets the type ``ANY`` so one
mistake is reported once, not again by every expression around it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from riskc.dsl import ast
from riskc.dsl import types as T
from riskc.dsl.errors import (
    ARITY_ERROR,
    BAD_ACTION,
    DUPLICATE,
    TYPE_ERROR,
    UNIT_ERROR,
    UNKNOWN_NAME,
    DiagnosticSink,
    Span,
)
from riskc.dsl.schema import SAME, Schema
from riskc.dsl.types import ANY, FuncT, ObjT, Type

_LITERAL_TYPES = {
    ast.MoneyLit: T.MONEY,
    ast.PercentLit: T.PERCENT,
    ast.DurationLit: T.DURATION,
    ast.ClockLit: T.CLOCK,
    ast.DateLit: T.DATE,
    ast.TicksLit: T.TICKS,
    ast.ContractsLit: T.CONTRACTS,
    ast.StringLit: T.STRING,
    ast.SymbolLit: T.SYMBOL,
    ast.BoolLit: T.BOOL,
    ast.NoneLit: T.NONE,
}
# The order in which a bare number is tried against the other operand of an arithmetic operator.
# Passed as `expected` when an expression is the function of a call: only there may a method be named.
_CALLEE = T.Prim("<callee>")
COUNTING = T.EnumT(("net", "gross"))  # how `reduce_total` counts: gross (every contract) or net
_ROUNDABLE = frozenset({T.INT, T.CONTRACTS, T.TICKS, T.DECIMAL})
_INT_PREFERENCE = (T.INT, T.CONTRACTS, T.DECIMAL, T.POINTS, T.PRICE)
_DECIMAL_PREFERENCE = (T.DECIMAL, T.POINTS, T.PRICE)


def _symbol_case_help(name: str, expected: Type | None) -> str | None:
    """`cl` where a symbol goes: symbols are written in upper case (`CL`)."""
    wants_symbol = expected is not None and T.strip_optional(expected) == T.SYMBOL
    if wants_symbol and re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,5}", name) and name.upper() != name:
        return f"symbols are upper case: write `{name.upper()}`"
    return None


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """`did you mean ...?` for a misspelt name, or None when nothing is close."""
    matches = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean `{matches[0]}`?" if matches else None


def polymorphic_literal(e: ast.Expr) -> tuple[Type, ...] | None:
    """The types a bare number may take, or None when ``e`` is not a bare number."""
    if isinstance(e, ast.Neg):
        return polymorphic_literal(e.operand)
    if isinstance(e, ast.IntLit):
        return _INT_PREFERENCE
    if isinstance(e, ast.DecimalLit):
        return _DECIMAL_PREFERENCE
    if isinstance(e, ast.Conditional):  # `1 if c else 10` is a bare number of either branch's unit
        body, orelse = polymorphic_literal(e.body), polymorphic_literal(e.orelse)
        if body and orelse:
            return tuple(t for t in body if t in orelse) or None
    if isinstance(e, ast.Aggregate) and e.func in ("sum", "min", "max"):  # `max(0.0 for ...)`
        return polymorphic_literal(e.expr)
    return None


def assignable(actual: Type, expected: Type) -> bool:
    if actual == expected or ANY in (actual, expected) or T.same_family(actual, expected):
        return True
    if isinstance(expected, T.OptionalT):
        return actual == T.NONE or assignable(actual, expected.inner)
    if isinstance(expected, T.ListT) and isinstance(actual, T.ListT):
        return assignable(actual.elem, expected.elem)
    if isinstance(expected, T.MapT) and isinstance(actual, T.MapT):
        return assignable(actual.key, expected.key) and assignable(actual.value, expected.value)
    if isinstance(expected, T.EnumT) and isinstance(actual, T.EnumT):
        return set(actual.members) <= set(expected.members)
    return False


def _mismatch_code(a: Type, b: Type) -> str:
    units = T.UNITS | T.NUMERIC
    return UNIT_ERROR if a in units and b in units else TYPE_ERROR


@dataclass(slots=True)
class Scope:
    """Names visible in one rule body."""

    schema: Schema
    locals: dict[str, Type] = field(default_factory=dict)
    event: ObjT | None = None
    event_kinds: tuple[str, ...] = ()

    def lookup(self, name: str) -> Type | None:
        if name in self.locals:
            return self.locals[name]
        if name in self.schema.roots:
            return self.schema.roots[name].type
        if name == "event" and self.event is not None:
            return self.event
        return None

    def names(self) -> list[str]:
        return [*self.locals, *self.schema.roots, "event"]


class TypeChecker:
    def __init__(self, sink: DiagnosticSink, types: dict[int, Type]):
        self.sink = sink
        self.types = types

    # ---- entry points --------------------------------------------------------------------------

    def check(self, e: ast.Expr, scope: Scope, expected: Type | None = None) -> Type:
        t = self._check(e, scope, expected)
        self.types[id(e)] = t
        return t

    def expect(self, e: ast.Expr, scope: Scope, want: Type, what: str) -> Type:
        """Check ``e`` and report when it is not a ``want``; ``what`` names the slot in messages."""
        have = self.check(e, scope, want)
        if not assignable(have, want):
            self._mismatch(
                e.span,
                f"{what} must be {_article(want)}, not {_article(have)}",
                have,
                want,
                help=_literal_help(e, want) or _conversion_help(have, want),
            )
        return have

    # ---- dispatch ------------------------------------------------------------------------------

    def _check(self, e: ast.Expr, scope: Scope, expected: Type | None) -> Type:
        literal = _LITERAL_TYPES.get(type(e))
        if literal is not None:
            return literal
        method = getattr(self, "_" + type(e).__name__)
        return method(e, scope, expected)

    def _IntLit(self, e, scope, expected):
        return expected if expected in T.INT_LITERAL_CAN_BE else T.INT

    def _DecimalLit(self, e, scope, expected):
        return expected if expected in T.DECIMAL_LITERAL_CAN_BE else T.DECIMAL

    def _Name(self, e: ast.Name, scope: Scope, expected):
        found = scope.lookup(e.id)
        if found is not None:
            return found
        enum = T.strip_optional(expected) if expected is not None else None
        if isinstance(enum, T.EnumT) and e.id in enum.members:
            return enum
        if expected == ANY:  # the other side already failed: this may be one of its enum constants
            return ANY
        if e.id in scope.schema.functions:
            self.sink.error(
                TYPE_ERROR,
                f"`{e.id}` is a function; call it with arguments",
                e.span,
                help=f"{e.id}{scope.schema.functions[e.id]}",
            )
            return ANY
        if e.id in scope.schema.unseen:
            self.sink.error(UNKNOWN_NAME, f"`{e.id}` is not visible here", e.span, help=scope.schema.unseen[e.id])
            return ANY
        candidates = scope.names() + (list(enum.members) if isinstance(enum, T.EnumT) else [])
        want = f"one of {', '.join(enum.members)}" if isinstance(enum, T.EnumT) else None
        help = _symbol_case_help(e.id, expected) or suggest(e.id, candidates)
        self.sink.error(UNKNOWN_NAME, f"unknown name `{e.id}`", e.span, help=help, want=want)
        return ANY

    def _Field(self, e: ast.Field, scope: Scope, expected):
        owner = self.check(e.obj, scope)
        if owner == ANY:
            return ANY
        if isinstance(owner, T.OptionalT):
            self.sink.error(TYPE_ERROR, f"`{_text(e.obj)}` may be none", e.obj.span)
            return ANY
        if not isinstance(owner, ObjT):
            self.sink.error(TYPE_ERROR, f"{_article(owner)} has no fields", e.span, have=str(owner))
            return ANY
        member = owner.members.get(e.name)
        if member is not None and isinstance(member.type, FuncT) and expected is not _CALLEE:
            self.sink.error(
                TYPE_ERROR, f"`{_text(e)}` is a method; call it with arguments", e.span, help=f"{_text(e)}{member.type}"
            )
            return ANY
        if member is not None:
            return member.type
        self._unknown_member(e, owner, scope)
        return ANY

    def _unknown_member(self, e: ast.Field, owner: ObjT, scope: Scope) -> None:
        if owner is scope.event:
            kinds = scope.schema.event_kinds_with(e.name)
            if kinds:
                on = ", ".join(kinds)
                lacking = [k for k in scope.event_kinds if k not in kinds]
                self.sink.error(
                    UNKNOWN_NAME,
                    f"`event.{e.name}` exists only for {on} events",
                    e.span,
                    help=f"restrict the rule with `on {kinds[0]}`"
                    if not scope.event_kinds
                    else f"this rule also runs on events without it ({', '.join(lacking)})",
                )
                return
        self.sink.error(
            UNKNOWN_NAME,
            f"{owner.name} has no field `{e.name}`",
            e.span,
            help=suggest(e.name, owner.members),
        )

    def _Call(self, e: ast.Call, scope: Scope, expected):
        signature, label = self._callee(e, scope)
        if signature is None:
            for arg in e.args:
                self.check(arg.value, scope)
            return ANY
        return self._apply(signature, label, e, scope)

    def _callee(self, e: ast.Call, scope: Scope) -> tuple[FuncT | None, str]:
        if isinstance(e.func, ast.Name):
            name = e.func.id
            if name in scope.schema.functions:
                self.types[id(e.func)] = scope.schema.functions[name]  # the compiler orders named args by it
                return scope.schema.functions[name], name
            if scope.lookup(name) is not None:
                self.sink.error(TYPE_ERROR, f"`{name}` is not a function", e.func.span)
            else:
                self.sink.error(
                    UNKNOWN_NAME, f"unknown function `{name}`", e.func.span, help=suggest(name, scope.schema.functions)
                )
            return None, name
        member_type = self.check(e.func, scope, _CALLEE)
        if isinstance(member_type, FuncT):
            return member_type, _text(e.func)
        if member_type != ANY:
            self.sink.error(TYPE_ERROR, f"`{_text(e.func)}` is not a method", e.func.span, have=str(member_type))
        return None, _text(e.func)

    def _apply(self, sig: FuncT, label: str, e: ast.Call, scope: Scope) -> Type:
        bound = self._bind_args(sig, label, e)
        if bound is None:
            for arg in e.args:
                self.check(arg.value, scope)
            return ANY
        if label == "get":
            return self._lookup(bound, scope)
        same: Type | None = None
        for param, arg in bound:
            want = param.type
            if want == SAME:
                have = self.check(arg.value, scope, same)
                if same is None:
                    same = T.strip_optional(have) if label == "coalesce" else have
                    continue
                want = same
            elif want == ANY:
                have = self.check(arg.value, scope)
                if label == "len" and not isinstance(have, (T.ListT, T.MapT)) and have != ANY:
                    self._mismatch(arg.value.span, "`len` needs a list or a map", have, None)
                continue
            self.expect(arg.value, scope, want, f"argument `{param.name}` of `{label}`")
        if sig.result == SAME:
            if same is not None and label in {"min", "max", "abs"} and same not in T.ORDERED | {ANY}:
                self._mismatch(e.span, f"`{label}` needs numbers, amounts, durations or times", same, None)
            if same is not None and label in {"ceil", "floor"} and same not in _ROUNDABLE | {ANY}:
                self._mismatch(e.span, f"`{label}` rounds numbers, contracts or ticks", same, None)
            return same or ANY
        return sig.result

    def _lookup(self, bound: list, scope: Scope) -> Type:
        """`get(map, key, fallback)`: typed from the map, so it needs no generic signature."""
        (_, map_arg), (_, key_arg), (_, fallback_arg) = bound
        container = self.check(map_arg.value, scope)
        if container == ANY:
            self.check(key_arg.value, scope)
            self.check(fallback_arg.value, scope)
            return ANY
        if not isinstance(container, T.MapT):
            self._mismatch(map_arg.value.span, "`get` looks up a key in a map", container, None)
            return ANY
        self.expect(key_arg.value, scope, container.key, "the key of `get`")
        self.expect(fallback_arg.value, scope, container.value, "the fallback of `get`")
        return container.value

    def _bind_args(self, sig: FuncT, label: str, e: ast.Call) -> list | None:
        by_name = {p.name: p for p in sig.params}
        bound: dict[str, tuple] = {}
        for index, arg in enumerate(e.args):
            if arg.name is None:
                if index >= len(sig.params):
                    self.sink.error(
                        ARITY_ERROR,
                        f"`{label}` takes {len(sig.params)} argument(s), got {len(e.args)}",
                        arg.span,
                        help=f"{label}{sig}",
                    )
                    return None
                param = sig.params[index]
            else:
                param = by_name.get(arg.name.text)
                if param is None:
                    self.sink.error(
                        UNKNOWN_NAME,
                        f"`{label}` has no parameter `{arg.name.text}`",
                        arg.name.span,
                        help=suggest(arg.name.text, by_name),
                    )
                    return None
            if param.name in bound:
                self.sink.error(ARITY_ERROR, f"argument `{param.name}` given twice", arg.span)
                return None
            bound[param.name] = (param, arg)
        missing = [p.name for p in sig.params if p.required and p.name not in bound]
        if missing:
            self.sink.error(
                ARITY_ERROR, f"`{label}` is missing argument(s): {', '.join(missing)}", e.span, help=f"{label}{sig}"
            )
            return None
        return [bound[p.name] for p in sig.params if p.name in bound]

    def _Neg(self, e: ast.Neg, scope: Scope, expected):
        t = self.check(e.operand, scope, expected)
        if t not in T.NUMERIC and t != ANY:
            self._mismatch(e.span, f"cannot negate {_article(t)}", t, None)
            return ANY
        return t

    def _Not(self, e: ast.Not, scope: Scope, expected):
        self.expect(e.operand, scope, T.BOOL, "the operand of `not`")
        return T.BOOL

    def _BoolOp(self, e: ast.BoolOp, scope: Scope, expected):
        self.expect(e.left, scope, T.BOOL, f"each side of `{e.op}`")
        self.expect(e.right, scope, T.BOOL, f"each side of `{e.op}`")
        return T.BOOL

    def _Arith(self, e: ast.Arith, scope: Scope, expected):
        left, right = self._operands(e.left, e.right, scope, e.op)
        if ANY in (left, right):
            return ANY
        if isinstance(left, T.OptionalT) or isinstance(right, T.OptionalT):
            self._optional_error(e, left, right)
            return ANY
        result = T.arith_result(left, e.op, right)
        if result is None:
            partners = T.arith_partners(left, e.op)
            self._binary_mismatch(
                e.span,
                f"cannot compute {left} {e.op} {right}",
                left,
                right,
                help=_arith_help(left, e.op, right),
                have=f"{left} {e.op} {right}",
                want=" or ".join(f"{left} {e.op} {p}" for p in partners) or f"no `{e.op}` with {left} on the left",
            )
            return ANY
        return result

    def _operands(self, left_e, right_e, scope, op: str | None) -> tuple[Type, Type]:
        """Types of both operands; a bare number takes the unit that fits the other side."""
        left_options, right_options = polymorphic_literal(left_e), polymorphic_literal(right_e)
        if left_options and not right_options:
            right = self.check(right_e, scope)
            left = self._fit(left_e, left_options, right, op, scope, literal_left=True)
            return left, right
        left = self.check(left_e, scope)
        if right_options:
            return left, self._fit(right_e, right_options, left, op, scope, literal_left=False)
        return left, self.check(right_e, scope, left)

    def _fit(self, literal_e, options, other: Type, op: str | None, scope, literal_left: bool) -> Type:
        inner = T.strip_optional(other)
        for candidate in options:
            if op is None:
                fits = T.same_family(candidate, inner)
            else:
                pair = (candidate, op, inner) if literal_left else (inner, op, candidate)
                fits = T.arith_result(*pair) is not None
            if fits:
                return self.check(literal_e, scope, candidate)
        return self.check(literal_e, scope)

    def _Compare(self, e: ast.Compare, scope: Scope, expected):
        if e.op in ("in", "not in"):
            return self._membership(e, scope)
        left, right = self._comparands(e, scope)
        if ANY in (left, right):
            return T.BOOL
        if e.op in ("==", "!="):
            if not (assignable(left, right) or assignable(right, left)):
                self._binary_mismatch(
                    e.span,
                    f"cannot compare {_article(left)} with {_article(right)}",
                    left,
                    right,
                    help=_compare_help(left, right),
                )
            return T.BOOL
        # A comparison with none is false (PRODUCT.md §3.6): `t.pnl < $0` skips opening fills.
        left, right = T.strip_optional(left), T.strip_optional(right)
        if left not in T.ORDERED or not T.same_family(left, right):
            self._binary_mismatch(
                e.span,
                f"cannot compare {_article(left)} with {_article(right)}",
                left,
                right,
                help=_literal_help(e.right, left) or _literal_help(e.left, right) or _compare_help(left, right),
            )
        return T.BOOL

    def _comparands(self, e: ast.Compare, scope: Scope) -> tuple[Type, Type]:
        # An enum constant on the left (`long == p.side`) takes its type from the right.
        if isinstance(e.left, ast.Name) and scope.lookup(e.left.id) is None and not polymorphic_literal(e.right):
            right = self.check(e.right, scope)
            return self.check(e.left, scope, right), right
        return self._operands(e.left, e.right, scope, None)

    def _membership(self, e: ast.Compare, scope: Scope) -> Type:
        enum_on_left = isinstance(e.left, ast.Name) and scope.lookup(e.left.id) is None
        if isinstance(e.right, ast.ListExpr) and not enum_on_left:
            return self._membership_in_literal(e, scope)
        container = self.check(e.right, scope)
        if container == ANY:
            self.check(e.left, scope)
            return T.BOOL
        if isinstance(container, T.ListT):
            want = container.elem
        elif isinstance(container, T.MapT):
            want = container.key
        else:
            self._mismatch(e.right.span, f"`{e.op}` needs a list or a map on its right", container, None)
            self.check(e.left, scope)
            return T.BOOL
        if want != ANY:
            self.expect(e.left, scope, want, f"the left side of `{e.op}`")
        else:
            self.check(e.left, scope)
        return T.BOOL

    def _membership_in_literal(self, e: ast.Compare, scope: Scope) -> Type:
        """`p.side in [long, short]`: the items take the left side's type, so enum constants resolve."""
        left = self.check(e.left, scope)
        self.check(e.right, scope, T.ListT(left) if left != ANY else None)
        return T.BOOL

    def _Conditional(self, e: ast.Conditional, scope: Scope, expected):
        self.expect(e.test, scope, T.BOOL, "the condition of `if`")
        if polymorphic_literal(e.body) and not polymorphic_literal(e.orelse):  # a bare number takes the other's unit
            orelse = self.check(e.orelse, scope, expected)
            body = self.check(e.body, scope, orelse if orelse not in (T.NONE, ANY) else expected)
        else:
            body = self.check(e.body, scope, expected)
            orelse = self.check(e.orelse, scope, body if body not in (T.NONE, ANY) else expected)
        if body == T.NONE and orelse != T.NONE:
            return orelse if isinstance(orelse, T.OptionalT) or orelse == ANY else T.OptionalT(orelse)
        if orelse == T.NONE and body != T.NONE:
            return body if isinstance(body, T.OptionalT) or body == ANY else T.OptionalT(body)
        if assignable(orelse, body):
            return body
        if assignable(body, orelse):
            return orelse
        self._mismatch(e.orelse.span, "both branches of `if ... else` must be of one type", orelse, body)
        return ANY

    def _Aggregate(self, e: ast.Aggregate, scope: Scope, expected):
        inner = self._loop_scope(e, scope)
        if e.where is not None:
            self.expect(e.where, inner, T.BOOL, f"the `where` condition of `{e.func}`")
        if e.func in ("any", "all"):
            self.expect(e.expr, inner, T.BOOL, f"each item of `{e.func}`")
            return T.BOOL
        if e.func == "count":
            self.check(e.expr, inner)  # a bool counts the items it holds for; anything else, every item
            return T.INT
        want = T.strip_optional(expected) if expected is not None else None
        item = T.strip_optional(self.check(e.expr, inner, want))  # none items are left out
        if item == ANY:
            return ANY
        if e.func == "sum" and T.arith_result(item, "+", item) != item:
            help_text = "prices are levels and do not add up; sum distances or money" if item == T.PRICE else None
            self._mismatch(e.expr.span, f"`sum` cannot add up {_article(item)}", item, None, help=help_text)
            return ANY
        if e.func in ("min", "max") and item not in T.ORDERED:
            self._mismatch(e.expr.span, f"`{e.func}` cannot order {_article(item)}", item, None)
            return ANY
        return item if e.func == "sum" else T.OptionalT(item)  # min/max of no items is none

    def _loop_scope(self, e: ast.Aggregate, scope: Scope) -> Scope:
        """The scope of an aggregate's item and `where`: the rule's names and the loop variable."""
        items = self.check(e.items, scope)
        element: Type = ANY
        if isinstance(items, T.ListT):
            element = items.elem
        elif items != ANY:
            self._mismatch(e.items.span, f"`{e.func}` goes over a list, not {_article(items)}", items, None)
        name = e.var.text
        if scope.lookup(name) is not None:
            self.sink.error(
                DUPLICATE,
                f"`{name}` already names something in this rule",
                e.var.span,
                help=f"give the loop variable a name of its own, e.g. `{name[:1]}2`",
            )
        return Scope(scope.schema, {**scope.locals, name: element}, scope.event, scope.event_kinds)

    def _ListExpr(self, e: ast.ListExpr, scope: Scope, expected):
        want = expected.elem if isinstance(expected, T.ListT) else None
        return T.ListT(self._uniform(e.items, scope, want, "list items"))

    def _MapExpr(self, e: ast.MapExpr, scope: Scope, expected):
        want_key = expected.key if isinstance(expected, T.MapT) else None
        want_value = expected.value if isinstance(expected, T.MapT) else None
        key = self._uniform([m.key for m in e.entries], scope, want_key, "map keys")
        value = self._uniform([m.value for m in e.entries], scope, want_value, "map values")
        return T.MapT(key, value)

    def _uniform(self, items, scope, want: Type | None, what: str) -> Type:
        if not items:
            return want or ANY
        first = want
        for item in items:
            have = self.check(item, scope, first)
            if first is None:
                first = have
            elif not assignable(have, first):
                self._mismatch(item.span, f"{what} must all be {_article(first)}", have, first)
        return first or ANY

    # ---- errors --------------------------------------------------------------------------------

    def _mismatch(self, span: Span, message: str, have: Type, want: Type | None, help: str | None = None) -> None:
        code = _mismatch_code(have, want) if want is not None else TYPE_ERROR
        self.sink.error(code, message, span, have=str(have), want=str(want) if want is not None else None, help=help)

    def _binary_mismatch(
        self,
        span: Span,
        message: str,
        left: Type,
        right: Type,
        help: str | None = None,
        *,
        have: str | None = None,
        want: str | None = None,
    ) -> None:
        # Neither side alone is "wanted": a unit error's `have` names both sides, `want` what fits
        # (a comparison: one unit on both sides; arithmetic: the operands the operator takes).
        code = _mismatch_code(left, right)
        if code != UNIT_ERROR:
            self.sink.error(code, message, span, help=help)
            return
        have = have or f"{left} on the left, {right} on the right"
        want = want or "one unit on both sides"
        self.sink.error(code, message, span, have=have, want=want, help=help)

    def _optional_error(self, e, left: Type, right: Type) -> None:
        operand, have = (e.left, left) if isinstance(left, T.OptionalT) else (e.right, right)
        name = _text(operand)
        subject, value = (f"`{name}`", name) if name != "expression" else ("this value", "value")
        self.sink.error(
            TYPE_ERROR,
            f"{subject} may be none, so `{e.op}` cannot use it directly",
            operand.span,
            have=str(have),
            help=f"give it a value for when it is none: coalesce({value}, fallback)",
        )

    # ---- actions -------------------------------------------------------------------------------

    def check_action(self, a: ast.Action, scope: Scope) -> None:
        getattr(self, "_act_" + type(a).__name__)(a, scope)

    def _target(self, e: ast.Expr, scope: Scope, kind: str, verb: str) -> None:
        binder = "p" if kind == "position" else "o"
        if isinstance(e, ast.Name) and scope.lookup(e.id) is None:
            self.sink.error(
                UNKNOWN_NAME,
                f"unknown name `{e.id}`",
                e.span,
                help=f"name the {kind} first: `for {kind} {e.id}` before `when`",
            )
            return
        have = self.check(e, scope)
        if have == ANY:
            return
        if not (isinstance(have, ObjT) and have.name == kind):
            self.sink.error(
                BAD_ACTION,
                f"`{verb}` needs {_article_word(kind)}",
                e.span,
                have=str(have),
                want=kind,
                help=_target_help(have, kind, verb, binder),
            )

    def _act_Flatten(self, a, scope):
        pass

    def _act_Close(self, a: ast.Close, scope):
        self._target(a.target, scope, "position", "close")

    def _act_Reduce(self, a: ast.Reduce, scope):
        self._target(a.target, scope, "position", "reduce")
        self.expect(a.to, scope, T.CONTRACTS, "`reduce ... to`")

    def _act_ReduceTotal(self, a: ast.ReduceTotal, scope):
        self.expect(a.to, scope, T.CONTRACTS, "`reduce_total to`")
        if a.counting is not None:
            self.expect(a.counting, scope, COUNTING, "`reduce_total ... counting`")

    def _act_CancelOrders(self, a: ast.CancelOrders, scope):
        if a.symbol is not None:
            self.expect(a.symbol, scope, T.SYMBOL, "`cancel_orders for`")

    def _act_Cancel(self, a: ast.Cancel, scope):
        self._target(a.target, scope, "order", "cancel")

    def _act_Lockout(self, a: ast.Lockout, scope):
        if a.mode == "for":
            self.expect(a.value, scope, T.DURATION, "`lockout for`")
        elif a.mode == "while":
            self.expect(a.value, scope, T.BOOL, "`lockout while`")
        elif a.mode == "until":
            have = self.check(a.value, scope)
            if have not in (T.CLOCK, T.TIME, ANY):
                self.sink.error(
                    BAD_ACTION,
                    f"`lockout until` needs a time of day or an instant, not {_article(have)}",
                    a.value.span,
                    have=str(have),
                    want="clock | time",
                    help="e.g. `lockout until 17:00`, `lockout until next_trading_day`, `lockout until manual`",
                )

    def _act_Block(self, a: ast.Block, scope):
        self.expect(a.symbol, scope, T.SYMBOL, "`block`")
        if a.duration is not None:
            self.expect(a.duration, scope, T.DURATION, "`block ... for`")

    def _act_MoveStop(self, a: ast.MoveStop, scope):
        self._target(a.target, scope, "position", "move_stop")
        self.expect(a.price, scope, T.PRICE, "`move_stop ... to`")

    def _act_PlaceStop(self, a: ast.PlaceStop, scope):
        self._target(a.target, scope, "position", "place_stop")
        self.expect(a.price, scope, T.PRICE, "`place_stop ... at`")

    def _act_PlaceTarget(self, a: ast.PlaceTarget, scope):
        self._target(a.target, scope, "position", "place_target")
        self.expect(a.price, scope, T.PRICE, "`place_target ... at`")

    def _act_Alert(self, a: ast.Alert, scope):
        self.expect(a.message, scope, T.STRING, "`alert`")


def _article(t: Type) -> str:
    return T.describe(t)


def _article_word(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _text(e: ast.Expr) -> str:
    if isinstance(e, ast.Name):
        return e.id
    if isinstance(e, ast.Field):
        return f"{_text(e.obj)}.{e.name}"
    return "expression"


def _target_help(have: Type, kind: str, verb: str, binder: str) -> str:
    if isinstance(have, ObjT) and have.name == "order" and verb == "close":
        return "an order is cancelled, not closed: `cancel o`"
    if isinstance(have, ObjT) and have.name == "position" and verb == "cancel":
        return "a position is closed, not cancelled: `close p`"
    return f"quantify with `for {kind} {binder}` and write `{verb} {binder}`"


def _arith_help(left: Type, op: str, right: Type) -> str | None:
    if {left, right} == {T.POINTS, T.MONEY} or {left, right} == {T.PRICE, T.MONEY}:
        return "convert through the instrument: points_to_money(p.symbol, points)"
    if {left, right} == {T.TICKS, T.PRICE} or {left, right} == {T.TICKS, T.POINTS}:
        return "convert through the instrument: ticks_to_points(p.symbol, ticks)"
    if left == T.PRICE and right == T.PRICE and op == "+":
        return "prices can be subtracted (giving points), not added"
    return None


def _compare_help(left: Type, right: Type) -> str | None:
    if {left, right} == {T.DURATION, T.CLOCK}:
        return "a duration (30s) is an amount of time; a clock (15:08) is a time of day"
    if {left, right} == {T.SYMBOL, T.STRING}:
        return "write a symbol without quotes: MNQ"
    return _conversion_help(left, right) or _conversion_help(right, left)


def _conversion_help(have: Type, want: Type) -> str | None:
    """How to turn ``have`` into ``want`` through the instrument."""
    return _CONVERSIONS.get((have, want))


_CONVERSIONS = {
    (T.POINTS, T.MONEY): "convert through the instrument: points_to_money(p.symbol, points)",
    (T.TICKS, T.POINTS): "convert through the instrument: ticks_to_points(p.symbol, ticks)",
    (T.TICKS, T.PRICE): "ticks are a distance, a price a level: p.avg_price + ticks_to_points(p.symbol, ticks)",
}


# A bare number where a unit is wanted: how to write it with the unit.
_UNIT_SPELLING = {
    T.MONEY: "${}",
    T.DURATION: "{}s or {}m",
    T.TICKS: "{} ticks",
    T.PERCENT: "{}%",
    T.CLOCK: "{}:00",
}


def _literal_help(e: ast.Expr, want: Type) -> str | None:
    spelling = _UNIT_SPELLING.get(T.strip_optional(want))
    if spelling is None or not isinstance(e, (ast.IntLit, ast.DecimalLit)):
        return None
    return "write the unit: " + spelling.replace("{}", str(e.value))
