"""The book computes a snapshot's session once a second, and keeps what changes less often (the
local minute and weekday, whether the exchange is open, the next trading-day start) while it
holds (``Book._session``). Whatever the instants, across DST changes, weekends, holidays and
early closes, the session is the one computed afresh."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st
from test_book import CHICAGO, new_book

from riskc.engine.core.snapshot import WEEKDAYS

# Around the 2026 DST changes (March 8, November 1), Thanksgiving and its early close, Christmas.
STARTS = [dt.datetime(2026, m, d, 12, tzinfo=dt.UTC) for m, d in ((3, 6), (10, 30), (11, 25), (12, 23), (7, 2))]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(STARTS),
    st.lists(st.integers(0, 5 * 86_400_000), min_size=1, max_size=300),
    st.sampled_from([60_000, 1_000, 997, 3_600_000]),
)
def test_the_kept_session_is_the_one_computed_afresh(start, offsets, scale):
    book = new_book()
    calendar = book.calendar
    for ms in sorted({o // scale * scale for o in offsets}):
        now = start + dt.timedelta(milliseconds=ms)
        book.advance(now)
        session, following = book._session(book.now, CHICAGO)
        local = now.astimezone(CHICAGO)
        assert session.now == now or session.now.replace(microsecond=0) == now.replace(microsecond=0)
        assert session.clock == local.time().replace(second=0, microsecond=0), now
        assert session.weekday == WEEKDAYS[local.weekday()], now
        assert session.trading_day == calendar.trading_day(now), now
        assert session.is_open == calendar.is_session_open(now), now
        assert following == calendar.next_trading_day_start(now), now
