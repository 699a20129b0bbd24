"""The trading-day clock: DST, weekends, CME holidays and early closes, other timezones."""

from __future__ import annotations

import logging
import subprocess
import sys
from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskc.engine.core.calendar import TradingCalendar, session_year
from riskc.engine.core.clock import ManualClock, WallClock

CT = TradingCalendar()  # America/Chicago, 17:00, CME Globex
SECOND = timedelta(seconds=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- DST ------------------------------------------------------------------------------------

# (trading day, its start, its end, 15:08 on it), all UTC. Each pair straddles a US DST change
# (always a Sunday at 02:00): a Friday in one offset, the Monday after in the other.
DST_TABLE = [
    # 2025-03-09: CST (-6) -> CDT (-5)
    (date(2025, 3, 7), utc(2025, 3, 6, 23), utc(2025, 3, 7, 23), utc(2025, 3, 7, 21, 8)),
    (date(2025, 3, 10), utc(2025, 3, 9, 22), utc(2025, 3, 10, 22), utc(2025, 3, 10, 20, 8)),
    # 2025-11-02: CDT -> CST
    (date(2025, 10, 31), utc(2025, 10, 30, 22), utc(2025, 10, 31, 22), utc(2025, 10, 31, 20, 8)),
    (date(2025, 11, 3), utc(2025, 11, 2, 23), utc(2025, 11, 3, 23), utc(2025, 11, 3, 21, 8)),
    # 2026-03-08: CST -> CDT
    (date(2026, 3, 6), utc(2026, 3, 5, 23), utc(2026, 3, 6, 23), utc(2026, 3, 6, 21, 8)),
    (date(2026, 3, 9), utc(2026, 3, 8, 22), utc(2026, 3, 9, 22), utc(2026, 3, 9, 20, 8)),
    # 2026-11-01: CDT -> CST
    (date(2026, 10, 30), utc(2026, 10, 29, 22), utc(2026, 10, 30, 22), utc(2026, 10, 30, 20, 8)),
    (date(2026, 11, 2), utc(2026, 11, 1, 23), utc(2026, 11, 2, 23), utc(2026, 11, 2, 21, 8)),
]


@pytest.mark.parametrize(("day", "start", "end", "at_1508"), DST_TABLE, ids=[str(row[0]) for row in DST_TABLE])
def test_dst_boundaries_and_clock_map_to_exact_utc_instants(day, start, end, at_1508):
    assert CT.day_start(day) == start
    assert CT.day_end(day) == end
    assert CT.at_clock(day, time(15, 8)) == at_1508
    assert CT.trading_day(start) == day
    assert CT.trading_day(end - timedelta(microseconds=1)) == day
    assert CT.trading_day(end) == CT.next_trading_day(day)
    assert CT.next_clock(at_1508 - SECOND, time(15, 8)) == at_1508


@pytest.mark.parametrize(
    ("sunday", "monday_start", "saturday"),
    [
        (date(2025, 3, 9), utc(2025, 3, 9, 22), utc(2025, 3, 8, 18)),
        (date(2025, 11, 2), utc(2025, 11, 2, 23), utc(2025, 11, 1, 18)),
        (date(2026, 3, 8), utc(2026, 3, 8, 22), utc(2026, 3, 7, 18)),
        (date(2026, 11, 1), utc(2026, 11, 1, 23), utc(2026, 11, 1, 18) - timedelta(days=1)),
    ],
)
def test_lockout_over_a_dst_weekend_ends_when_monday_starts(sunday, monday_start, saturday):
    friday_noon = CT.at_clock(sunday - timedelta(days=2), time(12, 0))
    assert CT.next_trading_day_start(friday_noon) == monday_start
    assert CT.next_trading_day_start(saturday) == monday_start
    assert CT.is_session_open(monday_start)
    assert not CT.is_session_open(monday_start - SECOND)


def test_next_clock_follows_the_offset_change():
    friday_1508 = utc(2025, 3, 7, 21, 8)  # CST
    assert CT.next_clock(friday_1508, time(15, 8)) == utc(2025, 3, 8, 21, 8)  # Saturday, still CST
    assert CT.next_clock(utc(2025, 3, 8, 21, 8), time(15, 8)) == utc(2025, 3, 9, 20, 8)  # CDT


def test_a_time_in_the_spring_gap_moves_forward():
    # 2025-03-09 02:30 does not exist in Chicago: read as 03:30 CDT.
    assert CT.next_clock(utc(2025, 3, 9, 6), time(2, 30)) == utc(2025, 3, 9, 8, 30)


def test_a_repeated_time_is_its_first_occurrence_only():
    # 2025-11-02 01:30 happens at 06:30 UTC (CDT) and 07:30 UTC (CST): fold=0 takes the first,
    # and once it has passed the next one is the following day's.
    assert CT.next_clock(utc(2025, 11, 2, 5), time(1, 30)) == utc(2025, 11, 2, 6, 30)
    assert CT.next_clock(utc(2025, 11, 2, 6, 30), time(1, 30)) == utc(2025, 11, 3, 7, 30)


def test_a_day_start_inside_the_gap_moves_forward_like_any_other_time():
    cal = TradingCalendar(day_starts=time(2, 30))  # a morning start: named after its start date
    assert cal.day_start(date(2025, 3, 10)) == utc(2025, 3, 10, 7, 30)  # 02:30 CDT
    assert cal.day_end(date(2025, 3, 7)) == utc(2025, 3, 8, 8, 30)  # 02:30 CST
    # Sunday's 02:30 does not exist; its boundary is read as 03:30 CDT (08:30 UTC), so 03:15
    # CDT is still in Saturday's window. Both are weekend, so both belong to Monday.
    assert cal.trading_day(utc(2025, 3, 9, 8, 15)) == date(2025, 3, 10)


# -- the trading day ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("instant", "day"),
    [
        (utc(2025, 6, 10, 21, 59, 59), date(2025, 6, 10)),  # Tuesday 16:59:59 CDT
        (utc(2025, 6, 10, 22), date(2025, 6, 11)),  # Tuesday 17:00 CDT opens Wednesday
        (utc(2025, 6, 13, 21, 59), date(2025, 6, 13)),  # Friday 16:59
        (utc(2025, 6, 13, 22), date(2025, 6, 16)),  # Friday 17:00 -> Monday
        (utc(2025, 6, 14, 12), date(2025, 6, 16)),  # Saturday
        (utc(2025, 6, 15, 21, 59), date(2025, 6, 16)),  # Sunday 16:59
        (utc(2025, 6, 15, 22), date(2025, 6, 16)),  # Sunday 17:00: Monday starts
    ],
)
def test_trading_day_of_an_instant(instant, day):
    assert CT.trading_day(instant) == day


def test_weekend_belongs_to_monday_which_starts_sunday_evening():
    monday = date(2025, 6, 16)
    assert CT.day_start(monday) == utc(2025, 6, 15, 22)  # Sunday 17:00 CDT
    assert CT.day_end(date(2025, 6, 13)) == utc(2025, 6, 13, 22)  # Friday ends at 17:00
    assert CT.next_trading_day(date(2025, 6, 13)) == monday
    assert CT.previous_trading_day(monday) == date(2025, 6, 13)
    assert CT.next_trading_day_start(utc(2025, 6, 13, 15)) == utc(2025, 6, 15, 22)


def test_non_trading_days_have_no_start():
    with pytest.raises(ValueError, match="not a trading day"):
        CT.day_start(date(2025, 6, 14))
    with pytest.raises(ValueError, match="not a trading day"):
        CT.session_close(date(2025, 12, 25))


def test_at_clock_puts_evening_times_on_the_evening_before():
    tuesday = date(2025, 6, 10)
    assert CT.at_clock(tuesday, time(17, 0)) == CT.day_start(tuesday)
    assert CT.at_clock(tuesday, time(18, 30)) == utc(2025, 6, 9, 23, 30)
    assert CT.at_clock(tuesday, time(16, 59)) == utc(2025, 6, 10, 21, 59)


# -- holidays and early closes (as the library publishes them) --------------------------------


@pytest.mark.parametrize("holiday", [date(2025, 12, 25), date(2026, 1, 1), date(2026, 12, 25)])
def test_a_full_cme_holiday_has_no_session(holiday):
    assert CT.is_holiday(holiday)
    assert not CT.is_trading_day(holiday)
    midday = CT.at_clock(holiday, time(12, 0))
    assert not CT.is_session_open(midday)
    after = CT.next_trading_day(holiday)
    assert CT.trading_day(midday) == after  # the holiday's hours fall to the next session
    # A lockout taken the day before lasts through the holiday.
    before = CT.previous_trading_day(holiday)
    assert CT.next_trading_day_start(CT.at_clock(before, time(10, 0))) == CT.day_start(after)
    assert midday < CT.day_start(after)  # nothing starts on the holiday itself


def test_christmas_2025_week():
    assert CT.trading_day(utc(2025, 12, 25, 18)) == date(2025, 12, 26)
    assert CT.day_start(date(2025, 12, 26)) == utc(2025, 12, 25, 23)  # Thursday 17:00 CST
    assert CT.next_trading_day_start(utc(2025, 12, 24, 16)) == utc(2025, 12, 25, 23)


def test_weekends_are_not_holidays():
    assert not CT.is_holiday(date(2025, 6, 14))
    assert not CT.is_trading_day(date(2025, 6, 14))


@pytest.mark.parametrize(
    ("day", "close"),
    [
        (date(2025, 11, 26), utc(2025, 11, 26, 22)),  # a normal day: 16:00 CST
        (date(2025, 11, 27), utc(2025, 11, 27, 18)),  # Thanksgiving: 12:00 CST
        (date(2025, 11, 28), utc(2025, 11, 28, 18, 15)),  # day after: 12:15 CST
        (date(2025, 12, 24), utc(2025, 12, 24, 18, 15)),  # Christmas Eve: 12:15 CST
        (date(2026, 6, 19), utc(2026, 6, 19, 17)),  # Juneteenth: 12:00 CDT
        # The library keeps Good Friday 2026 (a payrolls Friday) as an 08:15 CDT early close
        # for equity index futures, not a full holiday.
        (date(2026, 4, 3), utc(2026, 4, 3, 13, 15)),
    ],
)
def test_session_close_honours_early_closes(day, close):
    assert CT.session_close(day) == close
    assert CT.is_session_open(close - SECOND)
    assert not CT.is_session_open(close)


def test_session_open_and_daily_halt():
    assert CT.session_open(date(2025, 6, 11)) == utc(2025, 6, 10, 22)
    assert CT.is_session_open(utc(2025, 6, 10, 20, 59))  # 15:59 CDT
    assert not CT.is_session_open(utc(2025, 6, 10, 21, 30))  # 16:30 CDT: daily halt
    assert not CT.is_session_open(utc(2025, 6, 14, 12))  # Saturday


def test_outside_the_library_range_every_weekday_is_a_session(caplog):
    session_year.cache_clear()  # the warning is logged once per year, on first load
    with caplog.at_level(logging.WARNING, logger="riskc.calendar"):
        assert CT.is_trading_day(date(2205, 12, 25))  # a Wednesday: no holiday data
    assert not session_year("CME Globex", 2205).from_library
    assert "2205" in caplog.text
    assert session_year("CME Globex", 2025).from_library


# -- other policy settings ------------------------------------------------------------------


def test_new_york_at_18_00_is_the_same_boundary_as_chicago_at_17_00():
    ny = TradingCalendar("America/New_York", time(18, 0))
    assert ny.day_start(date(2025, 3, 10)) == utc(2025, 3, 9, 22)
    assert ny.day_start(date(2025, 3, 7)) == utc(2025, 3, 6, 23)
    assert ny.at_clock(date(2025, 3, 10), time(16, 8)) == utc(2025, 3, 10, 20, 8)
    assert ny.trading_day(utc(2025, 11, 2, 22, 59)) == date(2025, 11, 3)


def test_midnight_start_makes_the_trading_day_the_local_date():
    cal = TradingCalendar(day_starts=time(0, 0))
    assert cal.trading_day(utc(2025, 3, 11, 5, 30)) == date(2025, 3, 11)  # 00:30 CDT
    assert cal.trading_day(utc(2025, 3, 11, 4, 59)) == date(2025, 3, 10)  # 23:59 CDT
    assert cal.trading_day(utc(2025, 3, 9, 23)) == date(2025, 3, 10)  # Sunday evening
    assert cal.day_start(date(2025, 3, 10)) == utc(2025, 3, 10, 5)
    assert cal.at_clock(date(2025, 3, 10), time(15, 8)) == utc(2025, 3, 10, 20, 8)


@pytest.mark.parametrize(
    "call",
    [
        lambda: CT.trading_day(datetime(2025, 3, 10, 12)),
        lambda: CT.next_trading_day_start(datetime(2025, 3, 10, 12)),
        lambda: CT.next_clock(datetime(2025, 3, 10, 12), time(15, 8)),
        lambda: CT.is_session_open(datetime(2025, 3, 10, 12)),
        lambda: CT.at_clock(date(2025, 3, 10), time(15, 8, tzinfo=UTC)),
        lambda: TradingCalendar("Mars/Olympus"),
    ],
    ids=["trading_day", "next_trading_day_start", "next_clock", "is_session_open", "aware clock", "zone"],
)
def test_naive_datetimes_and_bad_settings_are_rejected(call):
    with pytest.raises(ValueError):
        call()


def test_other_aware_zones_are_accepted_and_outputs_are_utc():
    eastern = timezone(timedelta(hours=-4))
    instant = datetime(2025, 6, 10, 18, 0, tzinfo=eastern)  # 17:00 CDT
    assert CT.trading_day(instant) == date(2025, 6, 11)
    assert CT.next_trading_day_start(instant).tzinfo is UTC


def test_creating_a_calendar_does_not_import_pandas():
    code = (
        "import sys\nfrom datetime import date\nfrom riskc.engine.core.calendar import TradingCalendar\n"
        "TradingCalendar().at_clock(date(2025, 3, 10), __import__('datetime').time(15, 8))\n"
        "assert 'pandas' not in sys.modules, 'pandas imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- properties -----------------------------------------------------------------------------

instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 12, 31), timezones=st.just(UTC))
CALENDARS = [
    CT,
    TradingCalendar("America/New_York", time(18, 0)),
    TradingCalendar(day_starts=time(0, 0)),
    TradingCalendar(day_starts=time(2, 30)),  # a start that falls in the DST gap once a year
]


@settings(max_examples=300, deadline=None)
@given(instants, st.sampled_from(CALENDARS))
def test_every_instant_lies_in_its_trading_day(t, cal):
    day = cal.trading_day(t)
    assert cal.is_trading_day(day)
    assert cal.day_end(cal.previous_trading_day(day)) <= t < cal.day_end(day)
    if t < cal.day_start(day):  # only in a weekend or holiday gap before the day opens
        assert cal.previous_trading_day(day) < day - timedelta(days=1)


@settings(max_examples=300, deadline=None)
@given(instants, st.sampled_from(CALENDARS))
def test_next_trading_day_start_is_the_first_start_after(t, cal):
    day = cal.trading_day(t)
    start = cal.next_trading_day_start(t)
    assert start > t
    assert cal.day_start(cal.trading_day(start)) == start
    following = cal.next_trading_day(day)
    assert start == (cal.day_start(day) if t < cal.day_start(day) else cal.day_start(following))


@settings(max_examples=200, deadline=None)
@given(instants, instants)
def test_trading_day_is_monotonic_and_the_cache_agrees_with_a_cold_lookup(a, b):
    early, late = min(a, b), max(a, b)
    assert CT.trading_day(early) <= CT.trading_day(late)
    assert TradingCalendar().trading_day(late) == CT.trading_day(late)


@settings(max_examples=200, deadline=None)
@given(instants)
def test_new_york_18_and_chicago_17_agree(t):
    assert CALENDARS[1].trading_day(t) == CT.trading_day(t)


# -- clocks ---------------------------------------------------------------------------------


def test_manual_clock_moves_only_forward_and_reads_utc():
    clock = ManualClock(datetime(2025, 3, 9, 16, 59, tzinfo=timezone(timedelta(hours=-6))))
    assert clock.now() == utc(2025, 3, 9, 22, 59)
    assert clock.now().tzinfo is UTC
    assert clock.advance(timedelta(minutes=1)) == utc(2025, 3, 9, 23)
    assert clock.set(utc(2025, 3, 10, 1)) == utc(2025, 3, 10, 1)
    assert clock.now() == utc(2025, 3, 10, 1)
    with pytest.raises(ValueError):
        clock.set(utc(2025, 3, 9))
    with pytest.raises(ValueError):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError):
        clock.set(datetime(2025, 3, 11))
    with pytest.raises(ValueError):
        ManualClock(datetime(2025, 3, 11))


def test_wall_clock_reads_aware_utc():
    before = datetime.now(UTC)
    now = WallClock().now()
    assert now.tzinfo is UTC
    assert before <= now <= datetime.now(UTC)
