"""Static checks over a set of files: what `riskc check` runs and what the compiler trusts.

A policy that passes cannot fail at runtime for a reason knowable offline. The checker runs an
ordered tuple of passes (``PASSES``), each a verb over a shared ``Context``. Files are of two
kinds: *library* files only define rules (the standard library, or a file of parameterised
rules); *policy* files activate rules, with `use` lines and parameterless `rule`s.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType

from riskc.dsl import ast
from riskc.dsl import types as T
from riskc.dsl.errors import (
    ARITY_ERROR,
    BAD_ARGUMENT,
    BAD_SETTING,
    CONFLICTING_ACTIONS,
    DUPLICATE,
    EMPTY_FILE,
    NEVER_FIRES,
    SCOPE_ERROR,
    TYPE_ERROR,
    UNKNOWN_NAME,
    UNUSED_PARAM,
    Diagnostic,
    DiagnosticSink,
    Span,
)
from riskc.dsl.format import format_action, format_expr
from riskc.dsl.parser import ParseResult, parse
from riskc.dsl.schema import Schema
from riskc.dsl.typecheck import Scope, TypeChecker, suggest
from riskc.dsl.types import Type
from riskc.dsl.walk import walk

SEVERITIES = ("info", "low", "medium", "high", "critical")
ON_ERROR = ("flatten", "alert")
SCOPES = ("account", "group")
DEFAULT_TIMEZONE = "America/Chicago"
DEFAULT_DAY_START = dt.time(17, 0)


@dataclass(frozen=True, slots=True)
class Settings:
    """The policy header, with defaults filled in (PRODUCT.md §3.1)."""

    name: str | None = None
    timezone: str = DEFAULT_TIMEZONE
    trading_day_starts: dt.time = DEFAULT_DAY_START
    on_error: str = "flatten"
    scope: str = "account"  # `scope group`: a group policy (`groups:` in riskc.yaml), which sees `group`


@dataclass(frozen=True, slots=True)
class RuleDef:
    rule: ast.Rule
    path: str
    library: bool


@dataclass(frozen=True, slots=True)
class RuleInstance:
    """A rule switched on in a policy: its id, its definition and every parameter's value."""

    id: str
    rule: ast.Rule
    args: Mapping[str, ast.Expr]
    span: Span  # the `use` line, or the rule itself for a parameterless rule
    severity: str

    @property
    def name(self) -> str:
        return self.rule.id


@dataclass(frozen=True, slots=True)
class CheckedPolicy:
    path: str
    settings: Settings
    instances: tuple[RuleInstance, ...]


@dataclass(slots=True)
class CheckResult:
    policies: list[CheckedPolicy]
    diagnostics: list[Diagnostic]
    types: dict[int, Type]  # node id -> type, for the compiler
    definitions: dict[str, RuleDef]
    sources: dict[str, str]
    roots: frozenset[str] = frozenset({"event"})  # the names a rule reads the snapshot through

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]


@dataclass(slots=True)
class Context:
    schema: Schema
    parsed: list[tuple[ParseResult, bool]]  # (result, is_library)
    sink: DiagnosticSink = field(default_factory=DiagnosticSink)
    types: dict[int, Type] = field(default_factory=dict)
    definitions: dict[str, RuleDef] = field(default_factory=dict)
    settings: dict[str, Settings] = field(default_factory=dict)
    policies: list[CheckedPolicy] = field(default_factory=list)

    @property
    def modules(self) -> Iterable[tuple[ast.Module, bool]]:
        return ((r.module, lib) for r, lib in self.parsed)

    @property
    def checker(self) -> TypeChecker:
        return TypeChecker(self.sink, self.types)


# ---- passes ------------------------------------------------------------------------------------


def collect_rules(ctx: Context) -> None:
    """Every rule definition of every file in one namespace; a name defined twice is an error."""
    for module, library in ctx.modules:
        for rule in module.rules:
            previous = ctx.definitions.get(rule.id)
            if previous is not None:
                _report_duplicate_rule(rule, previous, ctx.sink)
                continue
            ctx.definitions[rule.id] = RuleDef(rule, module.span.file, library)


def _report_duplicate_rule(rule: ast.Rule, previous: RuleDef, sink: DiagnosticSink) -> None:
    if previous.library:  # the standard library: its install path means nothing to the reader
        sink.error(
            DUPLICATE,
            f"rule `{rule.id}` is already a standard library rule",
            rule.name.span,
            help=f"rename this rule, or switch the standard one on with `use {rule.id}(...)`",
        )
        return
    if previous.path != rule.name.span.file:
        # Usually a copy of a ready-made policy beside the original (what the README invites).
        sink.error(
            DUPLICATE,
            f"rule `{rule.id}` is already defined in {previous.rule.name.span}: the files given together"
            f" (or found in one folder) form one policy set, and both would be active at once",
            rule.name.span,
            help=f"to use only one of them, move the other out of the folder or give its path alone "
            f"(`riskc check {rule.name.span.file}`); to keep both, rename the rule in one",
        )
        return
    sink.error(
        DUPLICATE,
        f"rule `{rule.id}` is already defined at {previous.rule.name.span}",
        rule.name.span,
        help="rename one of them",
    )


def check_headers(ctx: Context) -> None:
    for module, _ in ctx.modules:
        ctx.settings[module.span.file] = _settings(module.header, ctx.sink)


def check_rule_bodies(ctx: Context) -> None:
    """Types of parameters, defaults, the `when` condition and every action, once per rule,
    against the schema of its file's scope (a group policy sees `group`, not one account)."""
    for definition in ctx.definitions.values():
        if _scope_of(definition, ctx) == "group":
            _check_rule(definition.rule, ctx, ctx.schema.group or ctx.schema)
            _check_group_rule(definition.rule, ctx.sink)
        else:
            _check_rule(definition.rule, ctx, ctx.schema)


def _scope_of(definition: RuleDef, ctx: Context) -> str:
    settings = ctx.settings.get(definition.path)
    return settings.scope if settings is not None else "account"


def activate_rules(ctx: Context) -> None:
    """Each policy file's rule instances: its `use` lines and its parameterless rules."""
    for module, library in ctx.modules:
        if library or not _is_policy(module):
            continue
        path = module.span.file
        instances = [_instantiate(use, ctx) for use in module.uses]
        instances += [_own_instance(rule) for rule in module.rules if not rule.params and _is_defined(rule, ctx)]
        scope = ctx.settings[path].scope
        instances = [i if i is None or _in_scope(i, scope, ctx) else None for i in instances]
        kept = _unique_ids([i for i in instances if i is not None], ctx.sink)
        ctx.policies.append(CheckedPolicy(path, ctx.settings[path], tuple(kept)))


def _in_scope(instance: RuleInstance, scope: str, ctx: Context) -> bool:
    """A group policy uses group rules, an account policy account rules: each reads its own snapshot."""
    definition = ctx.definitions[instance.rule.id]
    written_for = _scope_of(definition, ctx)
    if written_for == scope:
        return True
    why = "the standard library's rules do" if definition.library else "its file has no `scope group`"
    if scope == "group":
        message = f"rule `{instance.id}` guards one account ({why}): a group policy uses group rules"
        help = "write the rule for the group, over `group.*` (e.g. `when group.realized_pnl <= -$2,000`)"
    else:
        message = f"rule `{instance.id}` is a group rule (`scope group`): an account policy cannot use it"
        help = "list the policy that uses it under `groups:` in riskc.yaml, with `scope group` in its header"
    ctx.sink.error(SCOPE_ERROR, message, instance.span, help=help)
    return False


# What a group rule may do: act on every account of the group. A target (`close p`) needs one
# account's position or order; `reduce_total` one account's total; `lockout while` is re-read on
# one account's snapshot, which has no `group`.
_GROUP_ACTIONS = (ast.Flatten, ast.CancelOrders, ast.Lockout, ast.Block, ast.Alert)


def _check_group_rule(rule: ast.Rule, sink: DiagnosticSink) -> None:
    if rule.binder is not None:
        sink.error(
            SCOPE_ERROR,
            f"a group rule has no `for {rule.binder.kind}`: positions and orders belong to one account",
            rule.binder.span,
            help="quantify over the accounts instead: `any(a.open_contracts > 5 for a in group.accounts)`",
        )
    for action in rule.actions:
        if not isinstance(action, _GROUP_ACTIONS) or (isinstance(action, ast.Lockout) and action.mode == "while"):
            sink.error(
                SCOPE_ERROR,
                f"`{format_action(action)}` is not a group action",
                action.span,
                help="a group rule acts on every account of the group: flatten, cancel_orders, lockout for/until, "
                "block, alert",
            )


def _is_defined(rule: ast.Rule, ctx: Context) -> bool:
    """False for the second definition of a name: `collect_rules` reported it already."""
    definition = ctx.definitions.get(rule.id)
    return definition is not None and definition.rule is rule


def find_dead_rules(ctx: Context) -> None:
    """Warn about rules whose condition can never be true."""
    for definition in ctx.definitions.values():
        rule = definition.rule
        reason = _never_true(rule.when)
        if reason:
            ctx.sink.warning(NEVER_FIRES, f"rule `{rule.id}` can never fire: {reason}", rule.when.span)


def find_conflicting_actions(ctx: Context) -> None:
    for definition in ctx.definitions.values():
        _check_conflicts(definition.rule, ctx.sink)


PASSES: tuple[Callable[[Context], None], ...] = (
    collect_rules,
    check_headers,
    check_rule_bodies,
    activate_rules,
    find_dead_rules,
    find_conflicting_actions,
)


def check(
    sources: Iterable[tuple[str, str]],
    schema: Schema,
    library: Iterable[tuple[str, str]] = (),
) -> CheckResult:
    """Parse and check ``sources`` (path, text) against ``schema``, with ``library`` rule files
    (normally the standard library) available to `use`. Files that do not parse are reported
    and left out of the later passes."""
    sources = list(sources)
    given = {_resolved(p) for p, _ in sources}
    library = [(p, t) for p, t in library if _resolved(p) not in given]
    parsed = [(parse(text, path), True) for path, text in library]
    parsed += [(parse(text, path), False) for path, text in sources]
    ctx = Context(schema, [(r, lib) for r, lib in parsed if r.ok])
    for result, _ in parsed:
        for d in result.diagnostics:
            ctx.sink.add(d)
    for run in PASSES:
        run(ctx)
    for result, library in parsed:
        if result.ok and not library and _is_empty(result.module):
            ctx.sink.warning(
                EMPTY_FILE,
                "this file is empty: no policy and no rules",
                Span(result.module.span.file, 1, 1, 1, 2),
                help="write a policy here (`riskc init` copies a ready-made one), or remove the file",
            )
    texts = {r.module.span.file: r.source for r, _ in parsed}
    group_roots = schema.group.roots if schema.group is not None else ()
    roots = frozenset({*schema.roots, *group_roots, "event"})
    return CheckResult(ctx.policies, ctx.sink.sorted(), ctx.types, ctx.definitions, texts, roots)


def _is_empty(module: ast.Module) -> bool:
    return module.header is None and not module.uses and not module.rules


def _resolved(path: str) -> str:
    try:
        return str(Path(path).resolve())
    except OSError:
        return path


# ---- header ------------------------------------------------------------------------------------

_SETTINGS = ("timezone", "trading_day_starts", "on_error", "scope")


def _settings(header: ast.Header | None, sink: DiagnosticSink) -> Settings:
    if header is None:
        return Settings()
    values: dict[str, object] = {}
    seen: set[str] = set()  # not `values`: a setting with a bad value was still given
    for setting in header.settings:
        name = setting.name.text
        if name not in _SETTINGS:
            sink.error(
                BAD_SETTING,
                f"unknown setting `{name}`",
                setting.name.span,
                help=suggest(name, _SETTINGS) or f"settings are: {', '.join(_SETTINGS)}",
            )
            continue
        if name in seen:
            sink.error(DUPLICATE, f"setting `{name}` is given twice", setting.span)
            continue
        seen.add(name)
        value = _SETTING_READERS[name](setting.value, sink)
        if value is not None:
            values[name] = value
    return Settings(name=header.name.value, **values)


def _read_timezone(value: ast.SettingValue, sink: DiagnosticSink) -> str | None:
    text = value.text if isinstance(value, ast.Path) else value.value if isinstance(value, ast.StringLit) else None
    if text is not None and _zone_exists(text):
        return text
    shown = text if text is not None else "this value"
    sink.error(
        BAD_SETTING,
        f"`{shown}` is not an IANA timezone",
        value.span,
        help=suggest(text or "", _zone_names()) or "e.g. America/Chicago, America/New_York, Europe/London",
    )
    return None


def _zone_exists(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _zone_names() -> set[str]:
    return zoneinfo.available_timezones()


def _read_clock(value: ast.SettingValue, sink: DiagnosticSink) -> dt.time | None:
    if isinstance(value, ast.ClockLit):
        return value.value
    sink.error(BAD_SETTING, "`trading_day_starts` needs a time of day like 17:00", value.span)
    return None


def _read_on_error(value: ast.SettingValue, sink: DiagnosticSink) -> str | None:
    if isinstance(value, ast.Path) and value.text in ON_ERROR:
        return value.text
    sink.error(
        BAD_SETTING,
        "`on_error` must be `flatten` or `alert`",
        value.span,
        help="`flatten` (the default) fails closed when a rule cannot be evaluated",
    )
    return None


def _read_scope(value: ast.SettingValue, sink: DiagnosticSink) -> str | None:
    if isinstance(value, ast.Path) and value.text in SCOPES:
        return value.text
    sink.error(
        BAD_SETTING,
        "`scope` must be `account` or `group`",
        value.span,
        help="`account` (the default) guards one account; `group` guards the accounts of a group together",
    )
    return None


_SETTING_READERS = {
    "timezone": _read_timezone,
    "trading_day_starts": _read_clock,
    "on_error": _read_on_error,
    "scope": _read_scope,
}


# ---- rule bodies -------------------------------------------------------------------------------


def _check_rule(rule: ast.Rule, ctx: Context, schema: Schema) -> None:
    checker = ctx.checker
    scope = Scope(schema)
    for param in rule.params:
        declared = resolve_type(param.type, ctx.sink)
        if param.name.text in scope.locals:
            ctx.sink.error(DUPLICATE, f"parameter `{param.name.text}` is declared twice", param.name.span)
        scope.locals[param.name.text] = declared
        if param.default is not None:
            _check_constant(param.default, ctx.sink)
            checker.expect(param.default, Scope(schema), declared, f"the default of `{param.name.text}`")
    _check_on(rule, scope, ctx)
    if rule.binder is not None:
        scope.locals[rule.binder.var.text] = schema.binders.get(rule.binder.kind, T.ANY)
    checker.expect(rule.when, scope, T.BOOL, "the `when` condition")
    for action in rule.actions:
        checker.check_action(action, scope)
    if rule.severity is not None and rule.severity.text not in SEVERITIES:
        ctx.sink.error(
            UNKNOWN_NAME,
            f"unknown severity `{rule.severity.text}`",
            rule.severity.span,
            help=suggest(rule.severity.text, SEVERITIES) or f"one of {', '.join(SEVERITIES)}",
        )
    _warn_unused_params(rule, ctx.sink)


def _check_on(rule: ast.Rule, scope: Scope, ctx: Context) -> None:
    kinds = []
    for kind in rule.on:
        if kind.text in ctx.schema.events:
            kinds.append(kind.text)
        else:
            ctx.sink.error(
                UNKNOWN_NAME,
                f"unknown event kind `{kind.text}`",
                kind.span,
                help=suggest(kind.text, ctx.schema.events) or f"one of {', '.join(ctx.schema.events)}",
            )
    scope.event_kinds = tuple(kinds)
    members = ctx.schema.event_members(tuple(kinds))
    scope.event = T.obj("event", members)


def _warn_unused_params(rule: ast.Rule, sink: DiagnosticSink) -> None:
    used = {n.id for part in (rule.when, *rule.actions) for n in walk(part) if isinstance(n, ast.Name)}
    for param in rule.params:
        if param.name.text not in used:
            sink.warning(UNUSED_PARAM, f"parameter `{param.name.text}` is never used", param.name.span)


def resolve_type(ref: ast.TypeRef, sink: DiagnosticSink) -> Type:
    """A written type annotation (`money`, `list[symbol]`, `a|b`, `money?`) as a Type."""
    if isinstance(ref, ast.OptionalType):
        return T.OptionalT(resolve_type(ref.inner, sink))
    if isinstance(ref, ast.EnumType):
        twice = [m for i, m in enumerate(ref.members) if m in ref.members[:i]]
        if twice:
            sink.error(DUPLICATE, f"the enumeration lists `{twice[0]}` twice", ref.span)
        return T.EnumT(ref.members)
    if isinstance(ref, ast.GenericType):
        return _generic(ref, sink)
    if ref.name in T.PRIMITIVES:
        return T.PRIMITIVES[ref.name]
    candidates = [*T.PRIMITIVES, *T.GENERICS]
    hint = f"`{ref.name}` needs type arguments, e.g. {ref.name}[symbol]" if ref.name in T.GENERICS else None
    sink.error(UNKNOWN_NAME, f"unknown type `{ref.name}`", ref.span, help=hint or suggest(ref.name, candidates))
    return T.ANY


def _generic(ref: ast.GenericType, sink: DiagnosticSink) -> Type:
    arity = T.GENERICS.get(ref.name)
    if arity is None:
        sink.error(UNKNOWN_NAME, f"unknown generic type `{ref.name}`", ref.span, help="use list[T] or map[K, V]")
        return T.ANY
    if len(ref.args) != arity:
        sink.error(ARITY_ERROR, f"`{ref.name}` takes {arity} type argument(s), got {len(ref.args)}", ref.span)
        return T.ANY
    args = [resolve_type(a, sink) for a in ref.args]
    if T.ANY in args:  # an argument was reported already; `list[any]` would only cause more errors
        return T.ANY
    return T.ListT(args[0]) if ref.name == "list" else T.MapT(args[0], args[1])


_CONSTANT_NODES = (*ast.LITERAL_TYPES, ast.ListExpr, ast.MapExpr, ast.MapEntry, ast.Neg, ast.Name)


def _check_constant(e: ast.Expr, sink: DiagnosticSink) -> bool:
    """Defaults and `use` arguments are constants: literals, lists, maps, enum names."""
    for node in walk(e):
        if not isinstance(node, _CONSTANT_NODES):
            sink.error(
                TYPE_ERROR,
                "this must be a constant (a literal, list or map)",
                node.span,
                help="rule parameters are fixed when the policy loads",
            )
            return False
    return True


# ---- uses and instances --------------------------------------------------------------------------


def _is_policy(module: ast.Module) -> bool:
    return module.header is not None or bool(module.uses) or any(not r.params for r in module.rules)


def _instantiate(use: ast.Use, ctx: Context) -> RuleInstance | None:
    definition = ctx.definitions.get(use.name.text)
    if definition is None:
        ctx.sink.error(
            UNKNOWN_NAME,
            f"unknown rule `{use.name.text}`",
            use.name.span,
            help=suggest(use.name.text, ctx.definitions) or "see `riskc rules` for the standard library",
        )
        return None
    rule = definition.rule
    args = _bind_use_args(use, rule, ctx, definition.library)
    if args is None:
        return None
    return RuleInstance(use.id, rule, MappingProxyType(args), use.span, _severity(rule))


def _bind_use_args(use: ast.Use, rule: ast.Rule, ctx: Context, library: bool) -> dict[str, ast.Expr] | None:
    params = {p.name.text: p for p in rule.params}
    given: dict[str, ast.Expr] = {}
    ok = True
    for arg in use.args:
        if arg.name is None:
            ctx.sink.error(
                ARITY_ERROR,
                "arguments of `use` are named",
                arg.span,
                help=f"write `{next(iter(params), 'name')}: value`",
            )
            ok = False
            continue
        name = arg.name.text
        if name not in params:
            ctx.sink.error(
                UNKNOWN_NAME,
                f"rule `{rule.id}` has no parameter `{name}`",
                arg.name.span,
                help=suggest(name, params) or _signature_help(rule),
            )
            ok = False
        elif name in given:
            ctx.sink.error(DUPLICATE, f"argument `{name}` is given twice", arg.span)
            ok = False
        else:
            ok = _check_use_arg(arg, params[name], ctx) and ok
            if ok and library:
                ok = _check_positive_amount(arg, params[name], rule, ctx)
            given[name] = arg.value
    return _with_defaults(use, rule, given, ctx) if ok else None


def _check_use_arg(arg: ast.Arg, param: ast.Param, ctx: Context) -> bool:
    if not _check_constant(arg.value, ctx.sink):
        return False
    declared = resolve_type(param.type, DiagnosticSink())  # reported once, with the rule
    before = len(ctx.sink.items)
    ctx.checker.expect(arg.value, Scope(ctx.schema), declared, f"argument `{param.name.text}`")
    return len(ctx.sink.items) == before


def _check_positive_amount(arg: ast.Arg, param: ast.Param, rule: ast.Rule, ctx: Context) -> bool:
    """Every amount of money the standard library takes (a loss, a target, a drawdown, a floor)
    is a size: the rules put the sign in themselves (`day.realized_pnl <= -limit`). A sign
    mistake such as `daily_loss(limit: -$800)` would otherwise check clean and lock a flat
    account out at the open."""
    value = _literal_value(arg.value)
    if value is None or value[0] != "money" or value[1] > 0:
        return True
    written = format_expr(arg.value)
    ctx.sink.error(
        BAD_ARGUMENT,
        f"`{param.name.text}` of `{rule.id}` is an amount and must be more than $0, not {written}",
        arg.value.span,
        help=f"write the amount without a sign: `{param.name.text}: {format_expr(ast.MoneyLit(abs(value[1])))}`"
        if value[1] < 0
        else f"a {param.name.text} of $0 would fire at once; give the amount the rule is about",
    )
    return False


def _with_defaults(use: ast.Use, rule: ast.Rule, given: dict, ctx: Context) -> dict[str, ast.Expr] | None:
    args = dict(given)
    missing = []
    for param in rule.params:
        if param.name.text in args:
            continue
        if param.default is not None:
            args[param.name.text] = param.default
        elif isinstance(param.type, ast.OptionalType):
            args[param.name.text] = ast.NoneLit(span=param.span)
        else:
            missing.append(param.name.text)
    if missing:
        ctx.sink.error(
            ARITY_ERROR, f"`use {rule.id}` is missing: {', '.join(missing)}", use.span, help=_signature_help(rule)
        )
        return None
    return args


def _signature_help(rule: ast.Rule) -> str:
    if not rule.params:
        return f"`{rule.id}` takes no parameters: write `use {rule.id}`"
    quiet = DiagnosticSink()
    params = [
        f"{p.name.text}: {resolve_type(p.type, quiet)}" + (" = ..." if p.default is not None else "")
        for p in rule.params
    ]
    return f"{rule.id}({', '.join(params)})"


def _own_instance(rule: ast.Rule) -> RuleInstance:
    return RuleInstance(rule.id, rule, MappingProxyType({}), rule.span, _severity(rule))


def _severity(rule: ast.Rule) -> str:
    return rule.severity.text if rule.severity is not None and rule.severity.text in SEVERITIES else "medium"


def _unique_ids(instances: list[RuleInstance], sink: DiagnosticSink) -> list[RuleInstance]:
    seen: dict[str, RuleInstance] = {}
    for instance in instances:
        if instance.id in seen:
            own = instance.span == instance.rule.span  # a rule of the policy itself, not a `use`
            as_id = f"give the second one its own id: `use {instance.name}(...) as {instance.id}_2`"
            fix = "rename this rule" if own else as_id
            sink.error(DUPLICATE, f"rule id `{instance.id}` is used twice in this policy", instance.span, help=fix)
            continue
        seen[instance.id] = instance
    return list(seen.values())


# ---- warnings ------------------------------------------------------------------------------------


def _never_true(e: ast.Expr) -> str | None:
    value = fold(e)
    if value is False:
        return "the condition is always false"
    return _contradiction(e)


def fold(e: ast.Expr) -> object:
    """The value of an expression made of literals only, or ``...`` when it depends on data."""
    if isinstance(e, ast.BoolLit):
        return e.value
    if isinstance(e, ast.Not):
        inner = fold(e.operand)
        return ... if inner is ... else not inner
    if isinstance(e, ast.BoolOp):
        left, right = fold(e.left), fold(e.right)
        if e.op == "and":
            return False if False in (left, right) else ... if ... in (left, right) else True
        return True if True in (left, right) else ... if ... in (left, right) else False
    if isinstance(e, ast.Compare) and e.op in _ORDER:
        left, right = _literal_value(e.left), _literal_value(e.right)
        if left is not None and right is not None and left[0] == right[0]:
            return _ORDER[e.op](left[1], right[1])
    return ...


_ORDER = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _literal_value(e: ast.Expr) -> tuple[str, object] | None:
    """(unit tag, value) of a literal; values compare only within one tag."""
    if isinstance(e, ast.Neg):
        inner = _literal_value(e.operand)
        return (inner[0], -inner[1]) if inner and isinstance(inner[1], (int, Decimal)) else None
    for kind, (tag, attr) in _LITERAL_VALUE.items():
        if isinstance(e, kind):
            return tag, getattr(e, attr)
    return None


_LITERAL_VALUE = {
    ast.IntLit: ("number", "value"),
    ast.DecimalLit: ("number", "value"),
    ast.MoneyLit: ("money", "amount"),
    ast.DurationLit: ("duration", "seconds"),
    ast.ClockLit: ("clock", "value"),
    ast.DateLit: ("date", "value"),
    ast.TicksLit: ("ticks", "count"),
    ast.ContractsLit: ("number", "count"),
    ast.PercentLit: ("percent", "value"),
}


def _conjuncts(e: ast.Expr) -> list[ast.Expr]:
    if isinstance(e, ast.BoolOp) and e.op == "and":
        return _conjuncts(e.left) + _conjuncts(e.right)
    return [e]


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _contradiction(e: ast.Expr) -> str | None:
    """`x > 5 and x < 3`: bounds on the same expression that no value satisfies."""
    bounds: dict[ast.Expr, list[tuple[str, object]]] = {}
    for atom in _conjuncts(e):
        if not isinstance(atom, ast.Compare) or atom.op not in _ORDER or atom.op == "!=":
            continue
        left, right = _literal_value(atom.left), _literal_value(atom.right)
        if right is not None and left is None:
            bounds.setdefault(atom.left, []).append((atom.op, right))
        elif left is not None and right is None:
            bounds.setdefault(atom.right, []).append((_FLIP[atom.op], left))
    for _subject, limits in bounds.items():
        if _empty_interval(limits):
            return "its comparisons contradict each other"
    return None


def _empty_interval(limits: list[tuple[str, tuple[str, object]]]) -> bool:
    if len({tag for _, (tag, _) in limits}) > 1:
        return False  # values of different units; the type checker reports those
    limits = [(op, value) for op, (_, value) in limits]
    low, high = None, None  # (value, inclusive)
    try:
        for op, value in limits:
            if op in (">", ">=", "=="):
                candidate = (value, op != ">")
                if low is None or value > low[0] or (value == low[0] and not candidate[1]):
                    low = candidate
            if op in ("<", "<=", "=="):
                candidate = (value, op != "<")
                if high is None or value < high[0] or (value == high[0] and not candidate[1]):
                    high = candidate
        if low is None or high is None:
            return False
        return low[0] > high[0] or (low[0] == high[0] and not (low[1] and high[1]))
    except TypeError:  # values of different kinds; the type checker reports those
        return False


_STOP_ACTIONS = (ast.MoveStop, ast.PlaceStop, ast.PlaceTarget)
_EXIT_ACTIONS = (ast.Close, ast.Flatten)


def _check_conflicts(rule: ast.Rule, sink: DiagnosticSink) -> None:
    exits = [a for a in rule.actions if isinstance(a, _EXIT_ACTIONS)]
    stops = [a for a in rule.actions if isinstance(a, _STOP_ACTIONS)]
    if exits and stops:
        sink.warning(
            CONFLICTING_ACTIONS,
            f"rule `{rule.id}` both exits and manages a stop",
            stops[0].span,
            help="closing the position makes the exit order pointless; split them into two rules",
        )
    targets: dict[ast.Expr, ast.Action] = {}
    for action in rule.actions:
        if isinstance(action, (ast.Reduce, *_STOP_ACTIONS)):
            key = (type(action), action.target)
            if key in targets and targets[key] != action:
                sink.warning(
                    CONFLICTING_ACTIONS,
                    f"rule `{rule.id}` gives two different {_verb(action)} actions for the same position",
                    action.span,
                )
            targets[key] = action


def _verb(action: ast.Action) -> str:
    verbs = {
        ast.Reduce: "reduce",
        ast.MoveStop: "move_stop",
        ast.PlaceStop: "place_stop",
        ast.PlaceTarget: "place_target",
    }
    return f"`{verbs[type(action)]}`"
