"""Hypothesis strategies for random syntax trees and for messy source text.

The trees are the ones the parser can produce: names are lowercase identifiers that are not
keywords, symbols are uppercase (`MNQ`, `6E`), numbers in literals are never negative (the grammar
has no negative literal except money, where `-$5` is folded into ``MoneyLit(-5)``, so a
``Neg(MoneyLit(x >= 0))`` cannot be written), money is exact to the cent, clocks have no seconds.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import strategies as st

from riskc.dsl import ast
from riskc.dsl.format import format_module
from riskc.dsl.parser import grammar
from riskc.dsl.syntax_errors import RESERVED

# Words that follow a number as its unit (`5 ticks`), so a name spelled like them would be read
# as a unit after an integer setting value.
_UNIT_WORDS = frozenset({"tick", "ticks", "contract", "contracts"})

names = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True).filter(
    lambda s: s not in RESERVED and s not in _UNIT_WORDS
)
# After `.` only a name can follow, so keywords are field names there (`p.order`, `x.and`).
field_names = st.one_of(names, st.sampled_from(sorted(RESERVED | {"position", "order"})))
idents = names.map(ast.Ident)
symbols = st.from_regex(r"[A-Z][A-Z0-9]{0,3}|[0-9][A-Z][A-Z0-9]{0,2}", fullmatch=True)

_text_chars = st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp"), include_characters='\n\t"\\#')
string_values = st.text(_text_chars, max_size=20)

# ---- literals ------------------------------------------------------------------------------------

_non_negative_decimals = st.one_of(
    st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False),
    st.builds(lambda digits, exp: Decimal(digits).scaleb(exp), st.integers(0, 10**6), st.integers(-8, 4)),
)
money = st.decimals(min_value=-(10**9), max_value=10**9, places=2, allow_nan=False, allow_infinity=False)
clock_times = st.builds(dt.time, st.integers(0, 23), st.integers(0, 59))
counts = st.integers(0, 10**6)

literals = st.one_of(
    money.map(ast.MoneyLit),
    st.integers(0, 10**12).map(ast.IntLit),
    _non_negative_decimals.map(ast.DecimalLit),
    _non_negative_decimals.map(ast.PercentLit),
    st.integers(0, 10**7).map(ast.DurationLit),
    clock_times.map(ast.ClockLit),
    st.dates().map(ast.DateLit),
    counts.map(ast.TicksLit),
    counts.map(ast.ContractsLit),
    string_values.map(ast.StringLit),
    symbols.map(ast.SymbolLit),
    st.booleans().map(ast.BoolLit),
    st.just(ast.NoneLit()),
)

# ---- expressions ---------------------------------------------------------------------------------


def _negatable(expr: ast.Expr) -> bool:
    return not (isinstance(expr, ast.MoneyLit) and expr.amount >= 0)


def _compound(children: st.SearchStrategy) -> st.SearchStrategy:
    args = st.lists(st.builds(ast.Arg, st.none() | idents, children), max_size=3).map(tuple)
    return st.one_of(
        st.builds(ast.Field, children, field_names),
        st.builds(ast.Call, children, args),
        children.filter(_negatable).map(ast.Neg),
        children.map(ast.Not),
        st.builds(ast.Arith, st.sampled_from("+-*/"), children, children),
        st.builds(ast.Compare, st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "in", "not in"]), children, children),
        st.builds(ast.BoolOp, st.sampled_from(["and", "or"]), children, children),
        st.lists(children, max_size=3).map(lambda items: ast.ListExpr(tuple(items))),
        st.lists(st.builds(ast.MapEntry, children, children), max_size=3).map(lambda es: ast.MapExpr(tuple(es))),
        st.builds(ast.Conditional, children, children, children),
        st.builds(ast.Aggregate, st.sampled_from(ast.AGGREGATES), children, idents, children, st.none() | children),
    )


expressions = st.recursive(st.one_of(literals, names.map(ast.Name)), _compound, max_leaves=10)

# ---- declarations --------------------------------------------------------------------------------

types = st.recursive(
    names.map(ast.SimpleType),
    lambda inner: st.one_of(
        st.builds(ast.GenericType, names, st.lists(inner, min_size=1, max_size=2).map(tuple)),
        st.lists(names, min_size=2, max_size=3).map(lambda ms: ast.EnumType(tuple(ms))),
        inner.map(ast.OptionalType),
    ),
    max_leaves=4,
)

actions = st.one_of(
    st.just(ast.Flatten()),
    expressions.map(ast.Close),
    st.builds(ast.Reduce, expressions, expressions),
    st.builds(ast.ReduceTotal, expressions, st.none() | expressions),
    st.builds(ast.CancelOrders, st.none() | expressions),
    expressions.map(ast.Cancel),
    st.builds(ast.Lockout, st.sampled_from(["for", "until", "while"]), expressions),
    st.just(ast.Lockout("manual", None)),
    st.builds(ast.Block, expressions, st.none() | expressions),
    st.builds(ast.MoveStop, expressions, expressions),
    st.builds(ast.PlaceStop, expressions, expressions),
    st.builds(ast.PlaceTarget, expressions, expressions),
    expressions.map(ast.Alert),
)


def _tuple_of(strategy, max_size=3, min_size=0):
    return st.lists(strategy, min_size=min_size, max_size=max_size).map(tuple)


rules = st.builds(
    ast.Rule,
    name=idents,
    params=_tuple_of(st.builds(ast.Param, idents, types, st.none() | expressions)),
    doc=st.none() | string_values.map(ast.StringLit),
    on=_tuple_of(idents),
    binder=st.none() | st.builds(ast.Binder, st.sampled_from(["position", "order"]), idents),
    when=expressions,
    actions=_tuple_of(actions, max_size=4, min_size=1),
    severity=st.none() | idents,
)

uses = st.builds(
    ast.Use,
    idents,
    _tuple_of(st.builds(ast.Arg, st.none() | idents, expressions)),
    st.none() | idents,
)

path_parts = st.one_of(names, symbols, st.sampled_from(["flatten", "alert"]))
setting_values = st.one_of(
    st.lists(path_parts, min_size=1, max_size=3).map(lambda ps: ast.Path(tuple(ps))),
    clock_times.map(ast.ClockLit),
    st.integers(0, 10**7).map(ast.DurationLit),
    money.map(lambda amount: ast.MoneyLit(abs(amount))),
    st.integers(0, 10**6).map(ast.IntLit),
    _non_negative_decimals.map(ast.DecimalLit),
    string_values.map(ast.StringLit),
    st.booleans().map(ast.BoolLit),
)
headers = st.builds(
    ast.Header,
    string_values.map(ast.StringLit),
    _tuple_of(st.builds(ast.Setting, idents, setting_values)),
)

comment_texts = (
    st.text(st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=15)
    .map(lambda body: "#" + body)
    .filter(lambda text: text == text.rstrip())
)

modules = st.builds(
    ast.Module,
    st.none() | headers,
    _tuple_of(st.one_of(uses, rules), max_size=4),
    _tuple_of(comment_texts.map(ast.Comment)),
)
comment_free_modules = st.builds(ast.Module, st.none() | headers, _tuple_of(st.one_of(uses, rules), max_size=4))

# ---- messy source text ---------------------------------------------------------------------------

_separators = st.one_of(
    st.sampled_from([" ", "  ", "\n", "\n\n", "\t", " \n    "]),
    comment_texts.map(lambda text: f"  {text}\n"),
    comment_texts.map(lambda text: f"\n{text}\n"),
)


@st.composite
def messy_sources(draw, modules=comment_free_modules) -> str:
    """A canonical file re-spaced at random: between any two tokens, spaces, newlines, blank
    lines or comments (trailing or on their own line). Its meaning is the module's."""
    text = format_module(draw(modules))
    pieces = [str(token) for token in grammar().lex(text)]
    gaps = draw(st.lists(_separators, min_size=len(pieces) + 1, max_size=len(pieces) + 1))
    return "".join(gap + piece for gap, piece in zip(gaps, pieces, strict=False)) + gaps[-1]
