"""How values cross the SQLite boundary: time, money and JSON, each with exactly one encoding.

Time is stored as TEXT in one fixed-width UTC form, ``2025-10-29T15:50:13.776995+00:00``: it reads
like the recording format (PRODUCT.md §6.1), and because every value has the same width and the
same offset, comparing the strings in SQL (``until > ?``) compares the instants. Naive datetimes
are refused rather than guessed at: a lockout that ends an hour early is a real loss.

Money (and prices) are stored as TEXT holding a canonical decimal string and exposed as
``decimal.Decimal``. TEXT rather than integer cents because the broker reports some amounts (fees,
averaged prices) with more than two places, and rounding them would make the ledger disagree with
the broker. Sums are done in Python with Decimal, never with SQL ``SUM`` (which would go through
floats). Broker floats come in through ``Decimal(str(x))``, which keeps the value the broker meant
(``0.1`` stays ``0.1``, not ``0.1000000000000000055...``).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f+00:00"


def time_text(moment: datetime) -> str:
    """A tz-aware datetime as the store's fixed-width UTC text."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: the store only accepts tz-aware times")
    return moment.astimezone(UTC).strftime(_TIME_FORMAT)


def parse_time(text: str | None) -> datetime | None:
    """Stored text back to a tz-aware UTC datetime (None stays None)."""
    if text is None:
        return None
    return datetime.fromisoformat(text).astimezone(UTC)


def day_text(day: date | str) -> str:
    """A trading day as ``YYYY-MM-DD``; a string is validated, not trusted."""
    if isinstance(day, datetime):
        raise TypeError("a trading day is a date, not a datetime")
    if isinstance(day, str):
        day = date.fromisoformat(day)
    return day.isoformat()


def to_decimal(value: Decimal | int | str | float) -> Decimal:
    """Money or a price as an exact Decimal. Floats go through ``str`` so that the broker's
    ``26246.25`` is exactly 26246.25; NaN and infinities are refused."""
    if isinstance(value, bool):
        raise TypeError("a boolean is not an amount")
    if isinstance(value, float):
        value = str(value)
    amount = Decimal(value)
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    return amount


def money_text(value: Decimal | int | str | float) -> str:
    """The canonical stored form of an amount: plain notation, no exponent."""
    return format(to_decimal(value), "f")


def parse_money(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return time_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, Decimals as strings, times as store text: the same value always
    gives the same bytes, which is what the audit hash chain needs."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
    )
