"""Defects found while writing the rules of issue 17, each pinned by a test that failed before
its fix: alert-only rules over positions, prices off the tick grid, `reduce_total` records,
`max_contracts(count: net)` and the lockout at a Friday close (PRODUCT.md §3.4, §4, §6.2)."""

from __future__ import annotations

import datetime as dt

import pytest
from gateway_messages import CL, ES, MNQ, SELL, STOP, D, Feed
from test_engine import ACCOUNT, Harness, policy, summary

from riskc.engine.adapters.projectx.decode import decode
from riskc.engine.store import Store

f = Feed(account_id=ACCOUNT)


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "state.db") as store:
        yield store
        assert store.verify_audit().ok


@pytest.fixture
def harness(store):
    return lambda *sources: Harness(store, *sources)


# -- a `for position p` rule whose only action is an alert ------------------------------------


def test_an_alert_only_position_rule_reaches_the_trader_on_each_rising_edge(harness):
    h = harness(policy('rule big\n  for position p\n  when p.qty > 2\n  then alert "too big"\n  severity low'))
    h.feed(f.position(0, MNQ, 3, 21000))
    assert [(r["action"], r["message"]) for r in h.records] == [("alert", "too big")]
    assert len(h.alerts) == 1
    h.feed(f.quote(1, MNQ, 21001), f.position(2, MNQ, 4, 21000))  # still firing: nothing new
    assert len(h.records) == 1
    h.feed(f.position(3, ES, 3, 6000))  # another position rises
    assert len(h.records) == 2 and len(h.alerts) == 2


# -- prices on the tick grid, and the record carries the price sent ------------------------------

PROTECT = (
    "rule protect\n  for position p\n  when p.stop_coverage < p.qty\n"
    "  then place_stop p at p.avg_price - ticks_to_points(p.symbol, 20 ticks) * p.direction"
)


@pytest.mark.parametrize(
    ("size", "avg", "sent"),
    [
        (2, "21000.125", "20995.25"),  # a long's sell stop rounds up, toward the market
        (-2, "21000.125", "21005.00"),  # a short's buy stop rounds down
        (1, "21000.25", "20995.25"),  # on the grid already
    ],
)
def test_place_stop_goes_out_on_the_tick_grid_and_is_recorded_as_sent(harness, size, avg, sent):
    h = harness(policy(PROTECT))
    calls = h.feed(f.position(0, MNQ, size, avg))
    assert [c.stop_price for c in calls] == [D(sent)]
    assert [r["price"] for r in h.records if r["action"] == "place_stop"] == [sent]


def test_move_stop_record_shows_the_price_sent(harness):
    h = harness(policy("use breakeven_stop(trigger: 8 ticks, offset: 1 tick)"))
    h.feed(f.position(0, MNQ, 2, "21000.125"), f.order(0, 30, MNQ, type=STOP, side=SELL, size=2, stop=20990))
    calls = h.feed(f.quote(5, MNQ, 21003))
    assert [c.stop_price for c in calls] == [D("21000.50")]  # 21000.375 rounded up to the grid
    assert [r["price"] for r in h.records if r["action"] == "move_stop"] == ["21000.50"]


# -- reduce_total: one `reduce` record per position cut ------------------------------------------


def test_reduce_total_is_recorded_as_one_reduce_per_position_cut(harness):
    h = harness(policy("use max_contracts(limit: 2)"))
    h.auto = False
    h.feed(f.position(0, MNQ, 1, 21000))
    h.engine.apply_quiet(*decode(f.position(0, CL, -2, 60)))
    h.feed(f.position(1, ES, 2, 6000))
    cuts = [r for r in h.records if r["action"] in ("reduce", "reduce_total")]
    assert [(r["action"], r["symbol"], r["contract_id"], r["to"]) for r in cuts] == [
        ("reduce", "CL", CL, 0),
        ("reduce", "ES", ES, 1),
    ]
    assert all(r["rule"] == "max_contracts" and r["reason"] for r in cuts)


# -- max_contracts(count: net) cuts the side that makes the net exceed the limit ------------------


def test_max_contracts_net_cuts_the_fewest_contracts_on_the_excess_side(harness):
    h = harness(policy("use max_contracts(limit: 4, count: net)"))
    h.auto = False
    h.engine.apply_quiet(*decode(f.position(0, ES, -2, 6000)))
    calls = h.feed(f.position(1, MNQ, 7, 21000))  # net +5: one MNQ too many, not five
    assert summary(calls) == [("partial_close", MNQ, None, 1)]
    assert [c.expect_size for c in calls] == [6]


def test_max_contracts_net_cuts_the_largest_position_of_the_excess_side_first(harness):
    h = harness(policy("use max_contracts(limit: 1, count: net)"))
    h.auto = False
    h.engine.apply_quiet(*decode(f.position(0, ES, -1, 6000)))
    h.engine.apply_quiet(*decode(f.position(0, CL, 2, 60)))
    calls = h.feed(f.position(1, MNQ, 3, 21000))  # net +4: cut 3 from the longs, MNQ first
    assert summary(calls) == [("close", MNQ, None, None)]


# -- a trading-hours lockout at the Friday close ---------------------------------------------------


def test_trading_hours_lockout_at_the_friday_close_lasts_until_sundays_open(harness, store):
    friday = Feed(account_id=ACCOUNT, start=dt.datetime(2025, 10, 31, 20, 10, tzinfo=dt.UTC))  # 15:10 CT
    h = harness(policy("use trading_hours(start: 17:00, end: 15:10)"))
    h.feed(friday.account(0, 50000))
    h.tick(friday.at(1))
    [lockout] = store.active_lockouts(ACCOUNT, friday.at(1))
    assert lockout.until == dt.datetime(2025, 11, 2, 23, 0, tzinfo=dt.UTC)  # Sunday 17:00 CST
    [record] = [r for r in h.records if r["action"] == "lockout"]
    assert record["until"] == "2025-11-02T23:00:00+00:00"
