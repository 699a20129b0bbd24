"""Trade history, weeks and excursions through the engine (PRODUCT.md §3.6): `trades`, the day's
losing/winning tallies and loss streak, `week.*` from the store (across a restart),
`day.fills_within` across trading days, `p.max_favorable` / `p.max_adverse`."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from gateway_messages import BUY, MNQ, SELL, D, Feed
from test_engine import ACCOUNT, Harness, policy

from riskc.engine.store import Store

CHICAGO = ZoneInfo("America/Chicago")
# Tuesday 2025-10-28 10:00 CT, then Wednesday: one trading week.
TUESDAY = Feed(account_id=ACCOUNT, start=dt.datetime(2025, 10, 28, 15, 0, tzinfo=dt.UTC))
WEDNESDAY = Feed(account_id=ACCOUNT, start=dt.datetime(2025, 10, 29, 15, 0, tzinfo=dt.UTC))
NEXT_MONDAY = Feed(account_id=ACCOUNT, start=dt.datetime(2025, 11, 3, 15, 0, tzinfo=dt.UTC))


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "state.db") as store:
        yield store
        assert store.verify_audit().ok


@pytest.fixture
def harness(store):
    return lambda *sources: Harness(store, *sources)


def snapshot(h: Harness):
    book = h.engine.book
    from riskc.engine.core.snapshot import Event

    return book.snapshot(Event(kind="clock", time=book.now), CHICAGO)


def losing_round_trips(feed: Feed, first_id: int, results: list[int], t0: float = 1) -> list:
    """An opening buy and a closing sell per result (the sell's P&L), a minute apart."""
    messages = []
    for i, pnl in enumerate(results):
        t = t0 + 60 * i
        messages.append(feed.trade(t, first_id + 2 * i, MNQ, side=BUY, price=21000, fees="0.37"))
        messages.append(feed.trade(t + 30, first_id + 2 * i + 1, MNQ, side=SELL, price=21000, pnl=pnl, fees="0.37"))
    return messages


def test_trades_and_the_days_tallies_follow_the_fills(harness):
    h = harness(policy('rule quiet\n  when false\n  then alert "never"'))
    h.feed(TUESDAY.account(0, 50000), *losing_round_trips(TUESDAY, 1, [-20, 10, -20, -5]))
    s = snapshot(h)
    assert [(t.side, t.pnl, t.closing) for t in s.trades[:2]] == [("buy", None, False), ("sell", D(-20), True)]
    assert (s.day.losing_trades, s.day.winning_trades, s.day.loss_streak) == (3, 1, 2)
    h.feed(TUESDAY.trade(400, 8, MNQ, side=SELL, price=21000, pnl=-5, fees="0.37", voided=True))  # voided later
    s = snapshot(h)
    assert len(s.trades) == 7 and (s.day.losing_trades, s.day.loss_streak) == (2, 1)


def test_three_strikes_fires_in_the_engine(harness, store):
    h = harness(
        policy(
            'rule three_strikes\n  "Three losing trades in a day end the day."\n'
            "  when count(t for t in trades where t.pnl < $0) >= 3\n  then flatten, lockout until next_trading_day"
        )
    )
    h.feed(TUESDAY.account(0, 50000), *losing_round_trips(TUESDAY, 1, [-20, 10, -20]))
    assert not store.active_lockouts(ACCOUNT, TUESDAY.at(200))
    h.feed(*losing_round_trips(TUESDAY, 20, [-1], t0=300))
    assert [r["action"] for r in h.records if r["action"] != "trading_state"] == ["lockout"]  # flat: nothing to flatten


def test_the_week_adds_the_earlier_days_from_the_store_and_survives_a_restart(tmp_path):
    path = tmp_path / "state.db"
    with Store.open(path) as store:
        h = Harness(store, policy("use weekly_loss(limit: $100)"))
        h.feed(TUESDAY.account(0, 50000), *losing_round_trips(TUESDAY, 1, [-40, -30]))
        h.tick(TUESDAY.at(8 * 3600))  # Tuesday's day ends at 17:00 CT
    with Store.open(path) as store:  # a restart on Wednesday
        h = Harness(store, policy("use weekly_loss(limit: $100)"))
        h.feed(WEDNESDAY.account(0, 49930), *losing_round_trips(WEDNESDAY, 10, [-20]))
        s = snapshot(h)
        assert (s.week.trades, s.week.losing_trades) == (6, 3)
        assert s.week.realized_pnl == D("-92.22")  # -90 of P&L, 6 fills at $0.37
        assert s.day.realized_pnl == D("-20.74")
        assert s.day.fills_within(dt.timedelta(days=7)) == 2 + 4  # today's two and Tuesday's four
        assert s.day.fills_within(dt.timedelta(hours=1)) == 2
        h.feed(*losing_round_trips(WEDNESDAY, 20, [-10], t0=300))  # -$103.70: over the limit
        [lockout] = store.active_lockouts(ACCOUNT, WEDNESDAY.at(400))
        assert lockout.until == dt.datetime(2025, 11, 2, 23, 0, tzinfo=dt.UTC)  # Sunday 17:00 CST


def test_a_new_week_starts_from_zero(tmp_path):
    path = tmp_path / "state.db"
    with Store.open(path) as store:
        h = Harness(store, policy('rule quiet\n  when false\n  then alert "never"'))
        h.feed(WEDNESDAY.account(0, 50000), *losing_round_trips(WEDNESDAY, 1, [-40]))
        h.tick(WEDNESDAY.at(8 * 3600))
    with Store.open(path) as store:
        h = Harness(store, policy('rule quiet\n  when false\n  then alert "never"'))
        h.feed(NEXT_MONDAY.account(0, 50000))
        s = snapshot(h)
        assert (s.week.realized_pnl, s.week.trades) == (D(0), 0)
        assert s.day.fills_within(dt.timedelta(days=7)) == 2  # but a 7-day window still sees Wednesday


def test_excursions_are_kept_since_the_position_opened_and_a_flip_starts_anew(harness):
    h = harness(policy('rule quiet\n  when false\n  then alert "never"'))
    h.feed(TUESDAY.position(0, MNQ, 2, 21000), TUESDAY.quote(1, MNQ, 21010))  # +$40
    h.feed(TUESDAY.quote(2, MNQ, 20990), TUESDAY.quote(3, MNQ, 21002))  # -$40, then +$8
    h.feed(TUESDAY.order(4, 9, MNQ, stop=20980))  # a new stop rebuilds the view: excursions stay
    [p] = snapshot(h).positions
    assert (p.max_favorable, p.max_adverse, p.unrealized_pnl) == (D(40), D(-40), D(8))
    h.feed(TUESDAY.position(5, MNQ, -1, 21002), TUESDAY.quote(6, MNQ, 21001))  # flipped short: +$2
    [p] = snapshot(h).positions
    assert (p.max_favorable, p.max_adverse) == (D(2), D(0))
