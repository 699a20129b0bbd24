"""What one evaluation costs: the compiled policy against a hand-written Python function (the
floor), the reference interpreter, and the same rules in CEL, Cedar and Rego (the optional
``bench`` extra: ``pip install -e '.[bench]'``; a peer that is not installed is left out, and
said so). It also shows what the engine pays per event on a breach that holds (evaluate and the
actions as values, no reasons) and once per change of the decision (planned actions, their
reasons' values captured; and with the reasons made text, as a record reads them).

The policy is the 12 most common standard rules; the snapshot has 4 positions and 6 working
orders, once with nothing breached and once with a daily loss and an uncovered position. The peers
pay for converting the snapshot into their context on every evaluation, as a real integration
would. Numbers are the median ns per evaluation of 7 timed batches in one process.
Cedar cannot express `trade_frequency` (it cannot count the members of a set that satisfy a
condition), so its row decides 11 of the 12 rules.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import statistics
import sys
import timeit
from decimal import Decimal as D
from pathlib import Path

from riskc.dsl.checker import check
from riskc.dsl.compiler import compile_policy
from riskc.dsl.library import stdlib_sources
from riskc.engine.core.instruments import DEFAULT_INSTRUMENTS
from riskc.engine.core.snapshot import SCHEMA, Account, Day, Event, Order, Position, Session, Snapshot

REPO = Path(__file__).resolve().parent.parent
REPEATS = 7

POLICY = """policy "bench"
  timezone America/Chicago
use daily_loss(limit: $1,000)
use trailing_drawdown(amount: $2,000, mode: end_of_day, floor_stops_at: $50,000)
use max_contracts(limit: 5)
use max_contracts_per_symbol(limits: {MNQ: 50, MES: 50, NQ: 5, ES: 5}, default: 2)
use stop_required(grace: 30s)
use trading_hours(start: 17:00, end: 15:10)
use symbol_block(symbols: [CL, NG])
use cooldown_after_loss(loss: $300, cooldown: 15m)
use position_loss(limit: $400)
use daily_profit_target(target: $3,000)
use trade_frequency(max: 10, window: 10m, cooldown: 15m)
use auth_guard
"""

# ---- the snapshots -------------------------------------------------------------------------------

NOW = dt.datetime(2026, 3, 10, 19, 0, tzinfo=dt.UTC)
_SPEC = {"MNQ": ("0.25", "0.50"), "MES": ("0.25", "1.25"), "ES": ("0.25", "12.50"), "NQ": ("0.25", "5.00")}


def _position(symbol: str, size: int, pnl: str, covered: bool) -> Position:
    tick, value = _SPEC[symbol]
    return Position(
        symbol,
        f"CON.F.US.{symbol}.Z25",
        "long" if size > 0 else "short",
        size,
        abs(size),
        1 if size > 0 else -1,
        D("5000"),
        D("5001"),
        D(pnl),
        abs(size) if covered else 0,
        D("100") if covered else D("Infinity"),
        dt.timedelta(minutes=5),
        dt.timedelta(0) if covered else dt.timedelta(seconds=45),
        D(tick),
        D(value),
    )


def _order(i: int, symbol: str, kind: str, side: str) -> Order:
    price = D("4990") if kind == "limit" else None
    stop = D("4980") if kind == "stop" else None
    return Order(i, symbol, f"CON.F.US.{symbol}.Z25", kind, side, 1, price, stop, dt.timedelta(minutes=2))


def snapshot(breach: bool) -> Snapshot:
    positions = (
        _position("MNQ", 2, "-35", True),
        _position("MES", -1, "12.50", True),
        _position("ES", 1, "-150", True),
        _position("NQ", 1, "40", not breach),
    )
    orders = tuple(_order(i, s, "stop", "sell") for i, s in enumerate(("MNQ", "ES", "NQ"), 1))
    orders += (_order(4, "MES", "stop", "buy"), _order(5, "MNQ", "limit", "buy"), _order(6, "ES", "limit", "buy"))
    realized = D("-1020") if breach else D("-250")
    fills = tuple(NOW - dt.timedelta(minutes=m) for m in (55, 40, 31, 22, 9, 4, 1))
    return Snapshot(
        account=Account(1, "50KTC", D("50000") + realized, True, 5, 3),
        day=Day(realized, D("-132.50"), realized - D("132.50"), D("8.40"), 7, D("50100"), D("50000"), fills, NOW),
        positions=positions,
        orders=orders,
        session=Session(NOW, dt.time(14, 0), "tuesday", NOW.date(), True),
        next_trading_day=NOW + dt.timedelta(hours=3),
        event=Event(
            kind="fill",
            time=NOW,
            symbol="MNQ",
            contract_id="CON.F.US.MNQ.Z25",
            side="buy",
            size=1,
            price=D("5001"),
            pnl=D("0"),
            closing=False,
        ),
        instruments=DEFAULT_INSTRUMENTS,
    )


# ---- (a) the floor: the same decisions, written by hand --------------------------------------------

_LIMITS = {"MNQ": 50, "MES": 50, "NQ": 5, "ES": 5}
_BLOCKED = frozenset({"CL", "NG"})
_GRACE, _WINDOW = dt.timedelta(seconds=30), dt.timedelta(minutes=10)
_START, _END = dt.time(17, 0), dt.time(15, 10)


def hand_written(s: Snapshot) -> list[tuple[str, object]]:
    fired = []
    account, day, session, event = s.account, s.day, s.session, s.event
    if day.realized_pnl <= -1000:
        fired.append(("daily_loss", None))
    if account.balance + day.unrealized_pnl <= min(day.eod_high_balance - 2000, 50000):
        fired.append(("trailing_drawdown", None))
    if account.open_contracts > 5:
        fired.append(("max_contracts", None))
    for p in s.positions:
        if p.qty > _LIMITS.get(p.symbol, 2):
            fired.append(("max_contracts_per_symbol", p))
    for p in s.positions:
        if p.stop_coverage < p.qty and p.uncovered_for >= _GRACE:
            fired.append(("stop_required", p))
    if not session.is_open or (session.clock >= _END and session.clock < _START):
        fired.append(("trading_hours", None))
    for p in s.positions:
        if p.symbol in _BLOCKED:
            fired.append(("symbol_block", p))
    if event.kind == "fill" and event.closing and event.pnl <= -300:
        fired.append(("cooldown_after_loss", None))
    for p in s.positions:
        if p.unrealized_pnl <= -400:
            fired.append(("position_loss", p))
    if day.realized_pnl >= 3000:
        fired.append(("daily_profit_target", None))
    if event.kind == "fill" and day.fills_within(_WINDOW) > 10:
        fired.append(("trade_frequency", None))
    if not account.can_trade:
        fired.append(("auth_guard", None))
    return fired


# ---- (d) CEL ---------------------------------------------------------------------------------------

CEL_RULES = {
    "daily_loss": "day.realized_pnl <= -1000.0",
    "trailing_drawdown": "account.balance + day.unrealized_pnl <= "
    "(day.eod_high_balance - 2000.0 < 50000.0 ? day.eod_high_balance - 2000.0 : 50000.0)",
    "max_contracts": "account.open_contracts > 5",
    "max_contracts_per_symbol": 'positions.filter(p, p.qty > (p.symbol in {"MNQ": 50, "MES": 50, "NQ": 5, "ES": 5} '
    '? {"MNQ": 50, "MES": 50, "NQ": 5, "ES": 5}[p.symbol] : 2)).map(p, p.contract_id)',
    "stop_required": "positions.filter(p, p.stop_coverage < p.qty && p.uncovered_for >= 30).map(p, p.contract_id)",
    "trading_hours": "!session.is_open || (session.clock >= 910 && session.clock < 1020)",
    "symbol_block": 'positions.filter(p, p.symbol in ["CL", "NG"]).map(p, p.contract_id)',
    "cooldown_after_loss": 'event.kind == "fill" && event.closing && event.pnl <= -300.0',
    "position_loss": "positions.filter(p, p.unrealized_pnl <= -400.0).map(p, p.contract_id)",
    "daily_profit_target": "day.realized_pnl >= 3000.0",
    "trade_frequency": 'event.kind == "fill" && day.fill_times.filter(t, t > session.now - 600.0).size() > 10',
    "auth_guard": "!account.can_trade",
}


def cel_context(s: Snapshot) -> dict:
    a, d, ss, e = s.account, s.day, s.session, s.event
    return {
        "account": {"balance": float(a.balance), "can_trade": a.can_trade, "open_contracts": a.open_contracts},
        "day": {
            "realized_pnl": float(d.realized_pnl),
            "unrealized_pnl": float(d.unrealized_pnl),
            "eod_high_balance": float(d.eod_high_balance),
            "fill_times": [t.timestamp() for t in d.fill_times],
        },
        "positions": [
            {
                "symbol": p.symbol,
                "contract_id": p.contract_id,
                "qty": p.qty,
                "unrealized_pnl": float(p.unrealized_pnl),
                "stop_coverage": p.stop_coverage,
                "uncovered_for": int(p.uncovered_for.total_seconds()),
            }
            for p in s.positions
        ],
        "session": {"is_open": ss.is_open, "clock": ss.clock.hour * 60 + ss.clock.minute, "now": ss.now.timestamp()},
        "event": {"kind": e.kind, "closing": e.closing, "pnl": float(e.pnl)},
    }


def cel_evaluator():
    import cel

    programs = [(rule, cel.compile(text)) for rule, text in CEL_RULES.items()]

    def evaluate(s: Snapshot) -> list[tuple[str, object]]:
        context = cel.Context(cel_context(s))  # converted once, shared by the 12 programs
        fired = []
        for rule, program in programs:
            value = program.execute(context)
            if isinstance(value, list):
                fired += [(rule, c) for c in value]
            elif value:
                fired.append((rule, None))
        return fired

    return evaluate


# ---- (d) Cedar ---------------------------------------------------------------------------------------

CEDAR_ACCOUNT = {
    "daily_loss": "context.realized_pnl <= -100000",
    "trailing_drawdown": "context.equity <= context.eod_high_balance - 200000 && context.equity <= 5000000",
    "max_contracts": "context.open_contracts > 5",
    "trading_hours": "!context.is_open || (context.clock >= 910 && context.clock < 1020)",
    "cooldown_after_loss": 'context.event_kind == "fill" && context.closing && context.event_pnl <= -30000',
    "daily_profit_target": "context.realized_pnl >= 300000",
    "auth_guard": "!context.can_trade",
}
CEDAR_POSITION = {
    "max_contracts_per_symbol": 'context.qty > (if context.symbol == "MNQ" || context.symbol == "MES" then 50 '
    'else if context.symbol == "NQ" || context.symbol == "ES" then 5 else 2)',
    "stop_required": "context.stop_coverage < context.qty && context.uncovered_for >= 30",
    "symbol_block": '["CL", "NG"].contains(context.symbol)',
    "position_loss": "context.unrealized_pnl <= -40000",
}


def _cedar_policies() -> tuple[str, list[str]]:
    names, texts = [], ["permit(principal, action, resource);"]
    for scope, rules in (("account", CEDAR_ACCOUNT), ("position", CEDAR_POSITION)):
        for rule, condition in rules.items():
            names.append(rule)
            texts.append(f'forbid(principal, action == Action::"{scope}", resource) when {{ {condition} }};')
    return "\n".join(texts), names


def _cents(amount: D) -> int:
    return int(amount * 100)


def cedar_evaluator():
    import cedarpy

    text, names = _cedar_policies()
    policies = cedarpy.PolicySet.from_str(text)
    rule_of = {f"policy{i + 1}": name for i, name in enumerate(names)}  # policy0 is the permit
    entities = cedarpy.Entities.from_json_str("[]")

    def request(action: str, resource: str, context: dict) -> dict:
        return {"principal": 'Trader::"t"', "action": f'Action::"{action}"', "resource": resource, "context": context}

    def evaluate(s: Snapshot) -> list[tuple[str, object]]:
        a, d, ss, e = s.account, s.day, s.session, s.event
        account = {
            "realized_pnl": _cents(d.realized_pnl),
            "equity": _cents(a.balance + d.unrealized_pnl),
            "eod_high_balance": _cents(d.eod_high_balance),
            "open_contracts": a.open_contracts,
            "is_open": ss.is_open,
            "clock": ss.clock.hour * 60 + ss.clock.minute,
            "event_kind": e.kind,
            "closing": e.closing,
            "event_pnl": _cents(e.pnl),
            "can_trade": a.can_trade,
        }
        fired = [
            (rule_of[r], None)
            for r in _denied(cedarpy, request("account", 'Account::"a"', account), policies, entities)
        ]
        for p in s.positions:
            context = {
                "symbol": p.symbol,
                "qty": p.qty,
                "stop_coverage": p.stop_coverage,
                "uncovered_for": int(p.uncovered_for.total_seconds()),
                "unrealized_pnl": _cents(p.unrealized_pnl),
            }
            for r in _denied(cedarpy, request("position", 'Position::"p"', context), policies, entities):
                fired.append((rule_of[r], p.contract_id))
        return fired

    return evaluate


def _denied(cedarpy, request: dict, policies, entities) -> list[str]:
    result = cedarpy.is_authorized(request, policies, entities)
    return [] if result.allowed else list(result.diagnostics.reasons)


# ---- (d) Rego (OPA's language, in rego-cpp) -------------------------------------------------------

REGO_MODULE = """package riskc

limits := {"MNQ": 50, "MES": 50, "NQ": 5, "ES": 5}

fired contains ["daily_loss", ""] if input.day.realized_pnl <= -1000
fired contains ["trailing_drawdown", ""] if {
  input.account.balance + input.day.unrealized_pnl <= min([input.day.eod_high_balance - 2000, 50000])
}
fired contains ["max_contracts", ""] if input.account.open_contracts > 5
fired contains ["max_contracts_per_symbol", p.contract_id] if {
  some p in input.positions
  p.qty > object.get(limits, p.symbol, 2)
}
fired contains ["stop_required", p.contract_id] if {
  some p in input.positions
  p.stop_coverage < p.qty
  p.uncovered_for >= 30
}
fired contains ["trading_hours", ""] if not input.session.is_open
fired contains ["trading_hours", ""] if {
  input.session.clock >= 910
  input.session.clock < 1020
}
fired contains ["symbol_block", p.contract_id] if {
  some p in input.positions
  p.symbol in {"CL", "NG"}
}
fired contains ["cooldown_after_loss", ""] if {
  input.event.kind == "fill"
  input.event.closing
  input.event.pnl <= -300
}
fired contains ["position_loss", p.contract_id] if {
  some p in input.positions
  p.unrealized_pnl <= -400
}
fired contains ["daily_profit_target", ""] if input.day.realized_pnl >= 3000
fired contains ["trade_frequency", ""] if {
  input.event.kind == "fill"
  count([t | some t in input.day.fill_times; t > input.session.now - 600]) > 10
}
fired contains ["auth_guard", ""] if not input.account.can_trade
"""


def rego_evaluator():
    import json

    import regopy

    interpreter = regopy.Interpreter()
    interpreter.add_module("riskc", REGO_MODULE)

    def evaluate(s: Snapshot) -> list[tuple[str, object]]:
        interpreter.set_input(cel_context(s))  # the same plain-data context as CEL's
        output = interpreter.query("x = data.riskc.fired")  # kept: its nodes live as long as it does
        fired = json.loads(output.binding("x").json())
        return [(rule, target or None) for rule, target in fired]

    return evaluate


# ---- what the engine pays per event -------------------------------------------------------------------


def engine_steady(program):
    """While a breach holds, per event: which rules hold and their actions as values (the
    steady-skip comparison), no planning and no reason text."""

    def evaluate(s: Snapshot):
        return program.evaluate(s).values()

    return evaluate


# ---- measuring ----------------------------------------------------------------------------------------


def ns_per_call(fn, arg) -> float:
    timer = timeit.Timer(lambda: fn(arg))
    number, _ = timer.autorange()
    number = max(number // 4, 1)  # batches of ~50 ms
    return statistics.median(timer.repeat(repeat=REPEATS, number=number)) / number * 1e9


def paired(fn, quiet, breach) -> tuple[float, float]:
    """ns per call on each snapshot: the median of REPEATS batches of each, alternating."""
    timers = [timeit.Timer(lambda: fn(quiet)), timeit.Timer(lambda: fn(breach))]
    number = max(min(t.autorange()[0] for t in timers) // 4, 1)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(REPEATS):
        for times_of, timer in zip(times, timers, strict=True):
            times_of.append(timer.timeit(number))
    return statistics.median(times[0]) / number * 1e9, statistics.median(times[1]) / number * 1e9


def _fired_set(fired) -> set[tuple[str, object]]:
    return {(rule, getattr(t, "contract_id", t)) for rule, t in fired}


def compile_ms() -> float:
    path = REPO / "policies" / "topstep-50k.risk"
    text = path.read_text(encoding="utf-8")

    def build():
        result = check([(str(path), text)], SCHEMA, stdlib_sources())
        return compile_policy(result.policies[0], result)

    return statistics.median(timeit.repeat(build, repeat=REPEATS, number=1)) * 1e3


def run() -> list[tuple[str, str]]:
    sys.path.insert(0, str(REPO / "tests" / "dsl"))
    from interpreter import Interpreter

    result = check([("bench.risk", POLICY)], SCHEMA, stdlib_sources())
    assert result.ok, [d.message for d in result.errors]
    policy = result.policies[0]
    program, reference = compile_policy(policy, result), Interpreter(policy, result)
    ids = [i.id for i in policy.instances]
    contenders = {
        # The decision read as the engine reads a breach it has not acted on: its planned actions
        # (with their reasons). Program.evaluate alone builds them only when read.
        "compiled Program.evaluate + actions": lambda s: program.evaluate(s).actions,
        # ... and the reasons made text (what a record, an alert or a view reads, once per change)
        "compiled Program.evaluate + actions + reason text": lambda s: [a.reason for a in program.evaluate(s).actions],
        "compiled Program.evaluate (hits; actions when read)": program.evaluate,
        "compiled hot path (fired only)": program._evaluate,
        "engine per event: evaluate + values() (a breach that holds)": engine_steady(program),
        "reference interpreter": reference.run,
    }
    peers = {}
    for label, make in (
        ("CEL (common-expression-language)", cel_evaluator),
        ("Cedar (cedarpy, 11/12 rules)", cedar_evaluator),
        ("Rego (regopy, rego-cpp)", rego_evaluator),
    ):
        with contextlib.suppress(ImportError):
            peers[label] = make()
    missing = {"CEL", "Cedar", "Rego"} - {label.split()[0] for label in peers}
    if missing:
        print(f"not measured (pip install -e '.[bench]'): {', '.join(sorted(missing))}")
    quiet, breach = snapshot(False), snapshot(True)
    for s in (quiet, breach):
        floor_fired = _fired_set(hand_written(s))
        compiled_fired = _fired_set((ids[i], t) for i, t in program._evaluate(s))
        assert compiled_fired == floor_fired, (compiled_fired, floor_fired)
        for label, peer in peers.items():
            want = {f for f in floor_fired if f[0] != "trade_frequency"} if "Cedar" in label else floor_fired
            assert _fired_set(peer(s)) == want, (label, peer(s), floor_fired)
    # Each contender on both snapshots, batches alternating, so the breach/quiet ratio of one
    # contender is not the noise of a shared machine between two moments.
    measured = {
        label: paired(fn, quiet, breach)
        for label, fn in {"hand-written Python (floor)": hand_written, **contenders, **peers}.items()
    }
    rows = []
    for index, (state, s) in enumerate((("no breach", quiet), ("breach", breach))):
        rows.append((f"{state}: fired", ", ".join(sorted({r for r, _ in _fired_set(hand_written(s))})) or "nothing"))
        floor = measured["hand-written Python (floor)"][index]
        for label, pair in measured.items():
            ns = pair[index]
            text = f"{ns:,.0f} ns  {ns / floor:.2f}x"
            if index == 1:
                text += f"  {ns / pair[0]:.2f}x quiet"
            rows.append((f"{state}: {label}", text))
        compiled = measured["compiled Program.evaluate + actions"][index]
        rendered = measured["compiled Program.evaluate + actions + reason text"][index]
        for label in peers:
            rows.append(
                (
                    f"{state}: {label.split()[0]} / compiled Program.evaluate + actions (+ reason text)",
                    f"{measured[label][index] / compiled:,.1f}x ({measured[label][index] / rendered:,.1f}x)",
                )
            )
    rows.append(("compile stdlib + topstep-50k (parse+check+compile)", f"{compile_ms():.1f} ms"))
    return rows
