"""Random snapshots and random well-typed policies, for the differential test of the compiler.

Policies are source text: `use` lines of standard library rules with random valid arguments,
and generated rules whose `when` is built type-first from the snapshot schema (``SCHEMA``) and
the unit algebra (``dsl.types.arith_result``), so nearly all of them pass the checker.

The generator draws through a ``Pick`` (choose from a sequence, or an integer in a range), so the
same code runs under hypothesis (``HypothesisPick``, which shrinks) and from a seeded
``random.Random`` (``RandomPick``, for measuring the checker's acceptance rate).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from decimal import Decimal

from hypothesis import strategies as st

from riskc.dsl import ast
from riskc.dsl import types as T
from riskc.dsl.checker import check, resolve_type
from riskc.dsl.errors import DiagnosticSink
from riskc.dsl.library import stdlib_sources
from riskc.engine.core.calendar import TradingCalendar
from riskc.engine.core.instruments import CME_SPECS, DEFAULT_INSTRUMENTS
from riskc.engine.core.snapshot import (
    EVENT_KINDS,
    ORDER_STATUSES,
    ORDER_TYPES,
    SCHEMA,
    UNBOUNDED,
    WEEKDAYS,
    Account,
    Day,
    Event,
    Order,
    Position,
    Session,
    Snapshot,
    Trade,
    Week,
    trade_tallies,
)

CALENDAR = TradingCalendar()  # `next_trading_week`, `lockout until CLOCK` on open sessions
UNKNOWN_SYMBOL = "XYZ"  # no instrument spec: instrument functions raise on it
SYMBOLS = (*sorted(CME_SPECS), UNKNOWN_SYMBOL)
UTC = dt.UTC

# ---- snapshots ----------------------------------------------------------------------------------

money = st.decimals(min_value=-5000, max_value=5000, places=2, allow_nan=False, allow_infinity=False)
prices = st.decimals(min_value=0, max_value=30000, places=2, allow_nan=False, allow_infinity=False)
durations = st.integers(0, 4 * 3600).map(lambda s: dt.timedelta(seconds=s))
instants = st.datetimes(dt.datetime(2025, 1, 1), dt.datetime(2027, 1, 1), timezones=st.just(UTC))
clocks = st.builds(dt.time, st.integers(0, 23), st.integers(0, 59))
symbols = st.sampled_from(SYMBOLS)


def contract_of(symbol: str) -> str:
    return f"CON.F.US.{symbol}.Z25"


@st.composite
def positions(draw) -> Position:
    symbol = draw(symbols)
    size = draw(st.integers(-8, 8).filter(bool))
    qty = abs(size)
    coverage = draw(st.integers(0, qty))
    spec = CME_SPECS.get(symbol)
    return Position(
        symbol=symbol,
        contract_id=contract_of(symbol),
        side="long" if size > 0 else "short",
        size=size,
        qty=qty,
        direction=1 if size > 0 else -1,
        avg_price=draw(prices),
        mark=draw(prices),
        unrealized_pnl=draw(money),
        stop_coverage=coverage,
        risk_at_stop=UNBOUNDED if coverage < qty else draw(money.map(abs)),
        age=draw(durations),
        uncovered_for=dt.timedelta(0) if coverage == qty else draw(durations),
        tick_size=spec.tick_size if spec else Decimal("0"),
        tick_value=spec.tick_value if spec else Decimal("0"),
        max_favorable=draw(money.map(abs)),
        max_adverse=-draw(money.map(abs)),
    )


@st.composite
def trades(draw, now: dt.datetime) -> Trade:
    symbol = draw(symbols)
    pnl = draw(st.none() | money)
    return Trade(
        symbol=symbol,
        contract_id=contract_of(symbol),
        side=draw(st.sampled_from(("buy", "sell"))),
        size=draw(st.integers(1, 6)),
        price=draw(prices),
        pnl=pnl,
        fees=draw(money.map(abs)),
        time=now - draw(durations),
        closing=pnl is not None,
    )


@st.composite
def orders(draw, order_id=st.integers(1, 10**6)) -> Order:  # noqa: B008
    symbol = draw(symbols)
    kind = draw(st.sampled_from(ORDER_TYPES))
    return Order(
        id=draw(order_id),
        symbol=symbol,
        contract_id=contract_of(symbol),
        type=kind,
        side=draw(st.sampled_from(("buy", "sell"))),
        size=draw(st.integers(1, 6)),
        price=draw(st.none() | prices) if kind in ("limit", "stop_limit") else None,
        stop_price=draw(prices) if "stop" in kind else None,
        age=draw(durations),
    )


@st.composite
def events(draw, now: dt.datetime, held: list[Position]) -> Event:
    kind = draw(st.sampled_from(EVENT_KINDS))
    symbol = draw(st.sampled_from([p.symbol for p in held]) | symbols) if held else draw(symbols)
    return Event(
        kind=kind,
        time=now - draw(durations),
        symbol=symbol,
        contract_id=contract_of(symbol),
        side=draw(st.sampled_from(("buy", "sell"))),
        size=draw(st.integers(-5, 5)),
        price=draw(prices),
        pnl=draw(money),
        fees=draw(money.map(abs)),
        closing=draw(st.booleans()),
        order=draw(orders()) if kind == "order" else None,
        status=draw(st.sampled_from(ORDER_STATUSES)),
        balance=draw(money) + 50000,
        can_trade=draw(st.booleans()),
        last=draw(prices),
        bid=draw(prices),
        ask=draw(prices),
    )


@st.composite
def snapshots(draw) -> Snapshot:
    now = draw(instants)
    held = draw(st.lists(positions(), max_size=5, unique_by=lambda p: p.symbol))
    fills = sorted(now - draw(durations) for _ in range(draw(st.integers(0, 8))))
    realized, unrealized = draw(money), sum((p.unrealized_pnl for p in held), Decimal("0.00"))
    fills_made = tuple(sorted(draw(st.lists(trades(now), max_size=6)), key=lambda t: t.time))
    losing, winning, streak = trade_tallies(fills_made)
    earlier = sorted(now - dt.timedelta(days=1) - draw(durations) for _ in range(draw(st.integers(0, 4))))
    snapshot = Snapshot(
        account=Account(
            id=draw(st.integers(1, 10**8)),
            name="50KTC-V2-1",
            balance=50000 + draw(money),
            can_trade=draw(st.booleans()),
            open_contracts=sum(p.qty for p in held),
            net_contracts=sum(p.size for p in held),
        ),
        day=Day(
            realized_pnl=realized,
            unrealized_pnl=unrealized,
            net_pnl=realized + unrealized,
            fees=draw(money.map(abs)),
            trades=len(fills),
            high_balance=50000 + draw(money),
            eod_high_balance=50000 + draw(money),
            fill_times=tuple(fills),
            earlier_fill_times=tuple(earlier),
            losing_trades=losing,
            winning_trades=winning,
            loss_streak=streak,
            now=now,
        ),
        positions=tuple(held),
        orders=tuple(draw(st.lists(orders(), max_size=6, unique_by=lambda o: o.id))),
        session=Session(
            now=now,
            clock=draw(clocks),
            weekday=draw(st.sampled_from(WEEKDAYS)),
            trading_day=now.date(),
            is_open=draw(st.booleans()),
        ),
        next_trading_day=now + draw(durations) + dt.timedelta(minutes=1),
        event=draw(events(now, held)),
        instruments=DEFAULT_INSTRUMENTS,
        trades=fills_made,
        calendar=CALENDAR,
        next_trading_week=CALENDAR.next_trading_week_start(now),
        week=Week(realized + draw(money), len(fills) + draw(st.integers(0, 40)), losing + draw(st.integers(0, 9))),
    )
    return snapshot


# ---- drawing ------------------------------------------------------------------------------------


class Pick:
    def one(self, items):
        raise NotImplementedError

    def integer(self, low: int, high: int) -> int:
        raise NotImplementedError

    def chance(self, percent: int) -> bool:
        return self.integer(1, 100) <= percent


@dataclass
class HypothesisPick(Pick):
    draw: object  # the `draw` of a composite strategy

    def one(self, items):
        return self.draw(st.sampled_from(list(items)))

    def integer(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))


@dataclass
class RandomPick(Pick):
    rng: random.Random

    def one(self, items):
        return self.rng.choice(list(items))

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)


# ---- literals by type ---------------------------------------------------------------------------


def money_text(pick: Pick, low: int = 0, high: int = 3000) -> str:
    amount = pick.integer(low, high)
    cents = pick.one(("", "", ".50", ".25"))
    return f"${amount:,}{cents}"


def duration_text(pick: Pick) -> str:
    return pick.one((f"{pick.integer(0, 90)}s", f"{pick.integer(1, 90)}m", f"{pick.integer(1, 5)}h", "1h30m"))


def clock_text(pick: Pick) -> str:
    return f"{pick.integer(0, 23):02d}:{pick.one((0, 8, 10, 30, 59)):02d}"


def symbol_text(pick: Pick) -> str:
    return pick.one(SYMBOLS)


_LITERALS = {
    T.MONEY: lambda p: money_text(p) if p.chance(80) else "-" + money_text(p),
    T.CONTRACTS: lambda p: f"{p.integer(0, 9)} contracts" if p.chance(50) else str(p.integer(0, 9)),
    T.INT: lambda p: str(p.integer(0, 12)),
    T.TICKS: lambda p: f"{p.integer(0, 40)} ticks",
    T.DURATION: duration_text,
    T.CLOCK: clock_text,
    T.SYMBOL: symbol_text,
    T.DECIMAL: lambda p: p.one(("0.5", "1.5", "2.0", "0.0", "3.25")),
    T.PERCENT: lambda p: f"{p.integer(0, 150)}%",
    T.STRING: lambda p: p.one(('"breach"', '"stop now"', '"take a break"')),
    T.BOOL: lambda p: p.one(("true", "false")),
    T.PRICE: lambda p: p.one(("21000.25", "70.10", "5000.0", "0.0")),
    T.POINTS: lambda p: p.one(("2.5", "0.25", "10.0", "0.0")),
}


# ---- `use` lines of the standard library ---------------------------------------------------------


@dataclass(frozen=True)
class LibraryRule:
    name: str
    params: tuple[tuple[str, T.Type, bool], ...]  # (name, type, has a default or is optional)


def library_rules() -> tuple[LibraryRule, ...]:
    result = check([], SCHEMA, stdlib_sources())
    sink = DiagnosticSink()
    return tuple(
        LibraryRule(
            d.rule.id,
            tuple(
                (p.name.text, resolve_type(p.type, sink), p.default is not None or isinstance(p.type, ast.OptionalType))
                for p in d.rule.params
            ),
        )
        for d in result.definitions.values()
    )


def constant_text(t: T.Type, pick: Pick) -> str:
    """A constant of type ``t``, as a `use` argument is written."""
    t = T.strip_optional(t)
    if isinstance(t, T.EnumT):
        return pick.one(t.members)
    if isinstance(t, T.ListT):
        return "[" + ", ".join(constant_text(t.elem, pick) for _ in range(pick.integer(0, 3))) + "]"
    if isinstance(t, T.MapT):
        keys = {symbol_text(pick) for _ in range(pick.integer(0, 3))}
        return "{" + ", ".join(f"{k}: {constant_text(t.value, pick)}" for k in sorted(keys)) + "}"
    if t == T.MONEY:
        return money_text(pick, 0, 2500)
    if t == T.INT:
        return str(pick.integer(0, 6))
    if t == T.CONTRACTS:
        return str(pick.integer(0, 9))
    return _LITERALS[t](pick)


def use_line(rule: LibraryRule, pick: Pick, alias: str | None) -> str:
    args = [
        f"{name}: {constant_text(typ, pick)}" for name, typ, optional in rule.params if not optional or pick.chance(60)
    ]
    call = f"use {rule.name}({', '.join(args)})" if rule.params else f"use {rule.name}"
    return call + (f" as {alias}" if alias else "")


# ---- generated rules: typed expressions ------------------------------------------------------------

GENERATED = (
    T.MONEY,
    T.CONTRACTS,
    T.INT,
    T.PRICE,
    T.POINTS,
    T.TICKS,
    T.DURATION,
    T.CLOCK,
    T.TIME,
    T.SYMBOL,
    T.DECIMAL,
    T.PERCENT,
    T.BOOL,
)
COMPARABLE = (
    T.MONEY,
    T.CONTRACTS,
    T.INT,
    T.PRICE,
    T.POINTS,
    T.TICKS,
    T.DURATION,
    T.CLOCK,
    T.TIME,
    T.DECIMAL,
    T.PERCENT,
)
_OPS = ("+", "-", "*", "/")
ARITH = {
    result: [(a, op, r) for a in GENERATED for op in _OPS for r in GENERATED if T.arith_result(a, op, r) == result]
    for result in GENERATED
}


@dataclass
class RuleScope:
    """What a generated rule can read: the schema's roots, its binder, its event's fields."""

    binder: str | None = None  # position | order
    kinds: tuple[str, ...] = ()
    paths: dict[T.Type, list[str]] = field(default_factory=dict)  # type -> readable names
    enums: list[tuple[str, T.EnumT]] = field(default_factory=list)

    def add(self, prefix: str, obj: T.ObjT) -> None:
        for name, member in obj.members.items():
            path, typ = f"{prefix}.{name}", member.type
            if isinstance(typ, T.EnumT):
                self.enums.append((path, typ))
            elif isinstance(typ, T.ObjT):
                self.add(path, typ)
            elif not isinstance(typ, T.FuncT):
                self.paths.setdefault(typ, []).append(path)


def rule_scope(binder: str | None, kinds: tuple[str, ...]) -> RuleScope:
    scope = RuleScope(binder, kinds)
    for root, member in SCHEMA.roots.items():
        if isinstance(member.type, T.ObjT):
            scope.add(root, member.type)
        elif not isinstance(member.type, T.ListT):
            scope.paths.setdefault(member.type, []).append(root)
    if binder:
        scope.add(binder[0], SCHEMA.binders[binder])
    scope.add("event", T.obj("event", SCHEMA.event_members(kinds)))
    return scope


# What an aggregate can go over: the snapshot's lists and the record of their items.
LISTS = (("positions", "position"), ("orders", "order"), ("trades", "trade"))
SUMMABLE = tuple(t for t in GENERATED if T.arith_result(t, "+", t) == t)


def list_item_type(name: str) -> T.ObjT:
    return SCHEMA.roots[name].type.elem


@dataclass
class ExprGen:
    pick: Pick
    scope: RuleScope
    counter: list[int] = field(default_factory=lambda: [0])  # loop variables are numbered per rule

    def inside(self, var: str, item: T.ObjT) -> ExprGen:
        """A generator for an aggregate's item and `where`: the rule's names and ``var``'s fields."""
        scope = RuleScope(self.scope.binder, self.scope.kinds)
        scope.paths = {t: list(names) for t, names in self.scope.paths.items()}
        scope.enums = list(self.scope.enums)
        scope.add(var, item)
        return ExprGen(self.pick, scope, self.counter)

    def loop(self, depth: int) -> tuple[str, ExprGen, str]:
        """(`for x1 in trades`, the generator inside, ` where ...` or nothing)."""
        self.counter[0] += 1
        var = f"x{self.counter[0]}"
        items, kind = self.pick.one(LISTS)
        inner = self.inside(var, list_item_type(items))
        where = f" where {inner.expr(T.BOOL, depth)}" if self.pick.chance(50) else ""
        return f"for {var} in {items}", inner, where

    def aggregate(self, t: T.Type, depth: int) -> str:
        loop, inner, where = self.loop(depth)
        if t == T.BOOL:
            return f"{self.pick.one(('any', 'all'))}({inner.expr(T.BOOL, depth)} {loop}{where})"
        if t == T.INT and self.pick.chance(50):
            body = inner.expr(T.BOOL, depth) if self.pick.chance(50) else loop.split()[1]
            return f"count({body} {loop}{where})"
        if t in SUMMABLE and self.pick.chance(60):
            return f"sum({inner.expr(t, depth)} {loop}{where})"
        fn = self.pick.one(("min", "max"))
        return f"coalesce({fn}({inner.expr(t, depth)} {loop}{where}), {self.leaf(t)})"

    def conditional(self, t: T.Type, depth: int) -> str:
        return f"({self.expr(t, depth)} if {self.expr(T.BOOL, depth)} else {self.expr(t, depth)})"

    def none_compare(self, depth: int) -> str:
        """An ordering with a side that may be none (false when it is)."""
        loop, inner, where = self.loop(depth)
        t = self.pick.one((T.MONEY, T.PRICE, T.CONTRACTS))
        op = self.pick.one(("<", "<=", ">", ">="))
        return f"({self.pick.one(('min', 'max'))}({inner.expr(t, depth)} {loop}{where}) {op} {self.expr(t, depth)})"

    def expr(self, t: T.Type, depth: int) -> str:
        if depth <= 0 or self.pick.chance(30):
            return self.leaf(t)
        makers = self.makers(t)
        return self.pick.one(makers)(depth - 1) if makers else self.leaf(t)

    def leaf(self, t: T.Type) -> str:
        names = self.scope.paths.get(t, [])
        optional = self.scope.paths.get(T.OptionalT(t), [])
        choices = [lambda: self.pick.one(names)] if names else []
        if optional:
            choices.append(
                lambda: f"coalesce({self.pick.one(optional)}, {self.pick.one(names or [_LITERALS[t](self.pick)])})"
            )
        if t in _LITERALS and (not names or self.pick.chance(35)):
            return _LITERALS[t](self.pick)
        if t == T.BOOL:
            choices.append(lambda: self.enum_test())
        return self.pick.one(choices)() if choices else _LITERALS[t](self.pick)

    def enum_test(self) -> str:
        if not self.scope.enums:
            return "true"
        path, enum = self.pick.one(self.scope.enums)
        op = self.pick.one(("==", "!="))
        members = [m for m in enum.members if m not in {*SCHEMA.roots, "none"}]  # these read as a root, a literal
        return f"{path} {op} {self.pick.one(members)}"

    def makers(self, t: T.Type) -> list:
        makers = []
        if ARITH.get(t):
            makers.append(lambda d: self.arith(t, d))
        if t in T.NUMERIC:
            makers.append(lambda d: f"-({self.expr(t, d)})")
            makers.append(lambda d: f"abs({self.expr(t, d)})")
        if t in T.ORDERED:
            fn = self.pick.one(("min", "max"))
            makers.append(lambda d: f"{fn}({self.expr(t, d)}, {self.expr(t, d)})")
        if t in SUMMABLE or t in T.ORDERED or t == T.BOOL:
            makers.append(lambda d: self.aggregate(t, d))
        if t == T.BOOL:
            makers.append(self.none_compare)
        makers.append(lambda d: self.conditional(t, d))
        makers += self.special(t)
        return makers

    def arith(self, t: T.Type, depth: int) -> str:
        left, op, right = self.pick.one(ARITH[t])
        return f"({self.expr(left, depth)} {op} {self.expr(right, depth)})"

    def special(self, t: T.Type) -> list:
        sym = lambda d: self.expr(T.SYMBOL, d)  # noqa: E731
        if t == T.BOOL:
            return [self.compare, self.boolean, self.membership, lambda d: self.enum_test(), *self.event_methods()]
        if t == T.POINTS:
            return [lambda d: f"ticks_to_points({sym(d)}, {self.expr(T.TICKS, d)})"]
        if t == T.TICKS:
            return [lambda d: f"points_to_ticks({sym(d)}, {self.expr(T.POINTS, d)})"]
        if t == T.MONEY:
            return [lambda d: f"points_to_money(symbol: {sym(d)}, points: {self.expr(T.POINTS, d)})"]
        if t == T.INT:
            return [
                lambda d: self.pick.one(("len(positions)", "len(orders)")),
                lambda d: f"day.fills_within({self.expr(T.DURATION, d)})",
            ]
        if t == T.CONTRACTS:
            return [
                lambda d: f"get({{MNQ: 3, ES: 1, {self.pick.one(SYMBOLS)}: 2}}, {sym(d)}, {self.expr(T.CONTRACTS, d)})"
            ]
        return []

    def event_methods(self) -> list:
        if self.scope.binder != "position" or self.scope.kinds != ("fill",):
            return []
        return [lambda d: f"event.{self.pick.one(('adds_to', 'reduces'))}(p)"]

    def compare(self, depth: int) -> str:
        t = self.pick.one(COMPARABLE)
        op = self.pick.one(("==", "!=", "<", "<=", ">", ">="))
        return f"({self.expr(t, depth)} {op} {self.expr(t, depth)})"

    def boolean(self, depth: int) -> str:
        if self.pick.chance(25):
            return f"(not {self.expr(T.BOOL, depth)})"
        op = self.pick.one(("and", "or"))
        return f"({self.expr(T.BOOL, depth)} {op} {self.expr(T.BOOL, depth)})"

    def membership(self, depth: int) -> str:
        items = ", ".join(symbol_text(self.pick) for _ in range(self.pick.integer(0, 3)))
        op = self.pick.one(("in", "not in"))
        return f"({self.expr(T.SYMBOL, depth)} {op} [{items}])"


# ---- generated rules: actions -------------------------------------------------------------------


def action_text(gen: ExprGen) -> str:
    """An action whose values are plain reads or literals: they cannot raise (see the xfail tests
    for actions that do)."""
    pick, binder = gen.pick, gen.scope.binder
    leaf = gen.leaf
    choices = [
        lambda: "flatten",
        lambda: f"reduce_total to {leaf(T.CONTRACTS)}",
        lambda: "cancel_orders",
        lambda: f"cancel_orders for {leaf(T.SYMBOL)}",
        lambda: f"lockout for {_LITERALS[T.DURATION](pick)}",
        lambda: f"lockout until {pick.one(['next_trading_day', 'manual', clock_text(pick), 'session.clock'])}",
        lambda: f"lockout while {gen.expr(T.BOOL, 1)}",
        lambda: f"block {leaf(T.SYMBOL)}" + (f" for {_LITERALS[T.DURATION](pick)}" if pick.chance(50) else ""),
        lambda: f"alert {_LITERALS[T.STRING](pick)}",
    ]
    if binder == "position":
        choices += [
            lambda: "close p",
            lambda: f"reduce p to {leaf(T.CONTRACTS)}",
            lambda: f"move_stop p to {leaf(T.PRICE)}",
            lambda: f"place_stop p at {leaf(T.PRICE)}",
        ]
    if binder == "order":
        choices.append(lambda: "cancel o")
    return pick.one(choices)()


KIND_CHOICES = ((), ("fill",), ("order",), ("position",), ("account",), ("quote",), ("clock",), ("fill", "order"))


def generated_rule(pick: Pick, index: int) -> str:
    binder = pick.one((None, "position", "order"))
    kinds = pick.one(KIND_CHOICES)
    gen = ExprGen(pick, rule_scope(binder, kinds))
    lines = [f"rule gen_{index}"]
    if kinds:
        lines.append("  on " + ", ".join(kinds))
    if binder:
        lines.append(f"  for {binder} {binder[0]}")
    lines.append(f"  when {gen.expr(T.BOOL, pick.integer(1, 4))}")
    lines.append("  then " + ", ".join(action_text(gen) for _ in range(pick.integer(1, 3))))
    lines.append(f"  severity {pick.one(('info', 'low', 'medium', 'high', 'critical'))}")
    return "\n".join(lines)


LIBRARY = library_rules()


def policy_text(pick: Pick) -> str:
    header = [
        'policy "generated"',
        f"  timezone {pick.one(('America/Chicago', 'America/New_York', 'UTC'))}",
        f"  on_error {pick.one(('flatten', 'alert'))}",
    ]
    uses, used = [], set()
    for i in range(pick.integer(0, 6)):
        rule = pick.one(LIBRARY)
        alias = f"lib_{i}" if rule.name in used or pick.chance(20) else None
        used.add(rule.name)
        uses.append(use_line(rule, pick, alias))
    rules = [generated_rule(pick, i) for i in range(pick.integer(0 if uses else 1, 3))]
    return "\n".join(header + uses) + "\n\n" + "\n\n".join(rules) + "\n"


@st.composite
def policies(draw) -> str:
    return policy_text(HypothesisPick(draw))
