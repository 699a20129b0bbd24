"""Source text -> ``ast.Module`` plus diagnostics.

The grammar is parsed once per process (LALR, cached on disk by Lark). A file that parses cleanly
costs one pass. A file with errors is re-parsed item by item (`policy`, `use`, `rule` start an
item) so every broken item is reported, not just the first.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import inspect
import re
from dataclasses import dataclass
from decimal import Decimal

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedInput, UnexpectedToken, VisitError

from riskc.dsl import ast
from riskc.dsl.depth import too_deep
from riskc.dsl.errors import PARSE_ERROR, Diagnostic, Span
from riskc.dsl.syntax_errors import RESERVED, describe_unexpected, keyword_used_as_name

_STARTS = ("start", "header", "use", "rule")


@functools.cache
def grammar() -> Lark:
    return Lark.open_from_package(
        "riskc.dsl",
        "grammar.lark",
        ("",),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
        start=list(_STARTS),
        cache=True,
        lexer_callbacks={"COMMENT": _COLLECTED.append},
    )


# The lexer hands every comment token here as it reads (miniwdl's `_lark_comments_buffer`): the
# parser takes them out after each parse, so comments come from the grammar's own COMMENT.
_COLLECTED: list[Token] = []


def _take_comments(file: str) -> tuple[ast.Comment, ...]:
    found = tuple(
        ast.Comment(str(t).rstrip(), span=Span(file, t.line, t.column, t.line, t.column + len(str(t).rstrip())))
        for t in _COLLECTED
    )
    _COLLECTED.clear()
    return found


@dataclass(frozen=True, slots=True)
class ParseResult:
    module: ast.Module
    diagnostics: tuple[Diagnostic, ...]
    source: str

    @property
    def ok(self) -> bool:
        return not self.diagnostics


def parse(source: str, file: str = "<input>") -> ParseResult:
    """Parse one file. Never raises for a user's mistake: problems come back as diagnostics."""
    builder = _Builder(file)
    _COLLECTED.clear()
    try:
        tree = grammar().parse(source, start="start")
        deep = too_deep(tree, file)
        if deep is not None:  # nothing walks a tree this deep (dsl/depth.py)
            return ParseResult(ast.Module(None, (), (), span=_file_span(source, file)), (deep,), source)
        items = _to_module(builder, tree, source, file)
        return ParseResult(items, tuple(sorted(builder.problems, key=lambda d: d.span.sort_key)), source)
    except UnexpectedInput as error:
        result = _parse_by_item(source, file)
        if result.diagnostics:
            return result
        # Every item parses alone, so the problem is their order (e.g. a header after a rule).
        return ParseResult(result.module, (_diagnostic_from(error, source, file),), source)


def parse_or_raise(source: str, file: str = "<input>") -> ast.Module:
    from riskc.dsl.errors import RiskError

    result = parse(source, file)
    if result.diagnostics:
        raise RiskError(list(result.diagnostics))
    return result.module


# ---- recovery: one item at a time -------------------------------------------------------------

# `policy` opens an item only before its name: the word is common in stray prose.
_ITEM_SCAN = re.compile(
    r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"?|#[^\n]*|(?<![.\w])(policy(?=\s*")|use|rule)(?!\w)'
)


def _item_starts(source: str) -> list[tuple[int, str]]:
    starts = [(m.start(), m.group(1)) for m in _ITEM_SCAN.finditer(source) if m.group(1)]
    if not starts or source[: starts[0][0]].strip() and not _only_comments(source[: starts[0][0]]):
        starts.insert(0, (0, "start"))
    else:  # the first item's chunk takes the comments above it, so the lexer sees them
        starts[0] = (0, starts[0][1])
    return starts


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("#") for line in text.splitlines())


def _parse_by_item(source: str, file: str) -> ParseResult:
    builder = _Builder(file)
    header: ast.Header | None = None
    items: list[ast.Item] = []
    diagnostics: list[Diagnostic] = []
    starts = _item_starts(source)
    _COLLECTED.clear()
    for index, (offset, keyword) in enumerate(starts):
        end = starts[index + 1][0] if index + 1 < len(starts) else len(source)
        start_symbol = "header" if keyword == "policy" else keyword
        node, problem = _parse_chunk(builder, source, offset, end, start_symbol, file)
        if problem:
            diagnostics.append(problem)
        elif isinstance(node, ast.Header) and (header is not None or items):
            diagnostics.append(_misplaced_header(node.span, duplicate=header is not None))
        elif isinstance(node, ast.Header):
            header = node
        elif node is not None and not isinstance(node, ast.Module):
            items.append(node)
    module = ast.Module(header, tuple(items), _take_comments(file), span=_file_span(source, file))
    diagnostics.extend(builder.problems)
    return ParseResult(module, tuple(sorted(diagnostics, key=lambda d: d.span.sort_key)), source)


def _misplaced_header(span: Span, duplicate: bool) -> Diagnostic:
    return Diagnostic(
        PARSE_ERROR,
        "the `policy` header must come first in the file, and only once",
        span,
        help="merge its settings into the first header" if duplicate else "move it above the first `use` or `rule`",
    )


def _parse_chunk(builder, source, offset, end, start_symbol, file):
    line, col = _position(source, offset)
    # Padding keeps every line and column as in the file; messages read the padded text.
    padded = "\n" * (line - 1) + " " * (col - 1) + source[offset:end]
    try:
        tree = grammar().parse(padded, start=start_symbol)
    except UnexpectedInput as error:
        return None, _diagnostic_from(_at_next_item(error, source, end), padded, file)
    deep = too_deep(tree, file)
    if deep is not None:
        return None, deep
    try:
        return builder.transform(tree), None
    except VisitError as error:  # a bug in the builder, not the user's mistake: keep it loud
        raise error.orig_exc from error


def _position(source: str, offset: int) -> tuple[int, int]:
    return source.count("\n", 0, offset) + 1, offset - (source.rfind("\n", 0, offset) + 1) + 1


def _at_next_item(error: UnexpectedInput, source: str, end: int) -> UnexpectedInput:
    """A chunk stops where the next item begins, so running out of text there means the next
    item's keyword came too early: report that keyword, where the person sees it."""
    if not (isinstance(error, UnexpectedToken) and error.token.type == "$END" and end < len(source)):
        return error
    word = re.match(r"\w+", source[end:]).group()
    line, col = _position(source, end)
    error.token = Token(word.upper(), word, end, line, col, line, col + len(word), end + len(word))
    error.line, error.column = line, col
    return error


def _diagnostic_from(error: UnexpectedInput, source: str, file: str) -> Diagnostic:
    line, col = error.line, error.column
    width = 1
    if isinstance(error, UnexpectedToken) and error.token.type != "$END":
        width = max(1, len(str(error.token)))
    if isinstance(error, UnexpectedToken) and error.token.type == "$END":
        line, col = _end_position(source)
    keyword = keyword_used_as_name(error)
    if keyword is not None:
        line, col, width = keyword.line, keyword.column, len(str(keyword))
    message, help_text = describe_unexpected(error, source, grammar())
    return Diagnostic(PARSE_ERROR, message, Span(file, line, col, line, col + width), help=help_text)


def _end_position(source: str) -> tuple[int, int]:
    stripped = source.rstrip()
    line = stripped.count("\n") + 1
    col = len(stripped) - (stripped.rfind("\n") + 1) + 1
    return line, col


# ---- tree -> AST ------------------------------------------------------------------------------


def _file_span(source: str, file: str) -> Span:
    line, col = _end_position(source)  # already the column just past the last character
    return Span(file, 1, 1, line, col)


def _to_module(builder: _Builder, tree, source: str, file: str) -> ast.Module:
    module = builder.transform(tree)
    return ast.Module(module.header, module.items, _take_comments(file), span=_file_span(source, file))


_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
_DURATION_PART = re.compile(r"(\d+)([dhms])")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), body)


@v_args(meta=True)
class _Builder(Transformer):
    """Builds AST nodes bottom-up. Literal values that the grammar cannot validate (a clock of
    25:00, a date of Feb 30) become diagnostics in ``problems``, with a placeholder node."""

    def __init__(self, file: str):
        super().__init__()
        self.file = file
        self.problems: list[Diagnostic] = []

    # -- spans
    def _span(self, meta) -> Span:
        if getattr(meta, "empty", True):
            return Span(self.file, 1, 1, 1, 1)
        return Span(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tok(self, token: Token) -> Span:
        return Span(self.file, token.line, token.column, token.end_line, token.end_column)

    def _ident(self, token: Token) -> ast.Ident:
        return ast.Ident(str(token), span=self._tok(token))

    def _problem(self, message: str, span: Span, help_text: str | None = None) -> None:
        self.problems.append(Diagnostic(PARSE_ERROR, message, span, help=help_text))

    # -- module and header
    def start(self, meta, children):
        header = children[0] if children and isinstance(children[0], ast.Header) else None
        items = tuple(c for c in children if not isinstance(c, ast.Header))
        return ast.Module(header, items, span=self._span(meta))

    def header(self, meta, children):
        name_token, *settings = children
        return ast.Header(self._string(name_token), tuple(settings), span=self._span(meta))

    def setting(self, meta, children):
        name, value = children
        if name == "policy":  # a second header reads, to the grammar, as a setting of the first
            self.problems.append(_misplaced_header(self._span(meta), duplicate=True))
        return ast.Setting(self._ident(name), value, span=self._span(meta))

    def path(self, meta, children):
        return ast.Path(tuple(str(c) for c in children), span=self._span(meta))

    # -- use
    def use(self, meta, children):
        name, args, alias = children
        return ast.Use(
            self._ident(name),
            args or (),
            self._ident(alias) if alias is not None else None,
            span=self._span(meta),
        )

    def call_args(self, meta, children):
        return tuple(c for c in children if c is not None)

    def named_arg(self, meta, children):
        name, value = children
        return ast.Arg(self._ident(name), value, span=self._span(meta))

    def positional_arg(self, meta, children):
        return ast.Arg(None, children[0], span=self._span(meta))

    # -- rule
    def rule(self, meta, children):
        name, params, doc, on, binder, when, actions, severity = children
        return ast.Rule(
            name=self._ident(name),
            params=params or (),
            doc=doc,
            on=on or (),
            binder=binder,
            when=when,
            actions=actions,
            severity=severity,
            span=self._span(meta),
        )

    def params(self, meta, children):
        return tuple(c for c in children if c is not None)

    def param(self, meta, children):
        name, type_ref, default = children
        return ast.Param(self._ident(name), type_ref, default, span=self._span(meta))

    def simple_type(self, meta, children):
        return ast.SimpleType(str(children[0]), span=self._span(meta))

    def generic_type(self, meta, children):
        name, *args = children
        return ast.GenericType(str(name), tuple(args), span=self._span(meta))

    def enum_type(self, meta, children):
        return ast.EnumType(tuple(str(c) for c in children), span=self._span(meta))

    def optional_type(self, meta, children):
        return ast.OptionalType(children[0], span=self._span(meta))

    def docstring(self, meta, children):
        return self._string(children[0])

    def on_clause(self, meta, children):
        return tuple(self._ident(c) for c in children)

    def for_clause(self, meta, children):
        kind, var = children
        return ast.Binder(str(kind), self._ident(var), span=self._span(meta))

    def when_clause(self, meta, children):
        return children[0]

    def then_clause(self, meta, children):
        return tuple(children)

    def severity_clause(self, meta, children):
        return self._ident(children[0])

    # -- actions
    def flatten(self, meta, children):
        return ast.Flatten(span=self._span(meta))

    def close(self, meta, children):
        return ast.Close(children[0], span=self._span(meta))

    def reduce(self, meta, children):
        return ast.Reduce(children[0], children[1], span=self._span(meta))

    def reduce_total(self, meta, children):
        return ast.ReduceTotal(children[0], children[1], span=self._span(meta))

    def cancel_orders(self, meta, children):
        return ast.CancelOrders(children[0], span=self._span(meta))

    def cancel(self, meta, children):
        return ast.Cancel(children[0], span=self._span(meta))

    def lockout_for(self, meta, children):
        return ast.Lockout("for", children[0], span=self._span(meta))

    def lockout_until(self, meta, children):
        return ast.Lockout("until", children[0], span=self._span(meta))

    def lockout_manual(self, meta, children):
        return ast.Lockout("manual", None, span=self._span(meta))

    def lockout_while(self, meta, children):
        return ast.Lockout("while", children[0], span=self._span(meta))

    def block(self, meta, children):
        return ast.Block(children[0], children[1], span=self._span(meta))

    def move_stop(self, meta, children):
        return ast.MoveStop(children[0], children[1], span=self._span(meta))

    def place_stop(self, meta, children):
        return ast.PlaceStop(children[0], children[1], span=self._span(meta))

    def place_target(self, meta, children):
        return ast.PlaceTarget(children[0], children[1], span=self._span(meta))

    def alert(self, meta, children):
        return ast.Alert(children[0], span=self._span(meta))

    # -- expressions
    def or_(self, meta, children):
        return ast.BoolOp("or", children[0], children[1], span=self._span(meta))

    def and_(self, meta, children):
        return ast.BoolOp("and", children[0], children[1], span=self._span(meta))

    def not_(self, meta, children):
        return ast.Not(children[0], span=self._span(meta))

    def compare(self, meta, children):
        left, op, right = children
        return ast.Compare(str(op), left, right, span=self._span(meta))

    def in_(self, meta, children):
        return ast.Compare("in", children[0], children[1], span=self._span(meta))

    def not_in(self, meta, children):
        return ast.Compare("not in", children[0], children[1], span=self._span(meta))

    def arith(self, meta, children):
        left, op, right = children
        return ast.Arith(str(op), left, right, span=self._span(meta))

    def conditional(self, meta, children):
        body, test, orelse = children
        return ast.Conditional(body, test, orelse, span=self._span(meta))

    def aggregate(self, meta, children):
        func, body, var, items, where = children
        span = self._span(meta)
        if not (isinstance(func, ast.Name) and func.id in ast.AGGREGATES):
            close = difflib.get_close_matches(func.id, ast.AGGREGATES, n=1) if isinstance(func, ast.Name) else []
            self._problem(
                "only an aggregate takes `for ... in ...` between its parentheses",
                func.span,
                f"did you mean `{close[0]}`?"
                if close
                else "the aggregates are " + ", ".join(ast.AGGREGATES) + ", e.g. `sum(p.qty for p in positions)`",
            )
        name = func.id if isinstance(func, ast.Name) else "count"
        return ast.Aggregate(name, body, self._ident(var), items, where, span=span)

    def neg(self, meta, children):
        operand = children[0]
        span = self._span(meta)
        if isinstance(operand, ast.MoneyLit) and operand.amount >= 0:
            # `-$12.50` is a money literal in its own right (PRODUCT.md §3.2), however it is
            # spaced: layout (e.g. `-` at the end of a line) must never change the tree.
            return ast.MoneyLit(-operand.amount, span=span)
        return ast.Neg(operand, span=span)

    def field(self, meta, children):
        obj, name = children
        return ast.Field(obj, str(name), span=self._span(meta))

    def call(self, meta, children):
        func, args = children
        return ast.Call(func, args, span=self._span(meta))

    def name(self, meta, children):
        text, span = str(children[0]), self._span(meta)
        if text in RESERVED:  # the contextual lexer reads a keyword as a name where no keyword fits
            self._problem(
                f"expected a value before `{text}`",
                span,
                f"`{text}` is a keyword; the expression before it is incomplete",
            )
        return ast.Name(text, span=span)

    def list(self, meta, children):
        return ast.ListExpr(tuple(c for c in children if c is not None), span=self._span(meta))

    def map(self, meta, children):
        return ast.MapExpr(tuple(c for c in children if c is not None), span=self._span(meta))

    def map_entry(self, meta, children):
        return ast.MapEntry(children[0], children[1], span=self._span(meta))

    # -- literals
    def money(self, meta, children):
        text = str(children[0])
        return ast.MoneyLit(Decimal(text[1:].replace(",", "")), span=self._span(meta))

    def int(self, meta, children):
        return ast.IntLit(int(children[0]), span=self._span(meta))

    def decimal(self, meta, children):
        return ast.DecimalLit(Decimal(str(children[0])), span=self._span(meta))

    def percent(self, meta, children):
        return ast.PercentLit(Decimal(str(children[0])[:-1]), span=self._span(meta))

    def ticks(self, meta, children):
        return ast.TicksLit(int(children[0]), span=self._span(meta))

    def contracts(self, meta, children):
        return ast.ContractsLit(int(children[0]), span=self._span(meta))

    def duration(self, meta, children):
        text, span = str(children[0]), self._span(meta)
        parts = [(int(n), unit) for n, unit in _DURATION_PART.findall(text)]
        units = [unit for _, unit in parts]
        if units != sorted(set(units), key="dhms".index):
            self._problem(
                f"`{text}` is not a valid duration: each unit once, largest first",
                span,
                "write durations like 30s, 15m, 1h30m or 2d",
            )
        return ast.DurationLit(sum(n * _UNIT_SECONDS[unit] for n, unit in parts), span=span)

    def clock(self, meta, children):
        text, span = str(children[0]), self._span(meta)
        hours, minutes = (int(x) for x in text.split(":"))
        if hours > 23 or minutes > 59:
            self._problem(f"`{text}` is not a time of day", span, "use 24-hour times from 00:00 to 23:59")
            hours, minutes = 0, 0
        return ast.ClockLit(dt.time(hours, minutes), span=span)

    def date(self, meta, children):
        text, span = str(children[0]), self._span(meta)
        try:
            value = dt.date.fromisoformat(text)
        except ValueError:
            self._problem(f"`{text}` is not a calendar date", span, "write dates as YYYY-MM-DD")
            value = dt.date(1970, 1, 1)
        return ast.DateLit(value, span=span)

    def string(self, meta, children):
        return self._string(children[0])

    def _string(self, token: Token) -> ast.StringLit:
        text = str(token)
        if text.startswith('"""'):
            # Triple-quoted strings may span lines; indentation is normalised like Python's.
            return ast.StringLit(unescape(inspect.cleandoc(text[3:-3])), span=self._tok(token))
        return ast.StringLit(unescape(text[1:-1]), span=self._tok(token))

    def symbol(self, meta, children):
        return ast.SymbolLit(str(children[0]), span=self._span(meta))

    def true(self, meta, children):
        return ast.BoolLit(True, span=self._span(meta))

    def false(self, meta, children):
        return ast.BoolLit(False, span=self._span(meta))

    def none(self, meta, children):
        return ast.NoneLit(span=self._span(meta))
