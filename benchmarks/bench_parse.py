"""How long the front end takes: parsing a 200-rule policy warm and cold, and `riskc fmt --check`
over the repository's policies.

The policy is generated from rule shapes like the standard library's (money limits, per-position
loops, lockouts, stops), numbered so that no two rules are identical.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RULES = 200
RUNS = 30
FMT_PATHS = ("policies", "stdlib_rules", "tests/fixtures")

_HEADER = """policy "Generated benchmark policy"
  timezone America/Chicago
  trading_day_starts 17:00
  on_error flatten

use daily_loss(limit: $1,000)
use max_contracts_per_symbol(limits: {MNQ: 50, MES: 50, NQ: 5, ES: 5}, default: 2)
use cooldown_after_loss(loss: $300, cooldown: 15m) as big_loss_cooldown
"""

_SHAPES = (
    """rule daily_loss_{i}(limit: money = ${money})
  "Stop trading for the day once the realized loss reaches the limit."
  when day.realized_pnl <= -limit
  then flatten, lockout until next_trading_day
  severity critical
""",
    """rule position_loss_{i}(limit: money = ${small})
  "Close a position whose open loss reaches the limit."
  on position, quote
  for position p
  when p.unrealized_pnl <= -limit and p.symbol in [MNQ, MES, M2K, 6E]
  then close p, alert "position loss on " + p.symbol
  severity high
""",
    """rule stop_required_{i}(grace: duration = {secs}s)
  for position p
  when p.stop_coverage < p.qty and p.uncovered_for >= grace
  then close p
  severity high
""",
    """rule max_contracts_{i}(limit: contracts = {count}, count: net|gross = gross)
  on fill, position
  when sum_qty(positions, count) > limit
  then reduce_total to limit
""",
    """rule trade_frequency_{i}(max: int = {count}, window: duration = 1h30m, cooldown: duration = 15m)
  on fill
  when fills_within(window) > max
  then cancel_orders, lockout for cooldown
  severity medium
""",
    """rule trading_hours_{i}(start: clock = 17:00, end: clock = 15:{minute})
  on clock
  when session.clock >= end and session.clock < start and not session.weekday in [SAT, SUN]
  then flatten, lockout until start
""",
    """rule breakeven_{i}(trigger: ticks = {count} ticks, offset: ticks = 1 tick)
  for position p
  when p.unrealized_pnl >= ticks_value(p, trigger) and p.age > 2m
  then move_stop p to p.avg_price + offset
  severity low
""",
    """rule symbol_block_{i}(symbols: list[symbol] = [CL, NG, GC])
  for position p
  when p.symbol in symbols
  then close p, cancel_orders for p.symbol, block p.symbol for 1d
""",
    """rule stale_orders_{i}
  on order
  for order o
  when o.age > {secs}m and (o.type == LIMIT or o.type == STOP) and o.size * 2 >= {count}
  then cancel o
""",
    """rule drawdown_{i}(amount: money = ${money}, floor_stops_at: money? = none)
  "Lock the account when the balance falls to the trailing floor."
  on account, fill
  when account.balance <= max(day.eod_high_balance - amount, $48,000.50) or not account.can_trade
  then flatten, lockout until manual
  severity critical
""",
)


def generate_policy(rules: int = RULES) -> str:
    """A policy of ``rules`` numbered rules cycling through the shapes above."""
    parts = [_HEADER]
    for i in range(rules):
        shape = _SHAPES[i % len(_SHAPES)]
        parts.append(
            shape.format(
                i=i, money=f"{500 + 25 * i:,}", small=100 + i, secs=10 + i % 50, count=2 + i % 9, minute=f"{i % 60:02d}"
            )
        )
    return "\n".join(parts)


def run() -> list[tuple[str, str]]:
    source = generate_policy()
    rows = [("policy", f"{RULES} rules, {source.count(chr(10))} lines, {len(source) / 1024:.0f} KiB")]
    rows.extend(_warm_parse(source))
    rows.append(_cold_parse(source))
    rows.append(_fmt_check())
    return rows


def _warm_parse(source: str) -> list[tuple[str, str]]:
    from riskc.dsl.parser import grammar, parse

    grammar()
    result = parse(source, "bench.risk")  # warm-up, and proof the generated policy is valid
    if result.diagnostics:
        raise RuntimeError(f"generated policy does not parse: {result.diagnostics[0]}")
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        parse(source, "bench.risk")
        times.append(time.perf_counter() - start)
    p95 = statistics.quantiles(times, n=20)[18]
    return [
        (f"parse, warm: median of {RUNS}", _ms(statistics.median(times))),
        (f"parse, warm: p95 of {RUNS}", _ms(p95)),
    ]


_COLD = """
import sys, time
start = time.perf_counter()
from riskc.dsl.parser import parse
result = parse(open(sys.argv[1], encoding="utf-8").read(), "bench.risk")
print(time.perf_counter() - start, len(result.diagnostics))
"""


def _cold_parse(source: str) -> tuple[str, str]:
    with tempfile.NamedTemporaryFile("w", suffix=".risk", encoding="utf-8", delete=False) as handle:
        handle.write(source)
    try:
        out = subprocess.run(
            [sys.executable, "-c", _COLD, handle.name], capture_output=True, text=True, check=True, cwd=REPO
        ).stdout
    finally:
        Path(handle.name).unlink()
    seconds = float(out.split()[0])
    return ("parse, cold: first parse in a fresh process (import + grammar load)", _ms(seconds))


def _fmt_check() -> tuple[str, str]:
    label = f"riskc fmt --check {' '.join(p + '/' for p in FMT_PATHS)} (wall)"
    riskc = Path(sys.executable).with_name("riskc")
    if not riskc.exists() or not _has_fmt(riskc):
        return (label, "skipped: fmt not available")
    paths = [p for p in FMT_PATHS if (REPO / p).exists()]
    start = time.perf_counter()
    done = subprocess.run([str(riskc), "fmt", "--check", *paths], capture_output=True, cwd=REPO)
    return (label, f"{_ms(time.perf_counter() - start)} (exit {done.returncode})")


def _has_fmt(riskc: Path) -> bool:
    return subprocess.run([str(riskc), "fmt", "--help"], capture_output=True, cwd=REPO).returncode == 0


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"
