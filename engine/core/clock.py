"""Where the engine gets the time from.

Everything that depends on "now" takes a `Clock`, so live trading reads the wall clock while
replay and tests drive a `ManualClock` and get the same decisions every run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, tz-aware, in UTC."""
        ...


def require_aware(instant: datetime, what: str = "instant") -> datetime:
    """Reject naive datetimes: a naive time has no single instant, so it would be read in
    whatever zone the machine happens to run in."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {instant.isoformat()}")
    return instant


class WallClock:
    """The machine's clock, for live trading."""

    __slots__ = ()

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to, for replay and tests.

    Time never goes backwards: timers and lockouts measured against this clock assume it.
    """

    __slots__ = ("_now",)

    def __init__(self, start: datetime) -> None:
        self._now = require_aware(start, "start").astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, instant: datetime) -> datetime:
        instant = require_aware(instant).astimezone(UTC)
        if instant < self._now:
            raise ValueError(f"clock cannot go back from {self._now.isoformat()} to {instant.isoformat()}")
        self._now = instant
        return instant

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError(f"clock cannot go back by {-delta}")
        self._now += delta
        return self._now
