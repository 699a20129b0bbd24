"""The trading-day clock: which trading day an instant belongs to, when days start and end,
and when the exchange is open. DST-correct; holidays and early closes come from an exchange
calendar library, never from a hand-typed list.

The model, in the policy's timezone with `day_starts` = 17:00:

- A trading day is named by an exchange session date D. Its window is the local 24 hours
  [D-1 17:00, D 17:00): Tuesday's runs from Monday 17:00 to Tuesday 17:00. When `day_starts`
  is before noon the day is named after the date it starts on instead ([D 06:00, D+1 06:00)),
  so `day_starts 00:00` makes the trading day the local date.
- An instant whose window falls on no session date (a weekend, a full holiday) belongs to the
  next trading day, which has not started yet: Saturday belongs to Monday, and Monday starts
  Sunday 17:00 when the market reopens. So `trading_day` moves on at Friday 17:00 (day
  counters roll), while `next_trading_day_start` from a Friday lockout is Sunday 17:00.
- A local time that does not exist or exists twice (DST) is read with `fold=0`: an ambiguous
  time is its first occurrence (daylight time), a time inside the spring-forward gap moves
  forward by the gap (02:30 becomes 03:30 daylight time).

All instants in and out are tz-aware; outputs are in UTC. The exchange library (and pandas
with it) is imported on first use only, so `riskc check` stays fast.
"""

from __future__ import annotations

import bisect
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from riskc.engine.core.clock import require_aware

log = logging.getLogger("riskc.calendar")

ONE_DAY = timedelta(days=1)

# Policy-facing exchange names -> pandas_market_calendars calendar names. MNQ/MES/NQ/ES are
# equity-index futures, so "CME Globex" means the Globex equity-index schedule (its early
# closes differ from energy, rates and FX).
EXCHANGES = {"CME Globex": "CME Globex Equity"}

# Regular Globex equity hours, used only for years the library cannot give: weekdays, open
# 17:00 the evening before, close 16:00 Chicago time.
_FALLBACK_ZONE = ZoneInfo("America/Chicago")
_FALLBACK_OPEN = time(17, 0)
_FALLBACK_CLOSE = time(16, 0)


@dataclass(frozen=True, slots=True)
class Session:
    """One exchange session: `day` is its session (trade) date, `open`/`close` UTC instants."""

    day: date
    open: datetime
    close: datetime


@dataclass(frozen=True, slots=True)
class SessionYear:
    """The sessions whose session date falls in one calendar year."""

    year: int
    days: tuple[date, ...]  # sorted, for bisect
    sessions: Mapping[date, Session]
    from_library: bool


class TradingCalendar:
    """Trading days and sessions for one policy (timezone, day start) on one exchange."""

    __slots__ = ("timezone", "day_starts", "exchange", "_zone", "_lead", "_lo", "_hi", "_day")

    def __init__(
        self,
        timezone: str = "America/Chicago",
        day_starts: time = time(17, 0),
        exchange: str = "CME Globex",
    ) -> None:
        if day_starts.tzinfo is not None:
            raise ValueError("day_starts is a wall-clock time in the policy's timezone; give it no tzinfo")
        self.timezone = timezone
        self.day_starts = day_starts.replace(fold=0)
        self.exchange = exchange
        self._zone = _zone(timezone)
        # An evening start names the day after the date it ends on (17:00 Monday opens
        # Tuesday); a morning start after the date it starts on.
        self._lead = 1 if day_starts >= time(12, 0) else 0
        # The last trading day looked up and the instants [lo, hi) that belong to it: the
        # engine asks on every event and tick, nearly always for the same day.
        self._lo = datetime.max.replace(tzinfo=UTC)
        self._hi = datetime.min.replace(tzinfo=UTC)
        self._day = date.min

    def __repr__(self) -> str:
        return f"TradingCalendar({self.timezone!r}, {self.day_starts.isoformat('minutes')}, {self.exchange!r})"

    # -- trading days ---------------------------------------------------------------------

    def trading_day(self, instant: datetime) -> date:
        """The trading day `instant` belongs to (always a session date)."""
        if instant.tzinfo is None:
            require_aware(instant)
        if self._lo <= instant < self._hi:
            return self._day
        return self._locate(instant)

    def day_start(self, trading_day: date) -> datetime:
        """When `trading_day` starts: Monday's at Sunday 17:00 local."""
        self._require_trading_day(trading_day)
        return self._window_start(trading_day)

    def day_end(self, trading_day: date) -> datetime:
        """When `trading_day` ends (exclusive): Friday's at Friday 17:00 local."""
        self._require_trading_day(trading_day)
        return self._window_start(trading_day + ONE_DAY)

    def next_trading_day_start(self, instant: datetime) -> datetime:
        """The first trading-day start strictly after `instant` (`lockout until next_trading_day`)."""
        day = self.trading_day(instant)
        start = self._window_start(day)
        if start > instant:  # a weekend or holiday: the day it belongs to has not begun
            return start
        return self._window_start(self.next_trading_day(day))

    def week_of(self, trading_day: date) -> date:
        """The trading week `trading_day` belongs to, named by its Monday: a week runs from the
        first trading day that starts on or after Sunday's open (Monday's, or Tuesday's after a
        Monday holiday) to Friday's close (PRODUCT.md §3.6)."""
        return trading_day - timedelta(days=trading_day.weekday())

    def next_trading_week_start(self, instant: datetime) -> datetime:
        """When the next trading week's first trading day starts (`lockout until next_trading_week`)."""
        monday = self.week_of(self.trading_day(instant))
        start = self._window_start(self._first_on_or_after(monday))
        if start > instant:  # a weekend: the week it belongs to has not begun
            return start
        return self._window_start(self._first_on_or_after(monday + timedelta(days=7)))

    def is_trading_day(self, day: date) -> bool:
        return day in self._year(day.year).sessions

    def is_holiday(self, day: date) -> bool:
        """A weekday with no session. Weekends are not holidays."""
        return day.weekday() < 5 and not self.is_trading_day(day)

    def next_trading_day(self, day: date) -> date:
        """The first trading day strictly after `day`."""
        return self._first_on_or_after(day + ONE_DAY)

    def previous_trading_day(self, day: date) -> date:
        """The last trading day strictly before `day`."""
        return self._last_on_or_before(day - ONE_DAY)

    # -- wall-clock times -----------------------------------------------------------------

    def at_clock(self, trading_day: date, clock: time) -> datetime:
        """The instant within `trading_day`'s window whose local time is `clock`: with a 17:00
        start, 18:00 is on the evening before and 15:08 on the day's own date."""
        _require_wall_time(clock)
        before_start = clock < self.day_starts
        return self._resolve(trading_day - self._lead * ONE_DAY + before_start * ONE_DAY, clock)

    def next_clock(self, instant: datetime, clock: time) -> datetime:
        """The first instant strictly after `instant` whose local time is `clock`
        (`lockout until 15:08`)."""
        require_aware(instant)
        _require_wall_time(clock)
        local_date = instant.astimezone(self._zone).date()
        # Start a day early: a gap-shifted time on the previous date can still lie ahead.
        for offset in range(-1, 3):
            candidate = self._resolve(local_date + offset * ONE_DAY, clock)
            if candidate > instant:
                return candidate
        raise AssertionError("unreachable: a local time recurs within two days")

    def next_open_clock(self, instant: datetime, clock: time) -> datetime:
        """The first instant after `instant` whose local time is `clock` and at which the
        exchange is open (`lockout until 17:00` at a Friday close: Sunday 17:00, not Friday's).
        A clock that never falls in a session within two weeks gives its next occurrence."""
        first = candidate = self.next_clock(instant, clock)
        for _ in range(14):
            if self.is_session_open(candidate):
                return candidate
            candidate = self.next_clock(candidate, clock)
        return first

    # -- exchange sessions ----------------------------------------------------------------

    def is_session_open(self, instant: datetime) -> bool:
        """Whether the exchange is trading at `instant` (closed in the daily halt, on
        weekends, on holidays and after an early close)."""
        require_aware(instant)
        exchange_date = instant.astimezone(self._exchange_zone()).date()
        # A session opens the evening before its date, so `instant` can only be in today's
        # or tomorrow's.
        for day in (exchange_date, exchange_date + ONE_DAY):
            session = self._year(day.year).sessions.get(day)
            if session is not None and session.open <= instant < session.close:
                return True
        return False

    def session_state(self, instant: datetime) -> tuple[bool, datetime]:
        """(``is_session_open(instant)``, the first moment after ``instant`` it may be otherwise:
        the close of the open session, else the next open; a day later when none is near)."""
        is_open = self.is_session_open(instant)
        exchange_date = instant.astimezone(self._exchange_zone()).date()
        changes = []
        for offset in range(-1, 9):
            session = self._year((exchange_date + offset * ONE_DAY).year).sessions.get(exchange_date + offset * ONE_DAY)
            if session is not None:
                changes += [moment for moment in (session.open, session.close) if moment > instant]
        return is_open, min(changes, default=instant + ONE_DAY)

    def session(self, trading_day: date) -> Session:
        self._require_trading_day(trading_day)
        return self._year(trading_day.year).sessions[trading_day]

    def session_open(self, trading_day: date) -> datetime:
        return self.session(trading_day).open

    def session_close(self, trading_day: date) -> datetime:
        """When the exchange closes on `trading_day`, early closes included."""
        return self.session(trading_day).close

    # -- internals ------------------------------------------------------------------------

    def _locate(self, instant: datetime) -> date:
        window = self._window_of(instant)
        day = self._first_on_or_after(window)
        # Everything after the previous trading day ended belongs to `day`, gap included.
        self._lo = self._window_start(self.previous_trading_day(day) + ONE_DAY)
        self._hi = self._window_start(day + ONE_DAY)
        self._day = day
        return day

    def _window_of(self, instant: datetime) -> date:
        """The date D whose window [start(D), start(D+1)) holds `instant`, sessions aside."""
        local = instant.astimezone(self._zone)
        window = local.date() + (self._lead - (local.time() < self.day_starts)) * ONE_DAY
        # The local-time guess is off by one when `day_starts` falls in a DST gap; the
        # resolved boundaries are what day_start/day_end promise, so they decide.
        while instant < self._window_start(window):
            window -= ONE_DAY
        while instant >= self._window_start(window + ONE_DAY):
            window += ONE_DAY
        return window

    def _window_start(self, day: date) -> datetime:
        return self._resolve(day - self._lead * ONE_DAY, self.day_starts)

    def _resolve(self, local_date: date, clock: time) -> datetime:
        # fold=0: first occurrence of an ambiguous time; a time in a gap moves forward.
        return datetime.combine(local_date, clock.replace(fold=0), tzinfo=self._zone).astimezone(UTC)

    def _first_on_or_after(self, day: date) -> date:
        while True:
            year = self._year(day.year)
            i = bisect.bisect_left(year.days, day)
            if i < len(year.days):
                return year.days[i]
            day = date(day.year + 1, 1, 1)

    def _last_on_or_before(self, day: date) -> date:
        while True:
            year = self._year(day.year)
            i = bisect.bisect_right(year.days, day)
            if i > 0:
                return year.days[i - 1]
            day = date(day.year - 1, 12, 31)

    def _require_trading_day(self, day: date) -> None:
        if not self.is_trading_day(day):
            raise ValueError(f"{day.isoformat()} is not a trading day on {self.exchange}")

    def _year(self, year: int) -> SessionYear:
        return session_year(self.exchange, year)

    def _exchange_zone(self) -> ZoneInfo:
        return exchange_zone(self.exchange)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown timezone {name!r}") from exc


def _require_wall_time(clock: time) -> None:
    if clock.tzinfo is not None:
        raise ValueError("a clock time is read in the policy's timezone; give it no tzinfo")


# -- the exchange library, loaded lazily and shared by every calendar ------------------------


@functools.cache
def _library_calendar(exchange: str):  # -> pandas_market_calendars.MarketCalendar
    # Imported here, not at module top: pandas takes most of a second to import, and `riskc
    # check` never needs a session. An unknown name or a missing library raises: that is an
    # installation or policy error, not a reason to guess.
    import pandas_market_calendars as mcal

    return mcal.get_calendar(EXCHANGES.get(exchange, exchange))


@functools.cache
def exchange_zone(exchange: str) -> ZoneInfo:
    return ZoneInfo(str(_library_calendar(exchange).tz))


@functools.cache
def session_year(exchange: str, year: int) -> SessionYear:
    """The sessions of one year, from the library, or weekdays when it has none for that year."""
    sessions = _library_sessions(exchange, year)
    if sessions:
        return _session_year(year, sessions, from_library=True)
    log.warning(
        "%s: the exchange calendar has no data for %d; treating every weekday as a full "
        "session (holidays and early closes unknown)",
        exchange,
        year,
    )
    return _session_year(year, _weekday_sessions(year), from_library=False)


@functools.cache
def library_years(exchange: str) -> range:
    """The years the library knows holidays for. Its holiday rules stop at fixed dates
    (1970-2200 in pandas); outside them it silently reports every weekday open, which would
    look like data."""
    rules = _library_calendar(exchange).regular_holidays
    first, last = getattr(rules, "start_date", None), getattr(rules, "end_date", None)
    if first is None or last is None:
        return range(date.min.year, date.max.year + 1)
    return range(first.year, last.year + 1)


def _library_sessions(exchange: str, year: int) -> list[Session]:
    if year not in library_years(exchange):
        return []
    calendar = _library_calendar(exchange)
    try:
        frame = calendar.schedule(f"{year}-01-01", f"{year}-12-31", tz="UTC")
    except (ValueError, OverflowError) as exc:  # pandas' timestamps end in 2262
        log.debug("%s: schedule for %d failed: %s", exchange, year, exc)
        return []
    return [
        Session(label.date(), _utc(opened), _utc(closed))
        for label, opened, closed in zip(frame.index, frame["market_open"], frame["market_close"], strict=True)
    ]


def _utc(timestamp) -> datetime:
    # datetime.UTC as the tzinfo everywhere, so comparisons with the engine's instants take
    # the same-tzinfo fast path.
    return timestamp.to_pydatetime().astimezone(UTC)


def _weekday_sessions(year: int) -> list[Session]:
    day, sessions = date(year, 1, 1), []
    while day.year == year:
        if day.weekday() < 5:
            opened = datetime.combine(day - ONE_DAY, _FALLBACK_OPEN, tzinfo=_FALLBACK_ZONE)
            closed = datetime.combine(day, _FALLBACK_CLOSE, tzinfo=_FALLBACK_ZONE)
            sessions.append(Session(day, opened.astimezone(UTC), closed.astimezone(UTC)))
        day += ONE_DAY
    return sessions


def _session_year(year: int, sessions: list[Session], *, from_library: bool) -> SessionYear:
    by_day = {s.day: s for s in sessions}
    return SessionYear(year, tuple(sorted(by_day)), by_day, from_library)
