"""What the trading-day clock costs: the engine asks `trading_day` on every event and every
1-second tick, so the warm path must stay near a hundred nanoseconds; the first call pays for
importing the exchange library (and pandas) and loading a year of sessions."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from riskc.engine.core.calendar import TradingCalendar

CALLS = 100_000

# Run in a fresh interpreter: in this one the library may already be imported.
_COLD = """
import json, time
from datetime import UTC, datetime
t0 = time.perf_counter()
from riskc.engine.core.calendar import TradingCalendar
cal = TradingCalendar()
t1 = time.perf_counter()
cal.trading_day(datetime(2025, 3, 10, 14, tzinfo=UTC))
t2 = time.perf_counter()
cal.trading_day(datetime(2026, 3, 10, 14, tzinfo=UTC))
t3 = time.perf_counter()
print(json.dumps([t1 - t0, t2 - t1, t3 - t2]))
"""


def run() -> list[tuple[str, str]]:
    construct, first, next_year = _cold()
    return [
        ("trading_day, consecutive 1 s ticks (ns/call)", f"{_per_call(timedelta(seconds=1)):.0f}"),
        ("trading_day, 7 min steps across days (ns/call)", f"{_per_call(timedelta(minutes=7)):.0f}"),
        ("trading_day, a new day every call (ns/call)", f"{_per_call(timedelta(days=1), calls=3_000):.0f}"),
        ("import + construct, no library (ms)", f"{construct * 1e3:.1f}"),
        ("first trading_day: library import + year load (ms)", f"{first * 1e3:.1f}"),
        ("first call in another year: year load (ms)", f"{next_year * 1e3:.1f}"),
    ]


def _per_call(step: timedelta, calls: int = CALLS) -> float:
    cal = TradingCalendar()
    start = datetime(2025, 3, 3, 14, tzinfo=UTC)
    instants = [start + i * step for i in range(calls)]
    for instant in instants:  # load the years first: this measures the lookups only
        cal.trading_day(instant)
    began = time.perf_counter_ns()
    for instant in instants:
        cal.trading_day(instant)
    return (time.perf_counter_ns() - began) / calls


def _cold() -> list[float]:
    out = subprocess.run([sys.executable, "-c", _COLD], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


if __name__ == "__main__":
    for label, value in run():
        print(f"{label}: {value}")
