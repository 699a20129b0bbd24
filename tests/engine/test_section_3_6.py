"""The §3.6 examples fire in `riskc replay` (PRODUCT.md §3.6: "must parse, check and fire"), and
`place_target` goes from a rule through the enforcer to the simulated broker, the executor's
verification and the ProjectX adapter (§3.4)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

from gateway_messages import ES, MNQ, Feed
from test_engine import ACCOUNT, Harness
from test_replay import MNQ as REPLAY_MNQ
from test_replay import SESSIONS, _account, _line, _quote, replay_json, write_recording

from riskc.engine.adapters.port import BrokerCall, BrokerState
from riskc.engine.enforce.executor import took_effect
from riskc.engine.sim.broker import SimBroker
from riskc.engine.store import Store

SECTION_3_6 = """policy "section 3.6"

rule nq_family_cap
  "NQ and MNQ together: at most 3 NQ-equivalents."
  when sum(p.qty * (1 if p.symbol == MNQ else 10) for p in positions where p.symbol in [NQ, MNQ]) > 30
  then alert "NQ family over 3 NQ-equivalents"

rule three_strikes
  "Three losing trades in a day end the day."
  when count(t for t in trades where t.pnl < $0) >= 3
  then flatten, lockout until next_trading_day
"""
T0 = dt.datetime(2025, 12, 3, 16, 0, tzinfo=dt.UTC)  # a Wednesday, 10:00 CST


def _policy(tmp_path: Path) -> Path:
    path = tmp_path / "s36.risk"
    path.write_text(SECTION_3_6, encoding="utf-8")
    return path


def test_three_strikes_fires_in_replay_at_the_third_losing_trade(tmp_path):
    records, _ = replay_json(SESSIONS / "daily-loss-lockout.jsonl", _policy(tmp_path))
    strikes = [r for r in records if r["rule"] == "three_strikes"]
    assert [r["action"] for r in strikes[:2]] == ["flatten", "lockout"]
    assert "count(t for t in trades where t.pnl < $0) = 3 >= 3" in strikes[0]["reason"]


def test_nq_family_cap_fires_in_replay(tmp_path):
    def position(ts: dt.datetime, size: int) -> str:
        data = {"id": 1, "accountId": 7, "contractId": REPLAY_MNQ, "type": 1, "size": size}
        return _line(ts, "GatewayUserPosition", data | {"creationTimestamp": ts.isoformat(), "averagePrice": 25600.0})

    lines = [_account(T0), _quote(T0), position(T0 + dt.timedelta(seconds=1), 30)]
    lines += [position(T0 + dt.timedelta(seconds=5), 31), _quote(T0 + dt.timedelta(seconds=6))]
    records, _ = replay_json(write_recording(tmp_path, lines), _policy(tmp_path))
    alerts = [r for r in records if r["rule"] == "nq_family_cap"]
    assert [(r["action"], r["ts"]) for r in alerts] == [("alert", (T0 + dt.timedelta(seconds=5)).isoformat())]
    assert "= 31 > 30" in alerts[0]["reason"]


# -- place_target -----------------------------------------------------------------------------

f = Feed(account_id=ACCOUNT)


def test_take_profit_places_one_target_on_the_grid_never_beyond_the_price(tmp_path):
    with Store.open(tmp_path / "state.db") as store:
        h = Harness(store, 'policy "t"\nuse take_profit(ticks: 20 ticks)\n')
        h.auto = False
        calls = h.feed(f.position(0, MNQ, 2, "21000.125"), f.position(0, ES, -1, 6000))
        assert [(c.kind, c.contract_id, c.side, c.size, c.limit_price) for c in calls] == [
            ("place_target", MNQ, "sell", 2, Decimal("21005.00")),  # 21005.125, rounded down: not beyond
            ("place_target", ES, "buy", 1, Decimal("5995.00")),
        ]
        assert [r["price"] for r in h.records] == ["21005.00", "5995.00"]
        assert h.feed(f.quote(1, MNQ, 21001)) == []  # in flight: not again
        h.execute(h.in_flight)
        assert h.feed(f.quote(2, MNQ, 21002)) == []  # done: not again, even before the order shows


def test_the_sim_broker_places_a_target_and_the_executor_finds_it():
    sim = SimBroker()
    sim.observe(f.account(0, 50000))
    sim.observe(f.position(0, MNQ, 2, 21000))
    call = BrokerCall("place_target", ACCOUNT, contract_id=MNQ, side="sell", size=2, limit_price=Decimal("21005"))
    [ack] = sim.submit(call, f.at(1))
    order = ack.args[0]["data"]
    assert (order["type"], order["side"], order["size"], order["limitPrice"]) == (1, 1, 2, Decimal("21005"))
    assert took_effect(call, sim.state_now())
    assert not took_effect(call, BrokerState())
