"""The simulated broker's account state (engine/broker/sim.py): what `state()` answers after the
feed it watched, as a Gateway's REST search would."""

from __future__ import annotations

import datetime as dt

from gateway_messages import MNQ, SELL, Feed

from riskc.engine.sim.broker import SimBroker

ACCOUNT = 13298777


def test_the_trade_search_keeps_a_day_of_trades_not_the_whole_run() -> None:
    sim = SimBroker()
    f = Feed(account_id=ACCOUNT, start=dt.datetime(2025, 11, 12, 15, 0, tzinfo=dt.UTC))
    for hour in range(0, 48, 6):
        sim.observe(f.trade(hour * 3600, 100 + hour, MNQ, side=SELL, pnl=10))
    ids = [t.fill_id for t in sim.state_now().trades]
    assert ids == [118, 124, 130, 136, 142]  # 24 hours back from the last: the list used to grow without end


def test_positions_and_working_orders_follow_the_feed() -> None:
    sim = SimBroker()
    f = Feed(account_id=ACCOUNT)
    sim.observe(f.position(0, MNQ, 2, 21000))
    sim.observe(f.order(0, 7, MNQ, type=4, side=SELL, size=2, stop=20990))
    state = sim.state_now()
    assert state.position_size(MNQ) == 2 and [o.order_id for o in state.orders] == [7]
    sim.observe(f.position(1, MNQ, 0))
    sim.observe(f.order(1, 7, MNQ, type=4, side=SELL, size=2, stop=20990, status=3))
    state = sim.state_now()
    assert state.position_size(MNQ) == 0 and state.orders == ()
