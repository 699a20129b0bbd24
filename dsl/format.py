"""The canonical layout of a ``.risk`` file (``riskc fmt``).

One layout, so that diffs show changes of meaning and nobody argues about spacing. It is modelled
on the examples of PRODUCT.md §3.1: a header with indented settings, the `use` lines as one group,
one blank line around each rule, one clause a line. Two promises, both tested by property:
``parse(format_module(m)).module == m`` (nothing is lost, comments included) and formatting is
idempotent.

Comments are not in the tree, only in ``Module.comments`` with their positions, so they are placed
by position: each printed line ("unit": a header line, a setting, a `use`, a rule head, a clause)
knows where it started and ended in the source. A comment on a line of its own leads the next
unit; a comment on a line that holds a unit's code trails that unit.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from decimal import Decimal

from riskc.dsl import ast
from riskc.dsl.errors import NO_SPAN, RiskError, Span
from riskc.dsl.parser import parse

WIDTH = 100
INDENT = "  "
CONTINUATION = "    "  # added to the indentation of a clause whose expression is broken


def format_source(source: str, file: str = "<input>") -> str:
    """Parse then format. A file that does not parse cannot be laid out: raise its diagnostics."""
    result = parse(source, file)
    if result.diagnostics:
        raise RiskError(list(result.diagnostics))
    return format_module(result.module)


def format_module(module: ast.Module) -> str:
    """The canonical text of a module; empty modules give the empty string."""
    units = list(_module_units(module))
    placed = _place_comments(units, module.comments)
    return _render(units, placed)


# ---- units: the lines the layout is made of ----------------------------------------------------


@dataclass(slots=True)
class _Unit:
    """One printed line or clause (possibly broken over continuation lines), with the source range
    it came from, so comments can find it."""

    lines: list[str]
    indent: str
    start: tuple[int, int] | None  # source (line, col) where it starts; None without positions
    end_line: int | None
    blank_before: bool = False
    top_level: bool = False


def _module_units(module: ast.Module):
    previous = None
    if module.header is not None:
        yield from _header_units(module.header)
        previous = module.header
    for item in module.items:
        # Consecutive `use` lines form one group; every rule stands apart.
        blank = previous is not None and not (isinstance(item, ast.Use) and isinstance(previous, ast.Use))
        if isinstance(item, ast.Use):
            yield _unit([_use(item)], "", item.span, item.span, blank, top_level=True)
        else:
            yield from _rule_units(item, blank)
        previous = item


def _unit(lines, indent, first: Span, last: Span, blank=False, top_level=False) -> _Unit:
    if first == NO_SPAN:
        return _Unit(lines, indent, None, None, blank, top_level)
    return _Unit(lines, indent, (first.line, first.col), last.end_line, blank, top_level)


def _header_units(header: ast.Header):
    yield _unit([f"policy {_string(header.name.value)}"], "", header.span, header.name.span, top_level=True)
    for setting in header.settings:
        line = f"{INDENT}{setting.name.text} {_setting_value(setting.value)}"
        yield _unit([line], INDENT, setting.span, setting.span)


def _setting_value(value: ast.SettingValue) -> str:
    return value.text if isinstance(value, ast.Path) else _expr(value)


def _use(use: ast.Use) -> str:
    text = f"use {use.name.text}"
    if use.args:
        text += f"({_args(use.args)})"
    if use.alias is not None:
        text += f" as {use.alias.text}"
    return text


def _rule_units(rule: ast.Rule, blank: bool):
    head = f"rule {rule.name.text}"
    if rule.params:
        head += "(" + ", ".join(_param(p) for p in rule.params) + ")"
    head_end = rule.params[-1].span if rule.params else rule.name.span
    yield _unit([head], "", rule.span, head_end, blank, top_level=True)
    if rule.doc is not None:
        yield _clause(_docstring(rule.doc.value), rule.doc.span, rule.doc.span)
    if rule.on:
        yield _clause(["on " + ", ".join(i.text for i in rule.on)], rule.on[0].span, rule.on[-1].span)
    if rule.binder is not None:
        binder = rule.binder
        yield _clause([f"for {binder.kind} {binder.var.text}"], binder.span, binder.span)
    yield _clause(_broken(rule.when, "when ", CONTINUATION), rule.when.span, rule.when.span)
    yield _clause(_then_lines(rule.actions), rule.actions[0].span, rule.actions[-1].span)
    if rule.severity is not None:
        yield _clause([f"severity {rule.severity.text}"], rule.severity.span, rule.severity.span)


def _clause(lines: list[str], first: Span, last: Span) -> _Unit:
    return _unit([INDENT + line if line else line for line in lines], INDENT, first, last)


def _param(param: ast.Param) -> str:
    text = f"{param.name.text}: {_type(param.type)}"
    return text if param.default is None else f"{text} = {_expr(param.default)}"


def _type(ref: ast.TypeRef) -> str:
    if isinstance(ref, ast.SimpleType):
        return ref.name
    if isinstance(ref, ast.GenericType):
        return f"{ref.name}[{', '.join(_type(a) for a in ref.args)}]"
    if isinstance(ref, ast.EnumType):
        return "|".join(ref.members)
    return f"{_type(ref.inner)}?"


# ---- long clauses ------------------------------------------------------------------------------


def _broken(expr: ast.Expr, prefix: str, cont: str) -> list[str]:
    """``prefix + expr`` on one line when it fits (counting the clause indent); otherwise broken
    before each `and`/`or` of the outermost chain, operands of an `or` chain broken in turn."""
    flat = prefix + _expr(expr)
    if len(INDENT + flat) <= WIDTH or not isinstance(expr, ast.BoolOp):
        return [flat]
    level = _LEVEL_OF_BOOL[expr.op]
    first, *rest = _chain(expr)
    lines = _broken_operand(first, prefix, cont + CONTINUATION, level)
    for operand in rest:
        lines += _broken_operand(operand, f"{cont}{expr.op} ", cont + CONTINUATION, level + 1)
    return lines


def _broken_operand(operand: ast.Expr, prefix: str, cont: str, level: int) -> list[str]:
    if _level(operand) < level:  # needs parentheses: keep it whole
        return [prefix + _sub(operand, level)]
    return _broken(operand, prefix, cont)


def _chain(expr: ast.BoolOp) -> list[ast.Expr]:
    """``a and b and c`` (left-nested) as ``[a, b, c]``."""
    operands = []
    node: ast.Expr = expr
    while isinstance(node, ast.BoolOp) and node.op == expr.op:
        operands.append(node.right)
        node = node.left
    operands.append(node)
    return operands[::-1]


def _then_lines(actions: tuple[ast.Action, ...]) -> list[str]:
    """All actions on the `then` line when it fits, else one action a line after the first."""
    texts = [_action(a) for a in actions]
    flat = "then " + ", ".join(texts)
    if len(INDENT + flat) <= WIDTH or len(texts) == 1:
        return [flat]
    body = [f"{CONTINUATION}{t}," for t in texts[1:-1]] + [CONTINUATION + texts[-1]]
    return [f"then {texts[0]},", *body]


def _action(action: ast.Action) -> str:
    match action:
        case ast.Flatten():
            return "flatten"
        case ast.Close(target):
            return f"close {_expr(target)}"
        case ast.Reduce(target, to):
            return f"reduce {_expr(target)} to {_expr(to)}"
        case ast.ReduceTotal(to, counting):
            return f"reduce_total to {_expr(to)}" + ("" if counting is None else f" counting {_expr(counting)}")
        case ast.CancelOrders(symbol):
            return "cancel_orders" + ("" if symbol is None else f" for {_expr(symbol)}")
        case ast.Cancel(target):
            return f"cancel {_expr(target)}"
        case ast.Lockout("manual", _):
            return "lockout until manual"
        case ast.Lockout(mode, value):
            return f"lockout {mode} {_expr(value)}"
        case ast.Block(symbol, duration):
            return f"block {_expr(symbol)}" + ("" if duration is None else f" for {_expr(duration)}")
        case ast.MoveStop(target, price):
            return f"move_stop {_expr(target)} to {_expr(price)}"
        case ast.PlaceStop(target, price):
            return f"place_stop {_expr(target)} at {_expr(price)}"
        case ast.PlaceTarget(target, price):
            return f"place_target {_expr(target)} at {_expr(price)}"
        case ast.Alert(message):
            return f"alert {_expr(message)}"
    raise TypeError(f"not an action: {action!r}")


# ---- expressions -------------------------------------------------------------------------------

# Binding strength, loosest first, as in the grammar: x if c else y < or < and < not < comparison
# < + - < * / < unary minus < field/call < atom. An operand weaker than its slot gets parentheses.
_CONDITIONAL = 0
_LEVEL_OF_BOOL = {"or": 1, "and": 2}
_NOT, _COMPARE, _SUM, _PRODUCT, _UNARY, _POSTFIX, _ATOM = 3, 4, 5, 6, 7, 8, 9


def _level(expr: ast.Expr) -> int:
    match expr:
        case ast.BoolOp(op):
            return _LEVEL_OF_BOOL[op]
        case ast.Not():
            return _NOT
        case ast.Compare():
            return _COMPARE
        case ast.Arith(op):
            return _SUM if op in "+-" else _PRODUCT
        case ast.Neg():
            return _UNARY
        case ast.MoneyLit(amount) if amount < 0:
            return _UNARY  # `-$5.x` would read as `-($5.x)`
        case ast.Field() | ast.Call() | ast.Aggregate():
            return _POSTFIX
        case ast.Conditional():
            return _CONDITIONAL
    return _ATOM


def _sub(expr: ast.Expr, level: int) -> str:
    text = _expr(expr)
    return text if _level(expr) >= level else f"({text})"


def _expr(expr: ast.Expr) -> str:
    match expr:
        case ast.BoolOp(op, left, right):
            level = _LEVEL_OF_BOOL[op]
            return f"{_sub(left, level)} {op} {_sub(right, level + 1)}"
        case ast.Not(operand):
            return f"not {_sub(operand, _NOT)}"
        case ast.Compare(op, left, right):  # comparisons do not chain: both sides are sums
            return f"{_sub(left, _SUM)} {op} {_sub(right, _SUM)}"
        case ast.Arith(op, left, right):
            level = _level(expr)
            return f"{_sub(left, level)} {op} {_sub(right, level + 1)}"
        case ast.Neg(operand):
            return f"-{_sub(operand, _UNARY)}"
        case ast.Field(obj, name):
            return f"{_sub(obj, _POSTFIX)}.{name}"
        case ast.Call(func, args):
            return f"{_sub(func, _POSTFIX)}({_args(args)})"
        case ast.Name(name):
            return name
        case ast.Conditional(body, test, orelse):
            return f"{_sub(body, 1)} if {_sub(test, 1)} else {_expr(orelse)}"
        case ast.Aggregate(func, body, var, items, where):
            condition = "" if where is None else f" where {_expr(where)}"
            return f"{func}({_expr(body)} for {var.text} in {_sub(items, _SUM)}{condition})"
        case ast.ListExpr(items):
            return "[" + ", ".join(_expr(i) for i in items) + "]"
        case ast.MapExpr(entries):
            return "{" + ", ".join(f"{_map_key(e.key)}: {_expr(e.value)}" for e in entries) + "}"
    return _literal(expr)


def _args(args: tuple[ast.Arg, ...]) -> str:
    return ", ".join(_expr(a.value) if a.name is None else f"{a.name.text}: {_expr(a.value)}" for a in args)


_ENDS_WITH_CLOCK = re.compile(r"\d{1,2}:\d{2}$")


def _map_key(key: ast.Expr) -> str:
    """A key that ends in a clock needs parentheses: the lexer reads `17:00:` as no clock at all."""
    text = _expr(key)
    return f"({text})" if _ENDS_WITH_CLOCK.search(text) else text


# ---- literals ----------------------------------------------------------------------------------


def _literal(lit: ast.Literal) -> str:
    match lit:
        case ast.MoneyLit(amount):
            return _money(amount)
        case ast.IntLit(value):
            return str(value)
        case ast.DecimalLit(value):
            text = _plain(value)
            return text if "." in text else text + ".0"  # `1` would read back as an int
        case ast.PercentLit(value):
            return _plain(value) + "%"
        case ast.DurationLit(seconds):
            return _duration(seconds)
        case ast.ClockLit(value):
            return f"{value.hour:02d}:{value.minute:02d}"
        case ast.DateLit(value):
            return value.isoformat()
        case ast.TicksLit(count):
            return f"{count} tick" if count == 1 else f"{count} ticks"
        case ast.ContractsLit(count):
            return f"{count} contract" if count == 1 else f"{count} contracts"
        case ast.StringLit(value):
            return _string(value)
        case ast.SymbolLit(code):
            return code
        case ast.BoolLit(value):
            return "true" if value else "false"
        case ast.NoneLit():
            return "none"
    raise TypeError(f"not an expression: {lit!r}")


_CENT = Decimal("0.01")


def _money(amount: Decimal) -> str:
    """`$1,000`, `$12.50`, `-$12.50`: separators always, cents only when there are some."""
    magnitude = abs(amount)
    if magnitude != magnitude.quantize(_CENT):
        raise ValueError(f"money is exact to the cent, not {amount}")
    whole = int(magnitude)
    cents = f"{magnitude - whole:.2f}"[1:] if magnitude != whole else ""
    sign = "-" if amount < 0 else ""
    return f"{sign}${whole:,}{cents}"


def _plain(value: Decimal) -> str:
    """Positional notation, no exponent, no trailing zeros after the point (exact: no rounding)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def _duration(seconds: int) -> str:
    """Largest unit first, each unit once: 90 -> `1m30s`, 86400 -> `1d`, 0 -> `0s`."""
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


_ESCAPE = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"})


def _string(value: str) -> str:
    return '"' + value.translate(_ESCAPE) + '"'


_TRIPLE_ESCAPE = str.maketrans({"\\": "\\\\", "\t": "\\t"})  # raw tabs would be expanded
_CLOSING_QUOTE = re.compile(r'"(?="|$)')  # a quote is escaped only where it could end the string


def _docstring(value: str) -> list[str]:
    """A docstring of several lines is written as one, triple-quoted, its lines at the clause
    indent (the parser removes that indent again, like Python's ``inspect.cleandoc``). A value
    that cleandoc would not give back exactly (leading or trailing blank lines, no line starting
    at the margin) stays a one-line string with ``\\n`` escapes."""
    lines = value.split("\n")
    if len(lines) == 1 or not _survives_cleandoc(lines):
        return [_string(value)]
    body = _CLOSING_QUOTE.sub(r'\\"', value.translate(_TRIPLE_ESCAPE)).split("\n")
    body[0] = '"""' + body[0]
    body[-1] += '"""'
    return body


def _survives_cleandoc(lines: list[str]) -> bool:
    def at_margin(line: str) -> bool:
        return bool(line) and not line[0].isspace()

    return at_margin(lines[0]) and bool(lines[-1]) and any(at_margin(line) for line in lines[1:])


# ---- comments ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Placed:
    """Where each comment goes: before a unit (with the blank lines that separated it from what
    follows), after a unit's code, or at the end of the file."""

    leading: dict[int, list[tuple[ast.Comment, bool]]] = field(default_factory=dict)
    trailing: dict[int, ast.Comment] = field(default_factory=dict)
    end: list[tuple[ast.Comment, bool]] = field(default_factory=list)


def _place_comments(units: list[_Unit], comments: tuple[ast.Comment, ...]) -> _Placed:
    placed = _Placed()
    if not comments:
        return placed
    if any(c.span == NO_SPAN for c in comments) or any(u.start is None for u in units):
        # A tree built in code has no positions: its comments open the file, in order.
        _lead(placed, 0, [(c, False) for c in comments], units)
        return placed
    leading, owned, end = _assign(units, comments)
    for index, group in owned.items():
        if len(group) == 1:
            placed.trailing[index] = group[0]
        else:  # two comments cannot share the end of one line: keep them in order, above it
            leading.setdefault(index, []).extend((c, False) for c in group)
    for index, group in leading.items():
        _lead(placed, index, group, units)
    placed.end = end
    return placed


def _assign(units: list[_Unit], comments):
    """Each comment goes to the last unit starting before it when it sits on one of that unit's
    lines (``owned``), else to the next unit (``leading``, with a flag for a blank line before the
    next thing), else to the end of the file."""
    starts = [u.start for u in units]
    leading: dict[int, list[tuple[ast.Comment, bool]]] = {}
    owned: dict[int, list[ast.Comment]] = {}
    end: list[tuple[ast.Comment, bool]] = []
    ordered = sorted(comments, key=lambda c: (c.span.line, c.span.col))
    for position, comment in enumerate(ordered):
        index = bisect.bisect_right(starts, (comment.span.line, comment.span.col)) - 1
        if index >= 0 and comment.span.line <= units[index].end_line:
            owned.setdefault(index, []).append(comment)
            continue
        following = ordered[position + 1].span.line if position + 1 < len(ordered) else None
        if index + 1 < len(units):
            nxt = units[index + 1].start[0]
            following = nxt if following is None else min(following, nxt)
            gap = following - comment.span.line > 1
            leading.setdefault(index + 1, []).append((comment, gap))
        else:
            end.append((comment, following is not None and following - comment.span.line > 1))
    return leading, owned, end


def _lead(placed: _Placed, index: int, group, units: list[_Unit]) -> None:
    if index >= len(units):
        placed.end = list(group)
        return
    if not units[index].top_level:  # blank lines inside a rule or header are not kept
        group = [(c, False) for c, _ in group]
    placed.leading[index] = list(group)


def _render(units: list[_Unit], placed: _Placed) -> str:
    out: list[str] = []
    for index, unit in enumerate(units):
        if unit.blank_before:
            out.append("")
        for comment, gap in placed.leading.get(index, ()):
            out.append(unit.indent + comment.text)
            if gap:
                out.append("")
        lines = list(unit.lines)
        if index in placed.trailing:
            lines[-1] += "  " + placed.trailing[index].text
        out.extend(lines)
    if placed.end and out:
        out.append("")
    for comment, gap in placed.end:
        out.append(comment.text)
        if gap:
            out.append("")
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n" if out else ""


def format_expr(expr: ast.Expr) -> str:
    """One expression in canonical form (reasons and messages quote rules this way)."""
    return _expr(expr)


def format_action(action: ast.Action) -> str:
    return _action(action)


def format_type(ref: ast.TypeRef) -> str:
    """A type annotation as written canonically (`map[symbol, contracts]`, `net|gross`, `money?`)."""
    return _type(ref)
