"""The book (engine/book.py): Gateway messages in, snapshot out (PRODUCT.md §3.3, §6.1).

Each test feeds the hub payloads a real session produces and reads what a rule would see. The
properties at the end state what must hold for any sequence: realized P&L is the exact Decimal
sum of the day's distinct trades whatever their order of arrival, and applying a message twice
leaves the book as applying it once.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from gateway_messages import (
    BUY,
    CANCELLED,
    CL,
    ES,
    FILLED,
    LIMIT,
    MNQ,
    OPEN,
    PENDING,
    SELL,
    STOP,
    D,
    Feed,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskc.engine.adapters.projectx.decode import decode
from riskc.engine.adapters.projectx.intake import Message
from riskc.engine.core.book import Book
from riskc.engine.core.calendar import TradingCalendar
from riskc.engine.core.instruments import DEFAULT_INSTRUMENTS
from riskc.engine.core.snapshot import Event

CHICAGO = ZoneInfo("America/Chicago")
ACCOUNT = 13298777
SECOND = dt.timedelta(seconds=1)


def new_book(**kwargs) -> Book:
    return Book(TradingCalendar("America/Chicago", dt.time(17, 0)), DEFAULT_INSTRUMENTS, account_id=ACCOUNT, **kwargs)


def apply(book: Book, message: Message) -> Event | None:
    """The message decoded as the ProjectX adapter decodes it, applied; the event of its (last)
    entity. A payload the decoder refuses raises before the book sees anything."""
    event = None
    for update in decode(message):
        event = book.apply(update)
    return event


def feed_all(book: Book, *messages: Message) -> list[Event | None]:
    return [apply(book, m) for m in messages]


def snap(book: Book, at: dt.datetime | None = None):
    """The snapshot at ``at`` (default: the book's clock). The book reuses its snapshot objects,
    so read what you need before the next call."""
    if at is not None or book.day is None:
        book.advance(at or f.start)
    return book.snapshot(Event(kind="clock", time=book.now), CHICAGO)


def position(book: Book, contract: str, at: dt.datetime | None = None):
    return next(p for p in snap(book, at).positions if p.contract_id == contract)


def state(book: Book) -> tuple:
    """Everything the book knows, for "unchanged" and "the same" comparisons."""
    day = book.day
    return (
        {c: (p.size, p.avg_price, p.opened_at, p.episode, p.uncovered_since) for c, p in book.positions.items()},
        {
            i: (
                e.order.type,
                e.order.side,
                e.order.size,
                e.order.price,
                e.order.stop_price,
                e.status,
                e.placed_at,
                e.updated_at,
            )
            for i, e in book.orders.items()
        },
        dict(book._finished),
        dict(book.marks),
        dict(book.quote_times),
        dict(book.position_times),
        (book.account.id, book.account.name, book.account.balance, book.account.can_trade),
        book.eod_high_balance,
        None
        if day is None
        else (
            day.trading_day,
            day.realized,
            day.fees,
            day.trades,
            {k: f.voided for k, f in day.fills.items()},
            list(day.fill_times),
        ),
    )


f = Feed()


# -- positions and stop coverage ---------------------------------------------------------------


def test_scale_in_restarts_the_uncovered_clock_for_the_added_contracts():
    book = new_book()
    feed_all(book, f.position(0, MNQ, 2, 21000), f.order(5, 1, MNQ, type=STOP, side=SELL, size=2, stop=20990))
    p = position(book, MNQ, f.at(10))
    assert (p.qty, p.stop_coverage, p.uncovered_for) == (2, 2, dt.timedelta(0))

    apply(book, f.position(20, MNQ, 4, 21005, opened=0))  # the broker keeps the creation time
    p = position(book, MNQ, f.at(30))
    assert (p.qty, p.stop_coverage) == (4, 2)
    assert p.uncovered_for == dt.timedelta(seconds=10)  # since the scale-in, not since the open
    assert p.age == dt.timedelta(seconds=30)  # a scale-in is the same position
    assert p.risk_at_stop == Decimal("Infinity")


def test_uncovered_position_counts_from_its_open_and_a_stop_for_all_of_it_clears_it():
    book = new_book()
    apply(book, f.position(0, MNQ, 2, 21000))
    assert position(book, MNQ, f.at(12)).uncovered_for == dt.timedelta(seconds=12)
    apply(book, f.order(15, 1, MNQ, type=STOP, side=SELL, size=2, stop=20990))
    assert position(book, MNQ, f.at(20)).uncovered_for == dt.timedelta(0)
    # A reduction that stays covered does not start the clock.
    apply(book, f.position(25, MNQ, 1, 21000, opened=0))
    assert position(book, MNQ, f.at(30)).uncovered_for == dt.timedelta(0)


def test_partial_fills_leave_the_unfilled_rest_working():
    book = new_book()
    apply(book, f.position(0, MNQ, 3, 21000))
    apply(book, f.order(1, 7, MNQ, type=STOP, side=SELL, size=3, stop=20990))
    assert position(book, MNQ).stop_coverage == 3
    apply(book, f.order(2, 7, MNQ, type=STOP, side=SELL, size=3, stop=20990, fill_volume=2))
    assert [o.size for o in snap(book).orders] == [1]
    assert position(book, MNQ).stop_coverage == 1
    apply(book, f.order(3, 7, MNQ, type=STOP, side=SELL, size=3, stop=20990, fill_volume=3, status=FILLED))
    assert snap(book).orders == ()
    assert position(book, MNQ).stop_coverage == 0


def test_a_flip_from_long_to_short_is_a_new_position():
    book = new_book()
    apply(book, f.position(0, MNQ, 2, 21000))
    before = book.positions[MNQ]
    episode, generation = before.episode, before.generation
    apply(book, f.position(60, MNQ, -1, 21010, opened=60))
    p = position(book, MNQ, f.at(70))
    assert (p.side, p.size, p.qty) == ("short", -1, 1)
    assert p.age == dt.timedelta(seconds=10)  # age restarts at the flip
    assert p.uncovered_for == dt.timedelta(seconds=10)
    assert book.positions[MNQ].episode != episode and book.positions[MNQ].generation > generation


def test_a_flip_takes_the_brokers_creation_time_so_its_name_survives_a_restart():
    """The episode (the position's name in idempotency keys) must be the one a fresh book
    rebuilt from the broker's state gives the same position, or a restart re-plans its close."""
    live = new_book()
    apply(live, f.position(0, MNQ, 2, 21000))
    apply(live, f.position(61, MNQ, -1, 21010, opened=60))  # delivered a second after the flip
    restarted = new_book()
    apply(restarted, f.position(90, MNQ, -1, 21010, opened=60))  # reconciliation after a restart
    assert live.positions[MNQ].episode == restarted.positions[MNQ].episode
    assert live.positions[MNQ].opened_at == f.at(60)


def test_stops_placed_in_the_brokers_own_ui_are_seen_from_order_updates_alone():
    book = new_book()
    apply(book, f.position(0, ES, -2, 6000))
    apply(book, f.order(10, 50, ES, type=STOP, side=BUY, size=2, stop=6010))  # placed by hand
    p = position(book, ES)
    assert (p.stop_coverage, p.stop_prices) == (2, (D(6010),))
    assert p.risk_at_stop == D("1000.00")  # 10 points x $50 x 2
    apply(book, f.order(20, 50, ES, type=STOP, side=BUY, size=2, stop=6005))  # dragged in the UI
    assert position(book, ES).stop_prices == (D(6005),)
    apply(book, f.order(30, 50, ES, type=STOP, side=BUY, size=2, stop=6005, status=CANCELLED))  # deleted
    p = position(book, ES, f.at(45))
    assert (p.stop_coverage, p.uncovered_for) == (0, dt.timedelta(seconds=15))


def test_a_stop_on_the_wrong_side_or_another_contract_does_not_cover():
    book = new_book()
    apply(book, f.position(0, MNQ, 1, 21000))
    apply(book, f.order(1, 1, MNQ, type=STOP, side=BUY, size=1, stop=21050))  # same side: an entry
    apply(book, f.order(1, 2, ES, type=STOP, side=SELL, size=1, stop=5990))
    apply(book, f.order(1, 3, MNQ, type=LIMIT, side=SELL, size=1, limit=21050))  # a target, not a stop
    assert position(book, MNQ).stop_coverage == 0


def test_suspended_bracket_legs_are_kept_but_do_not_cover_until_they_work():
    book = new_book()
    apply(book, f.order(0, 10, MNQ, type=LIMIT, side=BUY, size=1, limit=21000))  # the entry
    apply(book, f.order(0, 11, MNQ, type=STOP, side=SELL, size=1, stop=20990, status=PENDING))  # its stop leg
    apply(book, f.position(5, MNQ, 1, 21000))
    apply(book, f.order(5, 10, MNQ, type=LIMIT, side=BUY, size=1, limit=21000, fill_volume=1, status=FILLED))
    s = snap(book, f.at(6))
    assert [o.id for o in s.orders] == []  # PENDING is not working
    assert [o.id for o in book.suspended_orders()] == [11]
    assert [o.id for o in book.all_orders()] == [11]  # what a flatten cancels
    assert position(book, MNQ).stop_coverage == 0
    apply(book, f.order(7, 11, MNQ, type=STOP, side=SELL, size=1, stop=20990, status=OPEN))  # leg activates
    assert position(book, MNQ, f.at(8)).stop_coverage == 1


# -- duplicates and order of arrival -----------------------------------------------------------


def test_the_same_trade_twice_counts_once():
    book = new_book()
    trade = f.trade(1, 5001, MNQ, side=SELL, pnl=-4, fees="0.37")
    assert apply(book, trade) is not None
    assert apply(book, trade) is None
    s = snap(book)
    assert (s.day.trades, s.day.realized_pnl, s.day.fees) == (1, D("-4.37"), D("0.37"))


def test_the_same_order_update_twice_is_one_event():
    book = new_book()
    update = f.order(1, 7, MNQ, type=LIMIT, side=BUY, size=2, limit=21000)
    assert apply(book, update) is not None
    before = state(book)
    assert apply(book, update) is None
    assert state(book) == before


def test_an_older_order_update_after_a_newer_one_is_ignored():
    book = new_book()
    apply(book, f.order(10, 7, MNQ, type=STOP, side=SELL, size=1, stop=20995))
    assert apply(book, f.order(11, 7, MNQ, type=STOP, side=SELL, size=1, stop=20990, updated=5)) is None
    assert snap(book).orders[0].stop_price == D(20995)


@pytest.mark.parametrize("with_update_time", [True, False])
def test_a_late_open_after_cancelled_does_not_resurrect_the_order(with_update_time: bool):
    book = new_book()
    apply(book, f.order(1, 7, MNQ, type=LIMIT, side=BUY, size=1, limit=21000))
    apply(book, f.order(5, 7, MNQ, type=LIMIT, side=BUY, size=1, limit=21000, status=CANCELLED))
    # The "open" was sent at 1 but arrives after the cancellation; a payload without an update
    # time is stamped with its arrival.
    late = f.order(8, 7, MNQ, type=LIMIT, side=BUY, size=1, limit=21000, updated=1, with_update_time=with_update_time)
    assert apply(book, late) is None
    assert snap(book).orders == () and book.all_orders() == []


def test_an_older_quote_does_not_move_the_mark():
    book = new_book()
    apply(book, f.position(0, MNQ, 1, 21000))
    apply(book, f.quote(10, MNQ, 21010))
    assert apply(book, f.quote(11, MNQ, 20900, stamp=9)) is None
    p = position(book, MNQ)
    assert (p.mark, p.unrealized_pnl) == (D(21010), D("20.00"))


def test_an_older_position_update_is_ignored():
    book = new_book()
    apply(book, f.position(10, MNQ, 3, 21000))
    assert apply(book, f.position(5, MNQ, 1, 21000)) is None
    assert book.positions[MNQ].size == 3


def test_an_older_account_update_does_not_take_the_balance_back():
    book = new_book()
    apply(book, f.account(10, 49900))
    apply(book, f.account(5, 50000))
    assert book.account.balance == D(49900)


# -- P&L ---------------------------------------------------------------------------------------


def test_realized_pnl_is_trade_pnl_minus_fees_with_the_opening_half_paying_only_fees():
    book = new_book()
    feed_all(
        book,
        f.trade(1, 1, MNQ, side=BUY, size=2, price=21000, pnl=None, fees="0.74"),  # opening half
        f.trade(2, 2, MNQ, side=SELL, size=2, price=21010, pnl=40, fees="0.74"),  # closing half
        f.trade(3, 3, ES, side=BUY, size=1, price=6000, pnl=None, fees="1.40", voided=True),  # voided
    )
    s = snap(book)
    assert (s.day.realized_pnl, s.day.fees, s.day.trades) == (D("38.52"), D("1.48"), 2)


def test_a_trade_voided_after_the_fact_is_taken_back():
    book = new_book()
    apply(book, f.trade(1, 1, MNQ, side=SELL, size=1, pnl=-100, fees="0.37"))
    apply(book, f.trade(2, 2, MNQ, side=SELL, size=1, pnl=25, fees="0.37"))
    assert snap(book).day.realized_pnl == D("-75.74")
    assert apply(book, f.trade(9, 1, MNQ, side=SELL, size=1, pnl=-100, fees="0.37", voided=True)) is None
    s = snap(book)
    assert (s.day.realized_pnl, s.day.trades, s.day.fees) == (D("24.63"), 1, D("0.37"))
    assert len(s.day.fill_times) == 1


def test_unrealized_pnl_uses_each_instruments_own_tick_value():
    book = new_book()
    feed_all(
        book,
        f.position(0, MNQ, 2, 21000),
        f.quote(1, MNQ, 21010),  # 10 pt x $2 x 2
        f.position(0, ES, -1, 6000),
        f.quote(1, ES, "5990.25"),  # 9.75 pt x $50, short
        f.position(0, CL, 3, "60.00"),
        f.quote(1, CL, "60.10"),  # 10 ticks x $10 x 3
        f.trade(1, 1, MNQ, side=SELL, pnl=-10, fees=0),
    )
    s = snap(book)
    by_contract = {p.contract_id: p.unrealized_pnl for p in s.positions}
    assert by_contract == {MNQ: D("40.00"), ES: D("487.50"), CL: D("300.00")}
    assert s.day.unrealized_pnl == D("827.50")
    assert s.day.net_pnl == D("817.50")


def test_day_and_account_high_water_include_open_pnl():
    book = new_book()
    feed_all(book, f.account(0, 50000), f.position(0, MNQ, 1, 21000), f.quote(1, MNQ, 21050))
    s = snap(book)
    assert s.day.high_balance == D(50100)
    assert s.account.high_water_balance == D(50100)  # what an intraday trailing drawdown trails
    apply(book, f.quote(2, MNQ, 21000))
    s = snap(book)
    assert (s.day.high_balance, s.account.high_water_balance) == (D(50100), D(50100))


# -- the trading day ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day_start", "boundary"),
    [
        # DST ends Sunday 2025-11-02: Friday's trading day ended at 17:00 CDT (22:00Z); Monday's
        # starts Sunday 17:00 CST (23:00Z) and ends at 23:00Z, not at the summer 22:00Z.
        (dt.datetime(2025, 11, 2, 23, 0, tzinfo=dt.UTC), dt.datetime(2025, 11, 3, 23, 0, tzinfo=dt.UTC)),
        # DST starts Sunday 2026-03-08: Friday's ended at 23:00Z, Monday's ends at 17:00 CDT = 22:00Z.
        (dt.datetime(2026, 3, 8, 22, 0, tzinfo=dt.UTC), dt.datetime(2026, 3, 9, 22, 0, tzinfo=dt.UTC)),
    ],
)
def test_the_trading_day_rolls_at_1700_chicago_across_dst(day_start: dt.datetime, boundary: dt.datetime):
    g = Feed(start=day_start)
    book = new_book(eod_high_balance=D(50000))
    seconds = (boundary - day_start).total_seconds()
    feed_all(
        book,
        g.account(60, 50000),
        g.trade(120, 1, MNQ, side=BUY, pnl=None, fees="0.37"),
        g.trade(180, 2, MNQ, side=SELL, pnl=150, fees="0.37"),
        g.account(181, "50149.26"),
        g.position(200, ES, 1, 6000),
        g.quote(201, ES, 6002),  # +$100 open at the boundary
    )
    before = snap(book, boundary - SECOND)
    trading_day = before.session.trading_day
    assert trading_day == boundary.astimezone(CHICAGO).date()
    assert (before.day.trades, before.day.realized_pnl) == (2, D("149.26"))
    assert before.next_trading_day == boundary
    assert book.take_rolled() == []

    after = snap(book, boundary)
    rolled = book.take_rolled()
    assert [(d.trading_day, d.realized, d.trades) for d in rolled] == [(trading_day, D("149.26"), 2)]
    assert (after.day.trades, after.day.realized_pnl, after.day.fees) == (0, D("0.00"), D("0.00"))
    assert after.day.eod_high_balance == D("50249.26")  # balance + open P&L at the boundary
    assert after.session.trading_day > trading_day
    # A late trade of the closed day does not count in the new one.
    assert apply(book, g.trade(seconds + 5, 3, MNQ, pnl=-50, filled=190)) is None
    assert snap(book).day.trades == 0


def test_a_lower_end_of_day_balance_keeps_the_eod_high():
    start = dt.datetime(2025, 10, 28, 22, 0, tzinfo=dt.UTC)  # Wednesday's trading day
    g = Feed(start=start)
    book = new_book(eod_high_balance=D(51000))
    apply(book, g.account(60, 50500))
    snap(book, dt.datetime(2025, 10, 29, 22, 0, tzinfo=dt.UTC))
    assert book.eod_high_balance == D(51000)


# -- other accounts and malformed payloads -----------------------------------------------------


def test_messages_of_another_account_are_ignored():
    book = new_book()
    apply(book, f.account(0, 50000))
    before = state(book)
    other = 999
    for message in (
        f.account(1, 1, account_id=other),
        f.position(1, MNQ, 5, 21000, account_id=other),
        f.order(1, 77, MNQ, account_id=other, stop=20000),
        f.trade(1, 88, MNQ, pnl=-5000, account_id=other),
    ):
        assert apply(book, message) is None
    assert state(book) == before


def _malformed(target: str, payload, t: float = 30) -> Message:
    hub = "market" if target in ("GatewayQuote", "GatewayTrade") else "user"
    args = payload if hub == "market" else [{"action": 1, "data": payload}]
    return Message(f.at(t), hub, target, args)


MALFORMED = {
    "account without balance": ("GatewayUserAccount", {"id": ACCOUNT, "name": "renamed"}),
    "account balance not a number": ("GatewayUserAccount", {"id": ACCOUNT, "name": "renamed", "balance": "lots"}),
    "position of unknown type": (
        "GatewayUserPosition",
        {"accountId": ACCOUNT, "contractId": ES, "type": 7, "size": 2, "averagePrice": 1},
    ),
    "position price not a number": (
        "GatewayUserPosition",
        {"accountId": ACCOUNT, "contractId": MNQ, "type": 1, "size": 9, "averagePrice": "x"},
    ),
    "position size not a number": (
        "GatewayUserPosition",
        {"accountId": ACCOUNT, "contractId": MNQ, "type": 1, "size": "two", "averagePrice": 1},
    ),
    "order with unknown side": (
        "GatewayUserOrder",
        {"accountId": ACCOUNT, "id": 5, "contractId": MNQ, "status": 1, "type": 4, "side": 9, "size": 1},
    ),
    "order without status": (
        "GatewayUserOrder",
        {"accountId": ACCOUNT, "id": 5, "contractId": MNQ, "type": 4, "side": 1, "size": 1},
    ),
    "trade price not a number": (
        "GatewayUserTrade",
        {"accountId": ACCOUNT, "id": 5, "contractId": MNQ, "side": 0, "size": 1, "price": "zz"},
    ),
    "trade with a bad time": (
        "GatewayUserTrade",
        {
            "accountId": ACCOUNT,
            "id": 6,
            "contractId": MNQ,
            "side": 0,
            "size": 1,
            "price": 1,
            "creationTimestamp": "yesterday",
        },
    ),
    "payload not an object": ("GatewayUserOrder", ["not", "an", "object"]),
    "quote data not an object": ("GatewayQuote", [MNQ, "21000"]),
    "quote price not a number": ("GatewayQuote", [MNQ, {"lastPrice": "abc"}]),
    "quote price not finite": ("GatewayQuote", [MNQ, {"lastPrice": Decimal("NaN")}]),
    "quote bid not a number": ("GatewayQuote", [MNQ, {"bestBid": "a", "bestAsk": D(1)}]),
    "quote without data": ("GatewayQuote", [MNQ]),
    "market trade price not a number": ("GatewayTrade", [MNQ, [{"price": "x"}]]),
    "market trade not an object": ("GatewayTrade", [MNQ, ["x"]]),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_payload_raises_and_leaves_the_book_unchanged(name: str):
    """The engine counts the message as malformed and skips it (see test_engine); the book must
    not be half-updated by it. (The message's timestamp, already checked by intake, still moves
    the clock: time passes whatever the payload.)"""
    book = new_book()
    feed_all(
        book, f.account(0, 50000), f.position(1, MNQ, 1, 21000), f.quote(2, MNQ, 21004), f.order(3, 4, MNQ, stop=20990)
    )
    book.advance(f.at(30))
    before = state(book)
    target, payload = MALFORMED[name]
    with pytest.raises((KeyError, TypeError, ValueError, ArithmeticError, IndexError)):
        apply(book, _malformed(target, payload))
    assert state(book) == before


def test_a_malformed_message_of_an_unknown_account_does_not_adopt_it():
    book = Book(TradingCalendar(), DEFAULT_INSTRUMENTS)  # account learnt from the first message
    with pytest.raises(ValueError, match="not a number"):  # a reason, not decimal.InvalidOperation
        apply(book, _malformed("GatewayUserAccount", {"id": 555, "balance": "lots"}))
    apply(book, f.account(1, 50000))
    assert book.account.id == ACCOUNT


# -- properties --------------------------------------------------------------------------------

money = st.decimals(min_value=-2000, max_value=2000, places=2, allow_nan=False, allow_infinity=False)
fees = st.decimals(min_value=0, max_value=5, places=2, allow_nan=False, allow_infinity=False)
trades = st.lists(
    st.tuples(st.one_of(st.none(), money), fees, st.booleans(), st.sampled_from([MNQ, ES, CL])),
    min_size=0,
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(trades=trades, data=st.data())
def test_realized_pnl_is_the_exact_sum_in_any_order_of_arrival(trades, data):
    messages = [
        f.trade(i, 1000 + i, contract, pnl=pnl, fees=fee, voided=voided)
        for i, (pnl, fee, voided, contract) in enumerate(trades)
    ]
    arrival = data.draw(st.permutations(messages))
    repeats = data.draw(st.lists(st.sampled_from(messages), max_size=5)) if messages else []
    book = new_book()
    feed_all(book, *arrival, *repeats)
    live = [(pnl, fee) for pnl, fee, voided, _ in trades if not voided]
    expected = sum(((pnl or 0) - fee for pnl, fee in live), Decimal(0))
    s = snap(book)
    assert s.day.realized_pnl == expected
    assert s.day.trades == len(live)
    assert s.day.fees == sum((fee for _, fee in live), Decimal(0))


@settings(max_examples=100, deadline=None)
@given(trades=trades, voided_later=st.data())
def test_voiding_after_the_fact_equals_never_counting(trades, voided_later):
    messages = [f.trade(i, 1000 + i, contract, pnl=pnl, fees=fee) for i, (pnl, fee, _, contract) in enumerate(trades)]
    void = voided_later.draw(st.sets(st.sampled_from(range(len(trades))))) if trades else set()
    later = [
        f.trade(100 + i, 1000 + i, trades[i][3], pnl=trades[i][0], fees=trades[i][1], voided=True) for i in sorted(void)
    ]
    book = new_book()
    feed_all(book, *messages, *later)
    kept = [t for i, t in enumerate(trades) if i not in void]
    assert snap(book).day.realized_pnl == sum(((p or 0) - fee for p, fee, _, _ in kept), Decimal(0))


def _messages() -> st.SearchStrategy[Message]:
    t = st.integers(min_value=0, max_value=60)
    contract = st.sampled_from([MNQ, ES])
    price = st.integers(min_value=20990, max_value=21010)
    return st.one_of(
        st.builds(lambda t, b: f.account(t, b), t, st.integers(49000, 51000)),
        st.builds(
            lambda t, c, s, p, o: f.position(t, c, s, p, opened=o),
            t,
            contract,
            st.integers(-3, 3),
            price,
            st.integers(0, 60),
        ),
        st.builds(
            lambda t, i, c, ty, sd, sz, stt, sp, fv, u: f.order(
                t, i, c, type=ty, side=sd, size=sz, status=stt, stop=sp, fill_volume=fv, updated=u
            ),
            t,
            st.integers(1, 4),
            contract,
            st.sampled_from([1, 2, 4]),
            st.sampled_from([0, 1]),
            st.integers(1, 3),
            st.sampled_from([1, 2, 3, 6]),
            price,
            st.integers(0, 1),
            t,
        ),
        st.builds(
            lambda t, i, c, p, v: f.trade(t, i, c, pnl=p, voided=v),
            t,
            st.integers(1, 4),
            contract,
            st.one_of(st.none(), st.integers(-50, 50)),
            st.booleans(),
        ),
        st.builds(lambda t, c, p, s: f.quote(t, c, p, stamp=s), t, contract, price, t),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_messages(), max_size=30))
def test_applying_a_message_twice_equals_applying_it_once(messages):
    once, twice = new_book(), new_book()
    for message in messages:
        apply(once, message)
        apply(twice, message)
        apply(twice, message)
        assert state(twice) == state(once)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_messages(), max_size=30), st.data())
def test_a_message_replayed_later_changes_nothing(messages, data):
    """A reconnect may deliver an old message again after newer ones: it is a duplicate or
    older than what the book has, and must not take the book back."""
    if not messages:
        return
    book = new_book()
    for message in messages:
        apply(book, message)
    before = state(book)
    old = data.draw(st.sampled_from(messages))
    if any(m.target == old.target and m is not old and _key(m) == _key(old) for m in messages):
        return  # several updates of one thing: replaying a middle one is a different test
    apply(book, old)
    assert state(book) == before


def _key(message: Message):
    """What one message is an update of."""
    if message.hub == "market":
        return message.args[0]
    data = message.args[0]["data"]
    return data["contractId"] if message.target == "GatewayUserPosition" else data["id"]


def test_the_positional_quote_event_is_the_keyword_one():
    """Event.quote builds positionally (the hot path); it must stay in step with the fields."""
    at, price = f.at(1), D("21000.25")
    assert Event.quote(at, "MNQ", MNQ, price, price - 1, price + 1) == Event(
        kind="quote", time=at, symbol="MNQ", contract_id=MNQ, last=price, bid=price - 1, ask=price + 1
    )
