"""The typed syntax tree: one frozen, slotted dataclass per node, each with a ``span``.

Spans are keyword-only and excluded from equality, so two trees compare equal when they say the
same thing, wherever it was written (this is what ``parse(fmt(x)) == parse(x)`` relies on).
Literals carry their unit: money as an exact ``Decimal``, durations in whole seconds, clocks as
``datetime.time``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from riskc.dsl.errors import NO_SPAN, Span


def _span() -> Span:
    return field(default=NO_SPAN, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True, slots=True)
class Ident:
    """A name written in the source where its position matters (rule ids, parameters, ...)."""

    text: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Comment:
    text: str  # including the leading '#'
    span: Span = _span()


# ---- type annotations ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimpleType:
    name: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class GenericType:
    name: str  # list | map
    args: tuple[TypeRef, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class EnumType:
    members: tuple[str, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class OptionalType:
    inner: TypeRef
    span: Span = _span()


TypeRef = SimpleType | GenericType | EnumType | OptionalType


# ---- literals -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MoneyLit:
    amount: Decimal
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class IntLit:
    value: int
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class DecimalLit:
    value: Decimal
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class PercentLit:
    value: Decimal  # 2% is Decimal("2")
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class DurationLit:
    seconds: int
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ClockLit:
    value: dt.time
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class DateLit:
    value: dt.date
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class TicksLit:
    count: int
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ContractsLit:
    count: int
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class StringLit:
    value: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class SymbolLit:
    code: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class BoolLit:
    value: bool
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class NoneLit:
    span: Span = _span()


# ---- expressions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Name:
    id: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Field:
    obj: Expr
    name: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Arg:
    name: Ident | None  # None for a positional argument
    value: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Call:
    func: Expr  # a Name (function) or a Field (method)
    args: tuple[Arg, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Arith:
    op: str  # + - * /
    left: Expr
    right: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # == != < <= > >= in, not in
    left: Expr
    right: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # and | or
    left: Expr
    right: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ListExpr:
    items: tuple[Expr, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class MapEntry:
    key: Expr
    value: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class MapExpr:
    entries: tuple[MapEntry, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Aggregate:
    """`sum(EXPR for NAME in ITEMS where COND)`; ``func`` is one of ``AGGREGATES``."""

    func: str
    expr: Expr
    var: Ident
    items: Expr
    where: Expr | None
    span: Span = _span()


AGGREGATES = ("sum", "count", "min", "max", "any", "all")


@dataclass(frozen=True, slots=True)
class Conditional:
    """`BODY if TEST else ORELSE`."""

    body: Expr
    test: Expr
    orelse: Expr
    span: Span = _span()


Literal = (
    MoneyLit
    | IntLit
    | DecimalLit
    | PercentLit
    | DurationLit
    | ClockLit
    | DateLit
    | TicksLit
    | ContractsLit
    | StringLit
    | SymbolLit
    | BoolLit
    | NoneLit
)
Expr = (
    Literal | Name | Field | Call | Neg | Not | Arith | Compare | BoolOp | ListExpr | MapExpr | Aggregate | Conditional
)
LITERAL_TYPES = Literal.__args__  # type: ignore[attr-defined]


# ---- actions (PRODUCT.md §3.4) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Flatten:
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Close:
    target: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Reduce:
    target: Expr
    to: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ReduceTotal:
    to: Expr
    counting: Expr | None = None  # `net` or `gross` (the default): which total must come down to `to`
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class CancelOrders:
    symbol: Expr | None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Cancel:
    target: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Lockout:
    mode: str  # for | until | manual | while
    value: Expr | None  # None only for `until manual`
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Block:
    symbol: Expr
    duration: Expr | None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class MoveStop:
    target: Expr
    price: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class PlaceStop:
    target: Expr
    price: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class PlaceTarget:
    target: Expr
    price: Expr
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Alert:
    message: Expr
    span: Span = _span()


Action = (
    Flatten
    | Close
    | Reduce
    | ReduceTotal
    | CancelOrders
    | Cancel
    | Lockout
    | Block
    | MoveStop
    | PlaceStop
    | PlaceTarget
    | Alert
)


# ---- declarations -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Path:
    """A setting value such as ``America/Chicago`` (a timezone) or ``flatten``."""

    parts: tuple[str, ...]
    span: Span = _span()

    @property
    def text(self) -> str:
        return "/".join(self.parts)


SettingValue = Path | Literal


@dataclass(frozen=True, slots=True)
class Setting:
    name: Ident
    value: SettingValue
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Header:
    name: StringLit
    settings: tuple[Setting, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Use:
    name: Ident
    args: tuple[Arg, ...]
    alias: Ident | None
    span: Span = _span()

    @property
    def id(self) -> str:
        return (self.alias or self.name).text


@dataclass(frozen=True, slots=True)
class Param:
    name: Ident
    type: TypeRef
    default: Expr | None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Binder:
    kind: str  # position | order
    var: Ident
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Rule:
    name: Ident
    params: tuple[Param, ...]
    doc: StringLit | None
    on: tuple[Ident, ...]
    binder: Binder | None
    when: Expr
    actions: tuple[Action, ...]
    severity: Ident | None
    span: Span = _span()

    @property
    def id(self) -> str:
        return self.name.text


Item = Use | Rule


@dataclass(frozen=True, slots=True)
class Module:
    """One parsed ``.risk`` file."""

    header: Header | None
    items: tuple[Item, ...]
    comments: tuple[Comment, ...] = ()
    span: Span = _span()

    @property
    def uses(self) -> tuple[Use, ...]:
        return tuple(i for i in self.items if isinstance(i, Use))

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(i for i in self.items if isinstance(i, Rule))
