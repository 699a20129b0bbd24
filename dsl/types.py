"""Types and units of the language (PRODUCT.md §3.2), and the algebra that combines them.

Units are types: `money + contracts` is a unit error found offline, never a surprise at 3 a.m.
Integer and decimal literals are polymorphic (``5`` may be contracts, ``21000.25`` a price); that
is the only implicit conversion. Points and money meet only through an instrument function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Prim:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class ListT:
    elem: Type

    def __str__(self) -> str:
        return f"list[{self.elem}]"


@dataclass(frozen=True, slots=True)
class MapT:
    key: Type
    value: Type

    def __str__(self) -> str:
        return f"map[{self.key}, {self.value}]"


@dataclass(frozen=True, slots=True)
class EnumT:
    members: tuple[str, ...]

    def __str__(self) -> str:
        return "|".join(self.members)


@dataclass(frozen=True, slots=True)
class OptionalT:
    inner: Type

    def __str__(self) -> str:
        return f"{self.inner}?"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: Type
    required: bool = True


@dataclass(frozen=True, slots=True)
class FuncT:
    """A function or method signature. ``doc`` feeds `riskc rules` and the language reference."""

    params: tuple[Param, ...]
    result: Type
    doc: str = ""

    def __str__(self) -> str:
        args = ", ".join(f"{p.name}: {p.type}" for p in self.params)
        return f"({args}) -> {self.result}"


@dataclass(frozen=True, slots=True)
class Member:
    type: Type
    doc: str = ""


@dataclass(frozen=True, slots=True)
class ObjT:
    """A record of the snapshot (account, position, ...): named members with types and docs."""

    name: str
    members: Mapping[str, Member] = field(hash=False, compare=False)

    def __str__(self) -> str:
        return self.name


Type = Prim | ListT | MapT | EnumT | OptionalT | FuncT | ObjT

MONEY = Prim("money")
CONTRACTS = Prim("contracts")
PRICE = Prim("price")
POINTS = Prim("points")
TICKS = Prim("ticks")
DURATION = Prim("duration")
CLOCK = Prim("clock")
DATE = Prim("date")
TIME = Prim("time")  # an instant, e.g. next_trading_day
SYMBOL = Prim("symbol")
STRING = Prim("string")
BOOL = Prim("bool")
INT = Prim("int")
DECIMAL = Prim("decimal")
PERCENT = Prim("percent")
NONE = Prim("none")
ANY = Prim("any")  # the type of an expression that already failed to check: silences cascades

PRIMITIVES = {
    p.name: p
    for p in (
        MONEY,
        CONTRACTS,
        PRICE,
        POINTS,
        TICKS,
        DURATION,
        CLOCK,
        DATE,
        TIME,
        SYMBOL,
        STRING,
        BOOL,
        INT,
        DECIMAL,
        PERCENT,
    )
}
GENERICS = {"list": 1, "map": 2}

# Measured quantities: mixing two different ones is a *unit* error rather than a type error.
UNITS = frozenset({MONEY, CONTRACTS, PRICE, POINTS, TICKS, DURATION, CLOCK, DATE, TIME, PERCENT})
NUMERIC = frozenset({INT, DECIMAL, MONEY, CONTRACTS, PRICE, POINTS, TICKS, DURATION, PERCENT})
ORDERED = NUMERIC | {CLOCK, DATE, TIME}
SCALARS = frozenset({INT, DECIMAL, PERCENT})

# What a bare literal may stand for, besides its own type.
INT_LITERAL_CAN_BE = frozenset({INT, CONTRACTS, DECIMAL, PRICE, POINTS})
DECIMAL_LITERAL_CAN_BE = frozenset({DECIMAL, PRICE, POINTS})


def obj(name: str, members: dict[str, Member]) -> ObjT:
    return ObjT(name, MappingProxyType(dict(members)))


def strip_optional(t: Type) -> Type:
    return t.inner if isinstance(t, OptionalT) else t


def is_any(t: Type) -> bool:
    return t == ANY


def same_family(a: Type, b: Type) -> bool:
    """Equal types, or int and contracts (contracts are counted in whole numbers)."""
    return a == b or {a, b} == {INT, CONTRACTS} or ANY in (a, b)


# (left, op, right) -> result. Only what makes physical sense; everything else is an error.
_ARITH: dict[tuple[Type, str, Type], Type] = {}


def _rule(left: Type, ops: str, right: Type, result: Type) -> None:
    for op in ops:
        _ARITH[(left, op, right)] = result


for _unit in (MONEY, CONTRACTS, POINTS, TICKS, DURATION, INT, DECIMAL, PERCENT):
    _rule(_unit, "+-", _unit, _unit)
for _unit in (MONEY, CONTRACTS, POINTS, TICKS, DURATION, DECIMAL, PRICE):
    _rule(_unit, "*", INT, _unit)
    _rule(INT, "*", _unit, _unit)
    _rule(_unit, "/", INT, _unit)
for _unit in (MONEY, POINTS, DURATION, DECIMAL, PRICE):
    _rule(_unit, "*", DECIMAL, _unit)
    _rule(DECIMAL, "*", _unit, _unit)
    _rule(_unit, "/", DECIMAL, _unit)
    _rule(_unit, "*", PERCENT, _unit)
    _rule(PERCENT, "*", _unit, _unit)
for _unit in (MONEY, CONTRACTS, POINTS, TICKS, DURATION):
    _rule(_unit, "/", _unit, DECIMAL)  # a ratio has no unit
_rule(MONEY, "*", CONTRACTS, MONEY)  # an amount per contract, times contracts
_rule(CONTRACTS, "*", MONEY, MONEY)
_rule(CONTRACTS, "+-", INT, CONTRACTS)
_rule(INT, "+-", CONTRACTS, CONTRACTS)
_rule(INT, "*", INT, INT)
_rule(INT, "/", INT, DECIMAL)
_rule(INT, "+-", DECIMAL, DECIMAL)
_rule(DECIMAL, "+-", INT, DECIMAL)
_rule(PRICE, "-", PRICE, POINTS)
_rule(PRICE, "+-", POINTS, PRICE)
_rule(POINTS, "+", PRICE, PRICE)
_rule(TIME, "+-", DURATION, TIME)
_rule(TIME, "-", TIME, DURATION)
_rule(CLOCK, "+-", DURATION, CLOCK)
_rule(CLOCK, "-", CLOCK, DURATION)


def arith_result(left: Type, op: str, right: Type) -> Type | None:
    if ANY in (left, right):
        return ANY
    return _ARITH.get((left, op, right))


def arith_partners(left: Type, op: str) -> list[Type]:
    """The right operands ``left op _`` accepts (for a unit error's `want:` line)."""
    return sorted({r for (lt, o, r) in _ARITH if lt == left and o == op}, key=str)


_WORDS = {
    MONEY: "money",
    CONTRACTS: "contracts",
    PRICE: "a price",
    POINTS: "points",
    TICKS: "ticks",
    DURATION: "a duration",
    CLOCK: "a time of day",
    DATE: "a date",
    TIME: "an instant",
    SYMBOL: "a symbol",
    STRING: "a string",
    BOOL: "a condition (bool)",
    INT: "a whole number (int)",
    DECIMAL: "a decimal number",
    PERCENT: "a percentage",
    NONE: "none",
}


def describe(t: Type) -> str:
    """A type in words for messages: `money`, `a duration`, `a list[symbol]`."""
    if t in _WORDS:
        return _WORDS[t]
    if isinstance(t, EnumT):
        return "one of " + ", ".join(t.members)
    if isinstance(t, OptionalT):
        return f"{describe(t.inner)} or none"
    text = str(t)
    return ("an " if text[:1] in "aeiou" else "a ") + text
