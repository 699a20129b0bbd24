"""Checked policy -> Python source -> one code object (the way Jinja compiles templates).

Every rule instance becomes a block of one generated ``evaluate(s)`` function: its `on` filter,
its `for` loop and its `when` condition, with parameters folded in as constants and literals
hoisted out of the hot path. A rule that holds only records ``(rule, target)``; its actions and
the reason are built afterwards, by per-rule functions generated beside it, and only for rules
that fired. Each rule's block has its own ``try``, so one rule that raises (a division by zero,
an instrument without a spec) yields the policy's ``on_error`` action and the others still run.
"""

from __future__ import annotations

import ast as pyast
import dataclasses
import datetime as dt
import decimal
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from riskc.dsl import ast, runtime
from riskc.dsl import types as T
from riskc.dsl.checker import CheckedPolicy, CheckResult, RuleInstance
from riskc.dsl.decision import Action, Built, Decision, Firing, plan, plan_keyed
from riskc.dsl.errors import Span
from riskc.dsl.format import format_action, format_expr
from riskc.dsl.types import Type
from riskc.dsl.walk import walk

_LANGUAGE_CALLS = {
    "abs": "abs",
    "min": "min",
    "max": "max",
    "len": "len",
    "coalesce": "_rt.coalesce",
    "ceil": "_rt.ceil",
    "floor": "_rt.floor",
}
_BINDER = "_t"  # the generated name of the `for` variable


class CompileError(Exception):
    """An internal error: the checker accepted something the compiler cannot translate."""


@dataclass(slots=True)
class _Unit:
    """Code generation state for one policy."""

    types: dict[int, Type]
    roots: frozenset[str] = frozenset()  # the snapshot's root names, from the schema the checker used
    constants: dict[str, Any] = field(default_factory=dict)
    counter: itertools.count = field(default_factory=itertools.count)
    lines: list[str] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)  # what each marked piece of code was translated from

    def const(self, value: Any) -> str:
        name = f"_c{next(self.counter)}"
        self.constants[name] = value
        return name

    def mark(self, e: ast.Expr, code: str) -> str:
        """``code`` wrapped in markers naming ``e``'s span; ``_unmark`` takes them out of the
        generated source and keeps where each piece landed (Jinja's ``debug_info``, by column)."""
        self.spans.append(e.span)
        return f"{_OPEN}{len(self.spans) - 1}{_NUMBERED}{code}{_CLOSE}"


_OPEN, _NUMBERED, _CLOSE = "\x00", "\x01", "\x02"
Marks = dict[int, list[tuple[int, int, int]]]  # generated line -> [(start col, end col, span index)]


def _unmark(text: str) -> tuple[str, Marks]:
    """The generated source without markers, and where each marked piece sits in it."""
    out: list[str] = []
    marks: Marks = {}
    line, col, i, open_ = 1, 0, 0, []
    while i < len(text):
        ch = text[i]
        if ch == _OPEN:
            end = text.index(_NUMBERED, i)
            open_.append((int(text[i + 1 : end]), col))
            i = end + 1
            continue
        if ch == _CLOSE:
            index, start = open_.pop()
            marks.setdefault(line, []).append((start, col, index))
            i += 1
            continue
        if ch == "\n":
            line, col = line + 1, -1
        out.append(ch)
        col += 1
        i += 1
    return "".join(out), marks


@dataclass(frozen=True, slots=True)
class _RuleCode:
    instance: RuleInstance
    index: int
    names: dict[str, str]  # language name -> Python expression (parameters, the binder)
    roots: frozenset[str] = frozenset()  # the snapshot's root names (`s.<root>`)


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """How one rule fared on one snapshot, for test coverage (see ``Program.trace``)."""

    index: int  # into Program.rules
    evaluated: bool  # the event passed the rule's `on` filter
    outcomes: tuple[
        tuple[bool | None, ...], ...
    ]  # per `when` evaluation (one per target): each clause, None if it raised


@dataclass(frozen=True, slots=True)
class Origin:
    """Where generated code came from: for each generated line, the `.risk` span of each piece
    of it, so a rule that fails at run time is reported at ``file.risk:line:col``."""

    filename: str
    marks: Marks
    spans: tuple[Span, ...]

    def locate(self, error: BaseException) -> Span | None:
        """The span of the innermost expression that was running when ``error`` was raised in
        the generated code (Python keeps each instruction's columns: ``co_positions``)."""
        frame, tb = None, error.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self.filename:
                frame = tb
            tb = tb.tb_next
        if frame is None:
            return None
        positions = list(frame.tb_frame.f_code.co_positions())
        line, _, col, end_col = positions[frame.tb_lasti // 2] if frame.tb_lasti // 2 < len(positions) else (None,) * 4
        if line is None:
            return None
        col, end_col = col or 0, end_col if end_col is not None else col or 0
        around = [m for m in self.marks.get(line, ()) if m[0] <= col and end_col <= m[1]]
        if not around:
            around = [m for m in self.marks.get(line, ()) if m[0] <= col < m[1]]
        if not around:
            return None
        innermost = min(around, key=lambda m: m[1] - m[0])
        return self.spans[innermost[2]]


class Program:
    """A compiled policy. ``evaluate`` is the hot path: it finds the rules that hold, and the
    ``Decision`` it returns builds actions and reasons only when they are read."""

    def __init__(
        self,
        policy: CheckedPolicy,
        source: str,
        namespace: dict[str, Any],
        origin: Origin | None = None,
        tracer: Callable[[], list[tuple[Callable, ...]]] | None = None,
    ):
        self.policy = policy
        self.source = source
        self.origin = origin
        self._evaluate: Callable = namespace["evaluate"]
        self._actions: list[Callable] = namespace["ACTIONS"]
        self._action_values: list[Callable] = namespace["VALUES"]
        self._explain: list[Callable] = namespace["EXPLAIN"]
        self._keys: list[Callable | None] = namespace["KEYS"]
        self._plans: dict[tuple, Callable[[list], tuple]] = {}  # plan's memo for this program (see _decide)
        self._whiles: dict[str, Callable] = namespace["WHILES"]
        self._make_tracer = tracer
        self._clause_tests: list[tuple[Callable, ...]] | None = None
        self.rules = policy.instances
        self._heads = [(i.id, i.severity) for i in self.rules]  # a firing's rule and severity
        self.timezone = policy.settings.timezone
        # Every attribute name the generated code reads (a superset of the snapshot fields its
        # rules use): the engine leaves fields no rule reads, like ages, out of the snapshot.
        self.reads = frozenset(re.findall(r"\.([A-Za-z_]\w*)", source))
        # The same for the conditions alone (the `evaluate` function): what decides which rules hold.
        self.condition_reads = frozenset(re.findall(r"\.([A-Za-z_]\w*)", source.split("\ndef _actions_", 1)[0]))
        # Whether a rule that runs on a quote reads the event (a quote's prices or contract): if
        # none does, a quote changes what the rules see only through the marks and the clock.
        self.sees_quotes = any(_admits(i.rule, "quote") and _reads_event(i.rule) for i in self.rules)
        self._like_quote: dict[str, bool] = {}
        # For each field of TIME_FIELDS, the durations the conditions compare it with (None: read
        # otherwise too; empty: not read). Set by compile_policy.
        self.time_thresholds: dict[str, frozenset | None] = {name: None for name in TIME_FIELDS}
        # How a price can change what the rules a quote runs decide (see _pnl_atoms; None: in
        # any way). Set by compile_policy.
        self.pnl_atoms: tuple | None = None

    def like_quote(self, kind: str) -> bool:
        """Whether an event of ``kind`` runs exactly the rules a quote runs (the `on` filters)."""
        like = self._like_quote.get(kind)
        if like is None:
            like = self._like_quote[kind] = all(_admits(i.rule, kind) == _admits(i.rule, "quote") for i in self.rules)
        return like

    def evaluate(self, snapshot) -> Decision:
        """What the policy decides on ``snapshot``. The rules that hold are known at once
        (``Decision.hits``); the planned actions and their reasons are built on first read, from
        the same snapshot (read them before the snapshot changes)."""
        hits = self._evaluate(snapshot)
        if not hits:
            return _NOTHING
        return _Evaluated(hits, self, snapshot)

    def trace(self, snapshot) -> tuple[RuleTrace, ...]:
        """Which rules ``snapshot`` reached and what each clause of their `when` came to (see
        ``when_clauses``): the coverage of `riskc test --coverage`. Compiled on first use and
        separate from ``evaluate``, so the hot path pays nothing for it."""
        if self._clause_tests is None:
            self._clause_tests = self._make_tracer() if self._make_tracer else [() for _ in self.rules]
        kind = snapshot.event.kind
        traces = []
        for index, instance in enumerate(self.rules):
            rule = instance.rule
            if rule.on and kind not in {k.text for k in rule.on}:
                traces.append(RuleTrace(index, False, ()))
                continue
            targets = _targets(rule, snapshot)
            tests = self._clause_tests[index]
            traces.append(
                RuleTrace(index, True, tuple(tuple(_outcome(t, snapshot, x) for t in tests) for x in targets))
            )
        return tuple(traces)

    def lockout_holds(self, rule_id: str, snapshot) -> bool:
        """Whether a `lockout while EXPR` set by ``rule_id`` still holds."""
        check = self._whiles.get(rule_id)
        return bool(check and check(snapshot))

    def _values(self, snapshot, hits: list[tuple[int, Any]]) -> tuple[Action, ...]:
        """The actions of the rules that hold as values: not planned, without reasons (a reason
        quotes prices that move). A rule that raised is left out."""
        make = self._action_values
        if len(hits) == 1:
            index, target = hits[0]
            return make[index](snapshot, target) if index >= 0 else ()
        actions: tuple[Action, ...] = ()
        for index, target in hits:
            if index >= 0:
                actions += make[index](snapshot, target)
        return actions

    def _decide(
        self, s, fired: list[tuple[int, Any]]
    ) -> tuple[tuple[Action, ...], tuple[Firing, ...], tuple[Firing, ...]]:
        actions: list[Action] = []
        firings: list[Firing] = []
        errors: list[Firing] = []
        explain, make, heads, keys = self._explain, self._actions, self._heads, self._keys
        # plan's memo key (plan_keyed): each rule that held, then what is not a literal in its
        # actions (``_key_N``); the rule's index fixes the number of its actions and their
        # literals. None when a rule raised: its actions are planned by their values (plan).
        key: list | None = []
        for index, target in fired:
            if index < 0:
                key = None
                errors.append(self._error_firing(-index - 1, target))
                actions.extend(self._on_error(-index - 1, target, s))
                continue
            try:  # the reason's values: its text is made when read (runtime.Reason)
                why = explain[index](s, target)
            except Exception as error:
                why = f"(could not explain: {error})"
            rule, severity = heads[index]
            firings.append(_new(Firing, (rule, severity, why, None if target is None else target_id(target))))
            try:
                made = make[index](s, target, why)
            except Exception as error:
                key = None
                errors.append(self._error_firing(index, error))
                actions.extend(self._on_error(index, error, s))
                continue
            actions += made
            if key is not None:
                key.append(index)
                varying = keys[index]
                if varying is not None:
                    key.append(varying(made))
        planned = plan(actions) if key is None else plan_keyed(actions, tuple(key), self._plans)
        return planned, tuple(firings), tuple(errors) if errors else ()

    def _failure(self, index: int, error: Exception) -> str:
        """`file.risk:3:8: rule could not be evaluated (ZeroDivisionError: ...)`."""
        where = self.origin.locate(error) if self.origin is not None else None
        at = f"{where}: " if where is not None else ""
        return f"{at}{self.rules[index].id} could not be evaluated ({_describe(error)})"

    def _error_firing(self, index: int, error: Exception) -> Firing:
        return Firing(self.rules[index].id, "critical", self._failure(index, error))

    def _on_error(self, index: int, error: Exception, s) -> list[Action]:
        instance = self.rules[index]
        why = f"{self._failure(index, error)}; on_error {self.policy.settings.on_error}"
        alert = Action("alert", instance.id, "critical", why, message=why)
        if self.policy.settings.on_error == "alert":
            return [alert]
        # The alert too: on a flat account the flatten changes nothing, and the error must still be heard.
        return [Action("flatten", instance.id, "critical", why), alert]


_NOTHING = Decision.of((), ())


class _Evaluated(Decision):
    """``Program.evaluate``'s decision: its actions and reasons are built from the snapshot when
    first read (``Program._decide``), its values each time they are asked for."""

    __slots__ = ("_program", "_snapshot")

    def __init__(self, hits: list[tuple[int, Any]], program: Program, snapshot) -> None:
        self.hits, self._program, self._snapshot, self._built = hits, program, snapshot, None

    def _made(self) -> Built:
        built = self._built
        if built is None:
            built = self._built = self._program._decide(self._snapshot, self.hits)
        return built

    @property
    def actions(self) -> tuple[Action, ...]:  # _made inlined: read once per change of the decision
        built = self._built
        if built is None:
            built = self._built = self._program._decide(self._snapshot, self.hits)
        return built[0]

    def values(self) -> tuple[Action, ...]:
        return self._program._values(self._snapshot, self.hits)


_new = tuple.__new__


def _admits(rule: ast.Rule, kind: str) -> bool:
    return not rule.on or any(k.text == kind for k in rule.on)


def _reads_event(rule: ast.Rule) -> bool:
    """Whether the rule names `event` anywhere (its condition, its actions, its parameters)."""
    return any(isinstance(node, ast.Name) and node.id == "event" for node in walk(rule))


def _describe(error: Exception) -> str:
    """An error as a person reads it: decimal arithmetic says what went wrong, not its flags."""
    if isinstance(error, decimal.DivisionByZero | ZeroDivisionError):
        return "division by zero"
    if isinstance(error, decimal.InvalidOperation):
        return "an undefined result (such as 0 / 0)"
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _targets(rule: ast.Rule, snapshot) -> tuple:
    if rule.binder is None:
        return (None,)
    return tuple(snapshot.positions if rule.binder.kind == "position" else snapshot.orders)


def _outcome(test: Callable, snapshot, target) -> bool | None:
    try:
        return bool(test(snapshot, target))
    except Exception:
        return None


def when_clauses(when: ast.Expr) -> tuple[ast.Expr, ...]:
    """The clauses coverage reports on: the operands of the condition's top-level `and` or `or`
    chain (`a or b or c` has three), or the whole condition when it is not one."""
    if not isinstance(when, ast.BoolOp):
        return (when,)

    def chain(e: ast.Expr) -> tuple[ast.Expr, ...]:
        if isinstance(e, ast.BoolOp) and e.op == when.op:
            return chain(e.left) + chain(e.right)
        return (e,)

    return chain(when)


def target_id(target) -> str | None:
    """What a rule fired for, as a value: a position's or an order's contract, else its id."""
    if target is None:
        return None
    try:  # an attribute read, not getattr(..., None): this runs for every rule that fires
        contract = target.contract_id
    except AttributeError:
        contract = None
    return contract or str(getattr(target, "id", ""))


def compile_policy(policy: CheckedPolicy, result: CheckResult) -> Program:
    """Translate one checked policy. ``result`` must be the CheckResult it came from (its type
    table types the literals)."""
    unit = _Unit(result.types, result.roots)
    rules = [
        _RuleCode(instance, i, _bind_params(instance, unit), unit.roots) for i, instance in enumerate(policy.instances)
    ]
    source = "\n".join(
        [
            *_evaluate_function(rules, unit),
            *itertools.chain.from_iterable(_action_function(r, unit, policy) for r in rules),
            *itertools.chain.from_iterable(_explain_function(r, unit, policy) for r in rules),
            *_while_functions(rules, unit),
            f"ACTIONS = [{', '.join(f'_actions_{r.index}' for r in rules)}]",
            f"EXPLAIN = [{', '.join(f'_explain_{r.index}' for r in rules)}]",
            f"VALUES = [{', '.join(f'_values_{r.index}' for r in rules)}]",
            f"KEYS = [{', '.join(f'_key_{r.index}' for r in rules)}]",
        ]
    )
    source, marks = _unmark(source)
    namespace: dict[str, Any] = {
        "_rt": runtime,
        "_Action": Action,
        "_Reason": runtime.Reason,
        "_new": tuple.__new__,
        "_Decimal": Decimal,
        "_dt": dt,
        **unit.constants,
    }
    filename = f"<policy {policy.path}>"
    exec(compile(source, filename, "exec"), namespace)
    origin = Origin(filename, marks, tuple(unit.spans))
    program = Program(policy, source, namespace, origin, tracer=lambda: _compile_clause_tests(rules, unit, policy))
    program.time_thresholds = {name: _thresholds(name, rules, unit, namespace) for name in TIME_FIELDS}
    program.pnl_atoms = _pnl_atoms(rules, unit, namespace)
    return program


# Fields of the snapshot that move with a price (engine/core/snapshot.py): what a quote changes.
PRICE_FIELDS = frozenset(
    {"mark", "unrealized_pnl", "net_pnl", "high_balance", "high_water_balance", "max_favorable", "max_adverse"}
)
# Of them, those that move one for one with the account's open P&L (the sum of the positions').
OPEN_PNL_FIELDS = frozenset({"unrealized_pnl", "net_pnl"})  # of `day`


def _pnl_atoms(rules: list[_RuleCode], unit: _Unit, namespace: dict[str, Any]) -> tuple | None:
    """How a price can change what the rules a quote runs decide: each atom of their conditions
    that reads a price, as ``(sign, left, right)`` (``left(s) OP right(s)`` is the atom, and
    ``left - right`` moves by ``sign`` times the change of the account's open P&L, as
    ``account.balance + day.unrealized_pnl <= ...`` does). Between two quotes that change
    nothing else, an atom can change only where ``left - right`` crosses zero: the engine skips
    a quote whose open P&L is on the same side of every crossing. None when a rule a quote runs
    reads a price in any other way (a position's P&L or mark, a high-water mark, ``min`` of a
    P&L, a rule with a binder): every quote that moves a position's price is evaluated."""
    atoms = []
    for r in rules:
        rule = r.instance.rule
        if rule.on and not any(k.text == "quote" for k in rule.on):
            continue
        found = _price_atoms(rule.when, r, unit)
        if found is None or (found and rule.binder is not None):
            return None
        for node, sign in found:
            codes = [_unmark(_expr(side, r, unit))[0] for side in (node.left, node.right)]
            scope = {**namespace, **unit.constants}  # after _expr: it may name new constants
            left, right = (eval(f"lambda s: {code}", scope) for code in codes)
            atoms.append((sign, left, right))
    return tuple(atoms)


def _reads_price(e: ast.Expr) -> bool:
    return any(isinstance(n, ast.Field) and n.name in PRICE_FIELDS for n in walk(e))


def _price_atoms(e: ast.Expr, r: _RuleCode, unit: _Unit) -> list[tuple[ast.Compare, int]] | None:
    """The atoms of a condition that read a price, with their sign (see ``_pnl_atoms``), as the
    compiled code has it (a clause folded to a constant is left out); None if a price is read
    otherwise."""
    if not _reads_price(e) or _expr(e, r, unit) in ("True", "False"):
        return []
    if isinstance(e, ast.BoolOp):
        found: list[tuple[ast.Compare, int]] = []
        for side in (e.left, e.right):
            if _expr(side, r, unit) in ("True", "False"):
                continue  # folded away (`mode == intraday and ...`)
            more = _price_atoms(side, r, unit)
            if more is None:
                return None
            found += more
        return found
    if isinstance(e, ast.Not):
        return _price_atoms(e.operand, r, unit)
    if isinstance(e, ast.Compare) and e.op in ("<", "<=", ">", ">="):
        left, right = _open_pnl_sign(e.left, r), _open_pnl_sign(e.right, r)
        if left is None or right is None or left - right not in (1, -1):
            return None
        return [(e, left - right)]
    return None


def _open_pnl_sign(e: ast.Expr, r: _RuleCode) -> int | None:
    """How many times the account's open P&L ``e`` counts (a sum or difference of terms, one
    `day.unrealized_pnl` or `day.net_pnl` each); None if it reads a price otherwise."""
    if not _reads_price(e):
        return 0
    if isinstance(e, ast.Field) and e.name in OPEN_PNL_FIELDS:
        day = e.obj
        return (
            1 if isinstance(day, ast.Name) and day.id == "day" and day.id in r.roots and day.id not in r.names else None
        )
    if isinstance(e, ast.Arith) and e.op in ("+", "-"):
        left, right = _open_pnl_sign(e.left, r), _open_pnl_sign(e.right, r)
        if left is None or right is None:
            return None
        return left + right if e.op == "+" else left - right
    if isinstance(e, ast.Neg):
        inner = _open_pnl_sign(e.operand, r)
        return None if inner is None else -inner
    return None


# Fields of the snapshot that move with time inside a second (engine/core/snapshot.py): a
# position's `uncovered_for` and `age`, an order's `age` (`day.fills_within` is a method).
TIME_FIELDS = ("uncovered_for", "age")


def _thresholds(name: str, rules: list[_RuleCode], unit: _Unit, namespace: dict[str, Any]) -> frozenset | None:
    """The durations the rules compare the field ``name`` with, when that is all they do with
    it (``p.uncovered_for >= grace``, with a constant side): its truth then changes only when
    the field crosses one of them, so the engine knows when time alone can change a decision.
    Empty when no rule reads the field; None when one reads it in any other way (an action, a
    sum, a comparison with data), or a threshold is not a constant duration."""
    found: set[dt.timedelta] = set()
    for r in rules:
        compared: set[int] = set()
        for node in walk(r.instance.rule.when):
            if not isinstance(node, ast.Compare) or node.op not in ("<", "<=", ">", ">=", "==", "!="):
                continue
            for side, other in ((node.left, node.right), (node.right, node.left)):
                if isinstance(side, ast.Field) and side.name == name and _is_constant(other, r):
                    try:
                        value = eval(_unmark(_expr(other, r, unit))[0], {**namespace, **unit.constants})
                    except Exception:
                        return None
                    if type(value) is not dt.timedelta:
                        return None
                    found.add(value)
                    compared.add(id(side))
        if any(isinstance(n, ast.Field) and n.name == name and id(n) not in compared for n in walk(r.instance.rule)):
            return None
    return frozenset(found)


def _compile_clause_tests(rules: list[_RuleCode], unit: _Unit, policy: CheckedPolicy) -> list[tuple[Callable, ...]]:
    """One test function per clause of each rule's `when` (``when_clauses``), for ``Program.trace``."""
    lines = ["CLAUSES = []"]
    for r in rules:
        tests = "".join(f"lambda s, {_BINDER}: {_expr(c, r, unit)}, " for c in when_clauses(r.instance.rule.when))
        lines.append(f"CLAUSES.append(({tests}))")
    namespace: dict[str, Any] = {"_rt": runtime, "_Decimal": Decimal, "_dt": dt, **unit.constants}
    exec(compile(_unmark("\n".join(lines))[0], f"<clauses of {policy.path}>", "exec"), namespace)
    return namespace["CLAUSES"]


# ---- parameters --------------------------------------------------------------------------------


def _bind_params(instance: RuleInstance, unit: _Unit) -> dict[str, str]:
    names = {}
    for param in instance.rule.params:
        value = constant_value(instance.args[param.name.text], unit.types)
        names[param.name.text] = unit.const(value)
    if instance.rule.binder is not None:
        names[instance.rule.binder.var.text] = _BINDER
    return names


def constant_value(e: ast.Expr, types: dict[int, Type]) -> Any:
    """The runtime value of a constant expression (a `use` argument or a parameter default)."""
    if isinstance(e, ast.Neg):
        return -constant_value(e.operand, types)
    if isinstance(e, ast.ListExpr):
        return tuple(constant_value(i, types) for i in e.items)
    if isinstance(e, ast.MapExpr):
        return {constant_value(m.key, types): constant_value(m.value, types) for m in e.entries}
    if isinstance(e, ast.Name):  # an enum constant
        return e.id
    return literal_value(e, types.get(id(e)))


def literal_value(e: ast.Literal, typ: Type | None) -> Any:
    match e:
        case ast.IntLit(value=v):
            return Decimal(v) if typ in (T.DECIMAL, T.PRICE, T.POINTS) else v
        case ast.DecimalLit(value=v) | ast.MoneyLit(amount=v):
            return v
        case ast.PercentLit(value=v):
            return v / 100
        case ast.DurationLit(seconds=s):
            return dt.timedelta(seconds=s)
        case ast.ClockLit(value=v) | ast.DateLit(value=v) | ast.StringLit(value=v) | ast.BoolLit(value=v):
            return v
        case ast.TicksLit(count=n) | ast.ContractsLit(count=n):
            return n
        case ast.SymbolLit(code=c):
            return c
        case ast.NoneLit():
            return None
    raise CompileError(f"not a literal: {e!r}")


# ---- the hot path --------------------------------------------------------------------------------


def _evaluate_function(rules: list[_RuleCode], unit: _Unit) -> list[str]:
    # The roots are read from the snapshot where a rule reads them: loading the ones read more
    # than once into locals first measured nothing (CPython 3.13 reads a slot about as fast as a
    # local), and it never applied anyway once the code carried span markers (`s.day` + marker).
    body = [line for r in rules for line in _rule_block(r, unit)]
    return ["def evaluate(s):", "    fired = []", "    kind = s.event.kind", *body, "    return fired"]


def _rule_block(r: _RuleCode, unit: _Unit) -> list[str]:
    rule, indent = r.instance.rule, "        "
    body = [f"    # {r.instance.id}", "    try:"]
    if rule.on:
        kinds = tuple(k.text for k in rule.on)
        body.append(f"{indent}if kind in {unit.const(frozenset(kinds))}:")
        indent += "    "
    if rule.binder is not None:
        collection = "s.positions" if rule.binder.kind == "position" else "s.orders"
        body.append(f"{indent}for {_BINDER} in {collection}:")
        indent += "    "
    target = _BINDER if rule.binder is not None else "None"
    condition = _expr(rule.when, r, unit)
    if condition == "False":
        return [f"    # {r.instance.id}: never fires with these arguments"]
    body.append(f"{indent}if {condition}:")
    body.append(f"{indent}    fired.append(({r.index}, {target}))")
    body += ["    except Exception as error:", f"        fired.append(({-r.index - 1}, error))"]
    return body


def _expr(e: ast.Expr, r: _RuleCode, unit: _Unit) -> str:
    """Python source for a checked expression; what depends on no data is folded to a constant
    (parameters are constants, so `count == gross` costs nothing at run time)."""
    code = _translate(e, r, unit)
    if isinstance(e, ast.LITERAL_TYPES) or code in ("True", "False"):
        return code
    if not _is_constant(e, r):
        return unit.mark(e, code)
    try:
        value = eval(code, {"_rt": runtime, **unit.constants})
    except Exception:  # `$1 / 0`: left to fail at run time, where on_error and its location apply
        return unit.mark(e, code)
    if isinstance(value, bool) or value is None:
        return repr(value)
    return unit.const(value)


def _translate(e: ast.Expr, r: _RuleCode, unit: _Unit) -> str:
    match e:
        case ast.Name(id=name):
            return _name(name, r)
        case ast.Field(obj=obj, name=name):
            return f"{_expr(obj, r, unit)}.{name}"
        case ast.Call():
            return _call(e, r, unit)
        case ast.Neg(operand=operand):
            return f"(-{_expr(operand, r, unit)})"
        case ast.Not(operand=operand):
            inner = _expr(operand, r, unit)
            return {"True": "False", "False": "True"}.get(inner, f"(not {inner})")
        case ast.BoolOp(op=op, left=left, right=right):
            return _bool_op(op, _expr(left, r, unit), _expr(right, r, unit))
        case ast.Compare(op=op, left=left, right=right) if _may_be_none(left, right, op, unit):
            return f"{_NONE_SAFE[op]}({_expr(left, r, unit)}, {_expr(right, r, unit)})"
        case ast.Compare(op=op, left=left, right=right):
            return f"({_expr(left, r, unit)} {op} {_expr(right, r, unit)})"
        case ast.Conditional(body=body, test=test, orelse=orelse):
            return f"({_expr(body, r, unit)} if {_expr(test, r, unit)} else {_expr(orelse, r, unit)})"
        case ast.Aggregate():
            return _aggregate(e, r, unit)
        case ast.Arith():
            return _arith(e, r, unit)
        case ast.ListExpr(items=items):
            inner = "".join(f"{_expr(i, r, unit)}, " for i in items)
            return f"({inner})"
        case ast.MapExpr(entries=entries):
            inner = ", ".join(f"{_expr(m.key, r, unit)}: {_expr(m.value, r, unit)}" for m in entries)
            return f"{{{inner}}}"
    return unit.const(literal_value(e, unit.types.get(id(e))))


# An ordering comparison with none is false (PRODUCT.md §3.6).
_NONE_SAFE = {"<": "_rt.less", "<=": "_rt.less_equal", ">": "_rt.greater", ">=": "_rt.greater_equal"}


def _may_be_none(left: ast.Expr, right: ast.Expr, op: str, unit: _Unit) -> bool:
    types = (unit.types.get(id(left)), unit.types.get(id(right)))
    return op in _NONE_SAFE and any(isinstance(t, T.OptionalT) for t in types)


def _aggregate(e: ast.Aggregate, r: _RuleCode, unit: _Unit) -> str:
    """A generator expression over the list: `sum((_a1.qty for _a1 in s.positions if ...), 0)`.
    Items that are none are left out of `sum`, `min` and `max`; `min`/`max` of nothing is none."""
    var = f"_a{next(unit.counter)}"
    inner = dataclasses.replace(r, names={**r.names, e.var.text: var})
    items = _expr(e.items, r, unit)
    where = [] if e.where is None else [_expr(e.where, inner, unit)]
    body = _expr(e.expr, inner, unit)
    item_type = unit.types.get(id(e.expr))
    if e.func == "count":
        tests = where + ([body] if item_type == T.BOOL else [])
        return f"sum(1 for {var} in {items} if {' and '.join(tests)})" if tests else f"len({items})"
    loop = f"for {var} in {items}" + "".join(f" if {w}" for w in where)
    if isinstance(item_type, T.OptionalT):
        value = f"_v{next(unit.counter)}"
        loop += f" for {value} in ({body},) if {value} is not None"
        body = value
    if e.func in ("any", "all"):
        return f"{e.func}({body} {loop})"
    if e.func == "sum":
        return f"sum(({body} {loop}), {unit.const(zero_of(unit.types.get(id(e))))})"
    return f"{e.func}(({body} {loop}), default=None)"


def zero_of(t: Type | None) -> Any:
    """What a `sum` of no items is: zero of its unit."""
    if t == T.DURATION:
        return dt.timedelta(0)
    if t in (T.INT, T.CONTRACTS, T.TICKS):
        return 0
    return Decimal(0)


def _bool_op(op: str, left: str, right: str) -> str:
    """`and`/`or` with a folded side simplified away."""
    absorbing, neutral = ("False", "True") if op == "and" else ("True", "False")
    if absorbing in (left, right):
        return absorbing
    if left == neutral:
        return right
    if right == neutral:
        return left
    return f"({left} {op} {right})"


def _name(name: str, r: _RuleCode) -> str:
    if name in r.names:
        return r.names[name]
    if name in r.roots:
        return f"s.{name}"
    return repr(name)  # an enum constant, resolved by the checker


def _call(e: ast.Call, r: _RuleCode, unit: _Unit) -> str:
    args = [_expr(a.value, r, unit) for a in _ordered_args(e, unit)]
    if isinstance(e.func, ast.Field):
        return f"{_expr(e.func, r, unit)}({', '.join(args)})"
    name = e.func.id
    if name == "coalesce" and (unit.constants.get(args[0]) is not None):
        return args[0]  # an optional parameter that was given: no run-time test needed
    if name == "get":
        return f"{args[0]}.get({args[1]}, {args[2]})"
    if name in _LANGUAGE_CALLS:
        return f"{_LANGUAGE_CALLS[name]}({', '.join(args)})"
    return f"s.{name}({', '.join(args)})"  # functions the engine provides are snapshot methods


def _ordered_args(e: ast.Call, unit: _Unit) -> list[ast.Arg]:
    """Arguments in the signature's order, whatever order the names were written in."""
    signature = unit.types.get(id(e.func))
    if not isinstance(signature, T.FuncT) or all(a.name is None for a in e.args):
        return list(e.args)
    position = {p.name: i for i, p in enumerate(signature.params)}
    return sorted(e.args, key=lambda a: position[a.name.text] if a.name else e.args.index(a))


def _arith(e: ast.Arith, r: _RuleCode, unit: _Unit) -> str:
    left, right = _expr(e.left, r, unit), _expr(e.right, r, unit)
    lt, rt = unit.types.get(id(e.left)), unit.types.get(id(e.right))
    if e.op == "/":
        return f"_rt.divide({left}, {right})"
    if e.op == "*" and T.DURATION in (lt, rt):
        return f"_rt.multiply({left}, {right})"
    if lt == T.CLOCK and rt == T.DURATION:
        return f"_rt.clock_add({left}, {right}, {1 if e.op == '+' else -1})"
    if lt == T.CLOCK and rt == T.CLOCK:
        return f"_rt.clock_diff({left}, {right})"
    return f"({left} {e.op} {right})"


# ---- actions and reasons (only on a breach) ------------------------------------------------------


def _action_function(r: _RuleCode, unit: _Unit, policy: CheckedPolicy) -> list[str]:
    instance = r.instance
    head = {"rule": repr(instance.id), "severity": repr(instance.severity), "why": "why"}
    lines = [f"def _actions_{r.index}(s, {_BINDER}, why):", "    return ["]
    calls = [_action_call(action, r, unit, policy, head) for action in instance.rule.actions]
    lines += [f"        {call}," for call in calls]
    lines.append("    ]")
    # The same as values, without a reason (what the engine compares while a breach holds): an
    # action made of constants alone is built once.
    lines += [f"def _values_{r.index}(s, {_BINDER}):", "    return ("]
    for call in calls:
        call = call.replace(", why, ", ", '', ", 1)
        fields = call.removeprefix("_new(_Action, (").removesuffix(",))").split(", ")
        constant = all(_CONSTANT_CODE.fullmatch(f) for f in fields)
        lines.append(
            f"        {unit.const(eval(call, {'_new': tuple.__new__, '_Action': Action}))},"
            if constant
            else f"        {call},"
        )
    lines.append("    )")
    # What plan's memo key needs of the list ``_actions_N`` returns (see Program._decide): the
    # fields of each action that are not literals (the reason left out). None: all literals.
    varying = [f"m[{n}][{f}]" for n, call in enumerate(calls) for f in _varying_fields(call)]
    lines.append(f"_key_{r.index} = lambda m: ({', '.join(varying)},)" if varying else f"_key_{r.index} = None")
    return lines


def _varying_fields(call: str) -> list[int]:
    """The positions of the fields of an action's code (``_new(_Action, (...))``) that are not
    literals, the reason's (`why`) left out."""
    fields = pyast.parse(_unmark(call)[0], mode="eval").body.args[1].elts
    assert len(fields) == len(Action._fields), call
    return [n for n, code in enumerate(fields) if n != 3 and not isinstance(code, pyast.Constant)]


_CONSTANT_CODE = re.compile(r"None|'[^'\\]*'|-?\d+")  # a field's code that is a literal


def _action_call(a: ast.Action, r: _RuleCode, unit: _Unit, policy: CheckedPolicy, head: dict[str, str]) -> str:
    def build(kind: str, **fields: str) -> str:
        # Every field in order, built with tuple.__new__: a third of the named tuple's own
        # constructor, which counts while a breach holds (the engine compares the actions).
        values = {"kind": repr(kind), **head, **fields}
        return "_new(_Action, (" + ", ".join(values.get(name, "None") for name in Action._fields) + ",))"

    def ex(e: ast.Expr) -> str:
        return _expr(e, r, unit)

    def target(e: ast.Expr) -> dict[str, str]:
        code = ex(e)
        return {"symbol": f"{code}.symbol", "contract_id": f"{code}.contract_id"}

    zone = repr(policy.settings.timezone)
    match a:
        case ast.Flatten():
            return build("flatten")
        case ast.Close(target=t):
            return build("close", **target(t))
        case ast.Reduce(target=t, to=to):
            return build("reduce", **target(t), to=ex(to))
        case ast.ReduceTotal(to=to, counting=counting) if _counts_net(counting, r, unit):
            return build("reduce_total", to=ex(to), condition=ex(counting))
        case ast.ReduceTotal(to=to):
            return build("reduce_total", to=ex(to))
        case ast.CancelOrders(symbol=symbol):
            return build("cancel_orders", symbol=ex(symbol)) if symbol is not None else build("cancel_orders")
        case ast.Cancel(target=t):
            return build("cancel", **target(t), order_id=f"{ex(t)}.id")
        case ast.Lockout(mode="for", value=v):
            return build("lockout", until=f"s.session.now + {ex(v)}")
        case ast.Lockout(mode="manual"):
            return build("lockout", condition="'manual'")
        case ast.Lockout(mode="while"):
            return build("lockout", condition="'while'")
        case ast.Lockout(mode="until", value=v):
            return build("lockout", until=_until(v, r, unit, zone))
        case ast.Block(symbol=symbol, duration=duration):
            until = f"s.session.now + {ex(duration)}" if duration is not None else "s.next_trading_day"
            return build("block", symbol=ex(symbol), until=until)
        case ast.MoveStop(target=t, price=price) | ast.PlaceStop(target=t, price=price):
            kind = "move_stop" if isinstance(a, ast.MoveStop) else "place_stop"
            return build(kind, **target(t), price=ex(price), side=f"{ex(t)}.side")
        case ast.PlaceTarget(target=t, price=price):
            return build("place_target", **target(t), price=ex(price), side=f"{ex(t)}.side")
        case ast.Alert(message=message):
            return build("alert", message=ex(message))
    raise CompileError(f"unknown action {a!r}")


def _counts_net(counting: ast.Expr | None, r: _RuleCode, unit: _Unit) -> bool:
    """Whether `reduce_total ... counting X` may count net: gross is the default, said or not."""
    if counting is None:
        return False
    code = _expr(counting, r, unit)
    return unit.constants.get(code, code) not in ("gross", "'gross'")


def _until(v: ast.Expr, r: _RuleCode, unit: _Unit, zone: str) -> str:
    value = _expr(v, r, unit)
    if unit.types.get(id(v)) == T.CLOCK:
        return f"_rt.lockout_until(s, {value}, {zone})"
    return value


def _explain_function(r: _RuleCode, unit: _Unit, policy: CheckedPolicy) -> list[str]:
    """``rule: fact; fact → actions``. The condition becomes code that collects its facts (see ``_capture``);
    each atom that made it hold is shown with its values: `day.realized_pnl = -$1,020.00 <= -$1,000.00`.
    ``_explain_N`` captures the values the text shows (a tuple: cheap, and never read from a later
    snapshot); ``_render_N`` makes the text of them when a record, an alert or a view reads it."""
    zone = repr(policy.settings.timezone)
    values, texts = _action_texts(r, unit, zone)
    subject = f"{_BINDER}.symbol" if r.instance.rule.binder is not None else "None"
    shown = f"{r.instance.id!r} + ' [' + v[0] + ']'" if r.instance.rule.binder is not None else repr(r.instance.id)
    facts: list[str] = []
    captured = _capture(r.instance.rule.when, r, unit, zone, True, facts)
    return [
        *facts,
        f"def _explain_{r.index}(s, {_BINDER}):",
        f"    return _Reason(_render_{r.index}, ({subject}, {captured}, ({values})))",
        f"def _render_{r.index}(v):",
        "    a = v[2]",
        f"    return {shown} + ': ' + '; '.join([render(x) for render, x in v[1]]) + ' → ' + ', '.join([{texts}])",
    ]


def _subject(r: _RuleCode) -> str:
    """` + ' [MNQ]'`: which position or order a quantified rule fired for."""
    return f" + ' [' + {_BINDER}.symbol + ']'" if r.instance.rule.binder is not None else ""


def _capture(e: ast.Expr, r: _RuleCode, unit: _Unit, zone: str, want: bool, facts: list[str]) -> str:
    """Code for the list of the facts of ``e`` that made it come out ``want``, each as (its text
    function, the values it shows): every conjunct of an `and`, the first disjunct that holds of
    an `or` (De Morgan under `not`); constants are left out, they are the policy's settings, not
    facts about the account. The text functions go to ``facts`` (definitions)."""
    if _is_constant(e, r):
        return "[]"
    if isinstance(e, ast.BoolOp):
        left = _capture(e.left, r, unit, zone, want, facts)
        right = _capture(e.right, r, unit, zone, want, facts)
        if (e.op == "and") == want:
            return f"({left} + {right})"
        return f"({left} if {_comes_out(e.left, r, unit, want)} else {right})"
    if isinstance(e, ast.Not):
        return _capture(e.operand, r, unit, zone, not want, facts)
    values, text = _fact_parts(e, r, unit, zone)
    name = f"_fact_{r.index}_{len(facts)}"
    facts.append(f"{name} = lambda v: {text}")
    return f"([({name}, ({values},))] if {_comes_out(e, r, unit, want)} else [])"


def _comes_out(e: ast.Expr, r: _RuleCode, unit: _Unit, want: bool) -> str:
    """Code that is true when ``e`` comes out ``want``. A comparison is a bool already (the
    none-safe ones too: ``runtime.less`` ...); anything else is tested for its truth."""
    code = _expr(e, r, unit)
    if isinstance(e, ast.Compare):
        return code if want else f"not {code}"
    return f"bool({code}) == {want}"


def _fact_parts(atom: ast.Expr, r: _RuleCode, unit: _Unit, zone: str) -> tuple[str, str]:
    """(code of the values an atom's fact shows, code of its text made of them: ``v[0]``, ...)."""
    if isinstance(atom, ast.Compare):
        left, right = _shown(atom.left, "v[0]", r, unit, zone), _shown(atom.right, "v[1]", r, unit, zone)
        return f"{_expr(atom.left, r, unit)}, {_expr(atom.right, r, unit)}", f"{left} + ' {atom.op} ' + {right}"
    return _expr(atom, r, unit), f"{format_expr(atom)!r} + ' = ' + _rt.show(v[0], {zone})"


def _shown(e: ast.Expr, value: str, r: _RuleCode, unit: _Unit, zone: str) -> str:
    """`name = value` for what depends on the snapshot, the value alone for a constant."""
    text = _show_value(e, value, unit, zone)
    if _is_constant(e, r):
        return text
    return f"{format_expr(e)!r} + ' = ' + {text}"


def _show_value(e: ast.Expr, value: str, unit: _Unit, zone: str) -> str:
    if T.strip_optional(unit.types.get(id(e))) == T.MONEY:
        return f"_rt.show_money({value})"
    return f"_rt.show({value}, {zone})"


def _is_constant(e: ast.Expr, r: _RuleCode) -> bool:
    for node in walk(e):
        if isinstance(node, (ast.Field, ast.Call)):
            return False
        if isinstance(node, ast.Name) and (node.id in r.roots or _is_variable(r.names.get(node.id))):
            return False
    return True


def _is_variable(code: str | None) -> bool:
    """The rule's binder or an aggregate's loop variable: a name whose value is data."""
    return code == _BINDER or (code is not None and code.startswith("_a"))


def _action_texts(r: _RuleCode, unit: _Unit, zone: str) -> tuple[str, str]:
    """(code of the values the actions' texts show, code of the texts made of them: ``a[0]``, ...)."""
    values: list[str] = []
    texts = []
    for action in r.instance.rule.actions:
        parts, text = _action_text(action, r, unit, zone)
        names = {f"_{n}": f"a[{len(values) + n}]" for n in range(len(parts))}
        values += parts
        texts.append(text.format(**names))
    return "".join(f"{v}, " for v in values), ", ".join(texts)


def _action_text(a: ast.Action, r: _RuleCode, unit: _Unit, zone: str = "None") -> tuple[list[str], str]:
    """The action as the reason shows it, with values (`lockout until 2026-03-10 17:00 CT`): the
    code of the values it shows, and the code of its text with ``{_0}``, ``{_1}`` for them."""
    words = format_action(a)
    match a:
        case ast.Lockout(mode="for", value=v):
            return [f"s.session.now + {_expr(v, r, unit)}"], f"'lockout until ' + _rt.show({{_0}}, {zone})"
        case ast.Lockout(mode="until", value=v):
            return [_until(v, r, unit, zone)], f"'lockout until ' + _rt.show({{_0}}, {zone})"
        case ast.Reduce(target=t, to=to):
            return [f"{_expr(t, r, unit)}.symbol", _expr(to, r, unit)], "'reduce ' + {_0} + ' to ' + str({_1})"
        case ast.ReduceTotal(to=to):
            if _counts_net(a.counting, r, unit):
                return [_expr(to, r, unit), _expr(a.counting, r, unit)], (
                    "'reduce_total to ' + str({_0}) + ' counting ' + str({_1})"
                )
            return [_expr(to, r, unit)], "'reduce_total to ' + str({_0})"
        case ast.Close(target=t):
            return [f"{_expr(t, r, unit)}.symbol"], "'close ' + {_0}"
        case ast.Cancel(target=t):
            return [f"{_expr(t, r, unit)}.id"], "'cancel order ' + str({_0})"
        case ast.Block(symbol=symbol):
            return [_expr(symbol, r, unit)], "'block ' + str({_0})"
        case ast.CancelOrders(symbol=symbol) if symbol is not None:
            return [_expr(symbol, r, unit)], "'cancel_orders for ' + str({_0})"
        case ast.PlaceTarget(target=t, price=price):
            return [
                f"{_expr(t, r, unit)}.symbol",
                _expr(price, r, unit),
            ], "'place_target ' + {_0} + ' at ' + _rt.show({_1})"
        case ast.MoveStop(target=t, price=price) | ast.PlaceStop(target=t, price=price):
            verb = "move_stop" if isinstance(a, ast.MoveStop) else "place_stop"
            return [
                f"{_expr(t, r, unit)}.symbol",
                _expr(price, r, unit),
            ], f"'{verb} ' + {{_0}} + ' to ' + _rt.show({{_1}})"
    return [], repr(words).replace("{", "{{").replace("}", "}}")


def _while_functions(rules: list[_RuleCode], unit: _Unit) -> list[str]:
    lines = ["WHILES = {}"]
    for r in rules:
        for action in r.instance.rule.actions:
            if isinstance(action, ast.Lockout) and action.mode == "while":
                lines.append(f"def _while_{r.index}(s, {_BINDER}=None):")
                lines.append(f"    return {_expr(action.value, r, unit)}")
                lines.append(f"WHILES[{r.instance.id!r}] = _while_{r.index}")
    return lines
