"""Helpers compiled rules call, and the one way values are shown in reasons.

Runtime representations: money, prices, points, decimals and percentages are ``Decimal``
(percent as a fraction: 2% is 0.02); ints, contracts and ticks are ``int``; durations are
``timedelta``; clocks ``time``; dates ``date``; instants aware ``datetime``; symbols, strings and
enum values ``str``; lists tuples; maps dicts.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
from decimal import Decimal
from zoneinfo import ZoneInfo

_DAY = dt.timedelta(days=1)


def coalesce(value, fallback):
    return fallback if value is None else value


def ceil(x):
    """Rounded up to a whole number, keeping the representation: whole-number units (contracts,
    ticks) stay ints, a `contracts / 10` (a Decimal at run time) becomes one."""
    return x if isinstance(x, int) else int(x.to_integral_value(rounding=decimal.ROUND_CEILING))


def floor(x):
    return x if isinstance(x, int) else int(x.to_integral_value(rounding=decimal.ROUND_FLOOR))


def less(a, b) -> bool:
    """`<` when a side may be none: a comparison with none is false (PRODUCT.md §3.6)."""
    return a is not None and b is not None and a < b


def less_equal(a, b) -> bool:
    return a is not None and b is not None and a <= b


def greater(a, b) -> bool:
    return a is not None and b is not None and a > b


def greater_equal(a, b) -> bool:
    return a is not None and b is not None and a >= b


def divide(a, b):
    """`/` of the language: exact for numbers and money, scaling for durations."""
    if isinstance(a, int) and isinstance(b, int):
        return Decimal(a) / Decimal(b)
    if isinstance(a, dt.timedelta) and isinstance(b, dt.timedelta):
        return Decimal(a // dt.timedelta(microseconds=1)) / Decimal(b // dt.timedelta(microseconds=1))
    if isinstance(a, dt.timedelta):
        return scale(a, 1 / Decimal(b))
    return a / b


def multiply(a, b):
    if isinstance(a, dt.timedelta):
        return scale(a, b)
    if isinstance(b, dt.timedelta):
        return scale(b, a)
    return a * b


def scale(duration: dt.timedelta, factor) -> dt.timedelta:
    micros = Decimal(duration // dt.timedelta(microseconds=1)) * Decimal(factor)
    return dt.timedelta(microseconds=int(micros))


def clock_add(clock: dt.time, delta: dt.timedelta, sign: int = 1) -> dt.time:
    base = dt.datetime.combine(dt.date(2000, 1, 1), clock)
    return (base + sign * delta).time()


def clock_diff(a: dt.time, b: dt.time) -> dt.timedelta:
    """a - b on a 24-hour dial: how long after b the clock next shows a."""
    delta = dt.datetime.combine(dt.date(2000, 1, 1), a) - dt.datetime.combine(dt.date(2000, 1, 1), b)
    return delta if delta >= dt.timedelta(0) else delta + _DAY


@functools.lru_cache(maxsize=256)  # a pure function, asked with one `now` per second while a lockout rule holds
def next_clock(now: dt.datetime, clock: dt.time, zone: str) -> dt.datetime:
    """The first instant after ``now`` whose wall-clock time in ``zone`` is ``clock``."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    for days in range(0, 3):
        candidate = dt.datetime.combine(local.date() + dt.timedelta(days=days), clock, tz)
        candidate = candidate.astimezone(dt.UTC).astimezone(tz)  # normalise a DST gap forward
        if candidate > local:
            return candidate.astimezone(dt.UTC)
    raise AssertionError("a clock time recurs within two days")


def lockout_until(s, clock: dt.time, zone: str) -> dt.datetime:
    """`lockout until CLOCK`: the next time the clock shows ``clock`` with the market open, when
    the snapshot knows the trading calendar (the engine's does): a lockout at Friday's close
    until 17:00 lasts until Sunday's 17:00 open, not Friday 17:00 with the market shut."""
    calendar = getattr(s, "calendar", None)
    if calendar is not None:
        return calendar.next_open_clock(s.session.now, clock)
    return next_clock(s.session.now, clock, zone)


class Reason:
    """Why a rule fired, as the values it shows (captured from the snapshot when the rule fired)
    and the function that makes its text of them: the text, most of the cost of a reason, is
    made the first time it is read (``str``; ``Action.reason``), by a record, an alert or a
    view, and is the same whenever that is. Equal to a ``str`` or a ``Reason`` of the same text."""

    __slots__ = ("_render", "_values")  # once made, the text is in _values and _render is None

    def __init__(self, render, values) -> None:
        self._render, self._values = render, values

    def __str__(self) -> str:
        render = self._render
        if render is None:
            return self._values
        try:
            text = render(self._values)
        except Exception as error:
            text = f"(could not explain: {error})"
        self._render, self._values = None, text
        return text

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Reason | str):
            return str(self) == str(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(str(self))

    def __repr__(self) -> str:
        return repr(str(self))


# ---- showing values in reasons -------------------------------------------------------------------


def show(value, zone: str | None = None) -> str:
    """A value as a trader reads it: `-$1,020.00`, `45s`, `15:08`, `2026-03-10 17:00 CT`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, dt.timedelta):
        return show_duration(value)
    if isinstance(value, dt.datetime):
        return show_instant(value, zone)
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    if isinstance(value, tuple):
        return "[" + ", ".join(show(v, zone) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{show(k, zone)}: {show(v, zone)}" for k, v in value.items()) + "}"
    return str(value)


def show_money(amount: Decimal | None) -> str:
    if amount is None:
        return "none"
    if not amount.is_finite():
        return "unbounded" if amount > 0 else "-unbounded"
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}"


def show_duration(delta: dt.timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    sign, seconds = ("-", -seconds) if seconds < 0 else ("", seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return sign + "".join(parts)


_ABBREVIATIONS = {"America/Chicago": "CT", "America/New_York": "ET"}


def show_instant(instant: dt.datetime, zone: str | None) -> str:
    if zone is None:
        return instant.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    local = instant.astimezone(ZoneInfo(zone))
    label = _ABBREVIATIONS.get(zone) or local.tzname() or zone
    return local.strftime("%Y-%m-%d %H:%M ") + label
