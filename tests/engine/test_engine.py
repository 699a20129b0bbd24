"""The engine loop (engine/runner.py, engine/enforce.py) against a fake broker and a real store:
which broker calls a breach produces, that each effect is sent once, lockouts, staleness,
reconciliation, alerts and the trading-day roll (PRODUCT.md §3.4, §7, §8).

``FakePort`` is a ``BrokerPort`` that records every call and keeps the account's state from the
messages it is shown and the calls it carries out; ``Harness.execute`` plays the daemon's part:
``mark_sent`` before the call leaves, ``finished`` with the outcome. Every test ends by verifying
the audit hash chain.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from gateway_messages import BUY, CL, ES, LIMIT, MARKET, MNQ, PENDING, SELL, START, STOP, D, Feed

from riskc.engine.adapters.port import BrokerCall, BrokerError, BrokerState
from riskc.engine.adapters.projectx.decode import DECODE_ERRORS, broker_state, decode
from riskc.engine.adapters.projectx.intake import Message
from riskc.engine.enforce.enforcer import RETRY_AFTER
from riskc.engine.runner import Engine, PolicySet
from riskc.engine.sim.replay import Replay
from riskc.engine.store import Store

ACCOUNT = 13298777
f = Feed(account_id=ACCOUNT)


class FakePort:
    """Records calls; ``state()`` answers from the messages shown (``sees``) and the calls done."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[BrokerCall] = []
        self.failing = False
        self.positions: dict[str, dict[str, Any]] = {}
        self.orders: dict[int, dict[str, Any]] = {}
        self.trades: list[dict[str, Any]] = []
        self.account: dict[str, Any] | None = None
        self._next_order = 9000

    def sees(self, message: Message) -> None:
        if message.hub != "user":
            return
        data = message.args[0]["data"]
        if message.target == "GatewayUserAccount":
            self.account = dict(data)
        elif message.target == "GatewayUserPosition":
            if data["size"]:
                self.positions[data["contractId"]] = dict(data)
            else:
                self.positions.pop(data["contractId"], None)
        elif message.target == "GatewayUserOrder":
            if data["status"] in (1, 6):
                self.orders[data["id"]] = dict(data)
            else:
                self.orders.pop(data["id"], None)
        elif message.target == "GatewayUserTrade":
            self.trades.append(dict(data))

    async def send(self, call: BrokerCall) -> dict[str, Any] | None:
        self.calls.append(call)
        if self.failing:
            raise BrokerError("503 from the gateway")
        if call.kind == "close":
            self.positions.pop(call.contract_id, None)
        elif call.kind == "partial_close":
            position = self.positions.get(call.contract_id)
            if position is None:
                raise BrokerError(f"no position in {call.contract_id}")  # as the Gateway refuses it
            position["size"] -= call.size
        elif call.kind == "cancel":
            self.orders.pop(call.order_id, None)
        elif call.kind == "modify_stop":
            order = self.orders.get(call.order_id)
            if order is None:  # cancelled by an earlier call, or never known: the Gateway refuses it
                raise BrokerError(f"no order {call.order_id}")
            order["stopPrice"] = call.stop_price
        elif call.kind == "place_stop":
            self._next_order += 1
            self.orders[self._next_order] = {
                "id": self._next_order,
                "accountId": call.account_id,
                "contractId": call.contract_id,
                "type": STOP,
                "status": 1,
                "side": BUY if call.side == "buy" else SELL,
                "size": call.size,
                "stopPrice": call.stop_price,
            }
        return {"success": True}

    async def state(self, account_id: int) -> BrokerState:
        return broker_state(list(self.positions.values()), list(self.orders.values()), self.trades, self.account, START)


class Harness:
    def __init__(self, store: Store, *sources: str) -> None:
        policies, diagnostics, _ = PolicySet.from_sources([(f"p{i}.risk", s) for i, s in enumerate(sources)])
        assert policies is not None, [str(d) for d in diagnostics]
        self.store = store
        self.engine = Engine(policies, store, account_id=ACCOUNT)
        self.port = FakePort()
        self.auto = True  # execute calls at once; False leaves them in flight
        self.in_flight: list[BrokerCall] = []
        self.records: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []

    def feed(self, *messages: Message) -> list[BrokerCall]:
        calls = []
        for message in messages:
            self.port.sees(message)
            calls += self._handle(self.engine.on_events(decode(message)))
        return calls

    def tick(self, at: dt.datetime) -> list[BrokerCall]:
        return self._handle(self.engine.on_tick(at))

    def reconcile(self, at: dt.datetime) -> tuple[list[str], list[BrokerCall]]:
        drift, effects = self.engine.reconcile(self.state(), at)
        return drift, self._handle(effects)

    def state(self) -> BrokerState:
        return asyncio.run(self.port.state(ACCOUNT))

    def _handle(self, effects) -> list[BrokerCall]:
        self.records += effects.records
        self.alerts += effects.alerts
        if self.auto:
            self.execute(effects.calls)
        else:
            self.in_flight += effects.calls
        return list(effects.calls)

    def execute(self, calls: list[BrokerCall]) -> None:
        now = self.engine.book.now
        for call in calls:
            self.engine.mark_sent(call, now)
            try:
                result = asyncio.run(self.port.send(call))
            except BrokerError as error:
                self.engine.finished(call, False, now, str(error))
            else:
                self.engine.finished(call, True, now, result=result)


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "state.db") as store:
        yield store
        verification = store.verify_audit()
        assert verification.ok, verification


@pytest.fixture
def harness(store):
    return lambda *sources: Harness(store, *sources)


def policy(*uses: str) -> str:
    return 'policy "test"\n' + "\n".join(uses) + "\n"


def summary(calls: list[BrokerCall]) -> list[tuple]:
    return [(c.kind, c.contract_id, c.order_id, c.size) for c in calls]


def audit(store: Store, kind: str) -> list[dict[str, Any]]:
    return [json.loads(r.payload) for r in store.audit_records() if r.kind == kind]


LOSS = (f.account(0, 50000), f.trade(1, 1, MNQ, side=SELL, pnl=-120, fees="0.37"))


# -- what a breach sends -----------------------------------------------------------------------


def test_flatten_closes_every_position_and_cancels_orders_but_not_market_ones(harness):
    h = harness(policy("use daily_loss(limit: $100)"))
    h.auto = False
    h.feed(
        f.account(0, 50000),
        f.position(0, MNQ, 2, 21000),
        f.position(0, ES, -1, 6000),
        f.order(0, 10, MNQ, type=STOP, side=SELL, size=2, stop=20990),
        f.order(0, 11, ES, type=STOP, side=BUY, size=1, stop=6010, status=PENDING),  # a suspended leg
        f.order(0, 12, ES, type=MARKET, side=BUY, size=1),
    )
    calls = h.feed(LOSS[1])
    assert summary(calls) == [
        ("close", MNQ, None, None),
        ("close", ES, None, None),
        ("cancel", MNQ, 10, None),
        ("cancel", ES, 11, None),
    ]
    assert {c.expect_size for c in calls if c.kind == "close"} == {0}
    assert [r["action"] for r in h.records] == ["flatten", "lockout", "trading_state"]


def test_reduce_p_to_n_is_a_partial_close_of_the_excess(harness):
    h = harness(policy("use max_contracts_per_symbol(limits: {MNQ: 2}, default: 1)"))
    calls = h.feed(f.position(0, MNQ, 5, 21000), f.position(0, ES, -3, 6000))
    assert summary(calls) == [("partial_close", MNQ, None, 3), ("partial_close", ES, None, 2)]
    assert [c.expect_size for c in calls] == [2, -1]
    assert h.state().position_size(MNQ) == 2 and h.state().position_size(ES) == -1


@pytest.mark.parametrize(
    ("limit", "third", "expected"),
    [
        (3, f.position(1, ES, 4, 6000), [("close", ES, None, None)]),  # 7 gross, cut 4: ES is largest
        (4, f.position(1, ES, 2, 6000), [("partial_close", CL, None, 1)]),  # 5 gross: CL and ES tie, by contract id
        (2, f.position(1, ES, 2, 6000), [("close", CL, None, None), ("partial_close", ES, None, 1)]),
    ],
)
def test_reduce_total_cuts_the_largest_positions_first(harness, limit, third, expected):
    h = harness(policy(f"use max_contracts(limit: {limit})"))
    h.auto = False
    h.feed(f.position(0, MNQ, 1, 21000))
    h.engine.apply_quiet(*decode(f.position(0, CL, -2, 60)))  # both already open when the third arrives
    assert summary(h.feed(third)) == expected


def test_symbol_block_closes_and_cancels_that_symbol_only_and_blocks_it(harness, store):
    h = harness(policy("use symbol_block(symbols: [CL])"))
    h.feed(
        f.position(0, MNQ, 1, 21000),
        f.order(0, 20, MNQ, type=LIMIT, side=BUY, size=1, limit=20900),
        f.order(0, 21, CL, type=LIMIT, side=BUY, size=1, limit=59),
    )
    calls = h.feed(f.position(1, CL, 1, 60))
    assert summary(calls) == [("close", CL, None, None), ("cancel", CL, 21, None)]
    [block] = store.active_lockouts(ACCOUNT, f.at(2))
    assert (block.scope, block.symbol, block.rule) == ("symbol", "CL", "symbol_block")
    assert block.until == dt.datetime(2025, 10, 29, 22, 0, tzinfo=dt.UTC)  # next trading day, 17:00 CDT
    h.feed(f.position(3, CL, 0))
    # While blocked: a new CL order is cancelled, MNQ trades on untouched.
    assert summary(h.feed(f.order(10, 22, CL, type=LIMIT, side=BUY, size=1, limit=58))) == [("cancel", CL, 22, None)]
    assert h.feed(f.order(11, 23, MNQ, type=LIMIT, side=BUY, size=1, limit=20800), f.position(12, MNQ, 2, 21000)) == []


def test_move_stop_moves_only_the_stops_that_cover_the_position(harness):
    h = harness(policy("use breakeven_stop(trigger: 8 ticks, offset: 1 tick)"))
    h.feed(
        f.position(0, MNQ, 2, 21000),
        f.order(0, 30, MNQ, type=STOP, side=SELL, size=2, stop=20990),  # covers
        f.order(0, 31, MNQ, type=STOP, side=BUY, size=1, stop=21050),  # an entry stop, same side
        f.order(0, 32, MNQ, type=LIMIT, side=SELL, size=2, limit=21020),  # the target
        f.order(0, 33, ES, type=STOP, side=SELL, size=1, stop=5990),
    )  # another contract
    calls = h.feed(f.quote(5, MNQ, 21002))
    assert summary(calls) == [("modify_stop", MNQ, 30, None)]
    assert calls[0].stop_price == D("21000.25")
    h.feed(f.order(6, 30, MNQ, type=STOP, side=SELL, size=2, stop="21000.25"))
    assert h.feed(f.quote(7, MNQ, 21003)) == []  # already there: stops only tighten


def test_place_stop_covers_only_the_uncovered_contracts(harness):
    h = harness(
        policy(
            "rule protect\n  for position p\n  when p.stop_coverage < p.qty\n"
            "  then place_stop p at p.avg_price - ticks_to_points(p.symbol, 20 ticks) * p.direction"
        )
    )
    h.auto = False
    h.feed(f.order(0, 40, MNQ, type=STOP, side=SELL, size=1, stop=20990))
    calls = h.feed(f.position(1, MNQ, 3, 21000))
    assert summary(calls) == [("place_stop", MNQ, None, 2)]
    assert (calls[0].side, calls[0].stop_price) == ("sell", D("20995.00"))


# -- the exit orders of a closed position ---------------------------------------------------

EXITS = (
    f.order(0, 50, MNQ, type=STOP, side=SELL, size=1, stop=20990),  # its stop
    f.order(0, 51, MNQ, type=LIMIT, side=SELL, size=1, limit=21040),  # its target
    f.order(0, 52, MNQ, type=LIMIT, side=BUY, size=1, limit=20950),
)  # an entry to add: not an exit


def test_a_closed_positions_exit_orders_are_cancelled_once_it_is_flat(harness):
    h = harness(policy("use position_loss(limit: $10)"))
    h.feed(f.position(0, MNQ, 1, 21000), *EXITS)
    assert summary(h.feed(f.quote(1, MNQ, 20990))) == [("close", MNQ, None, None)]
    assert h.tick(f.at(2)) == []  # confirmed, but the book still has the position: the stop stays
    calls = h.feed(f.position(3, MNQ, 0))
    assert summary(calls) == [("cancel", MNQ, 50, None), ("cancel", MNQ, 51, None)]
    assert h.records[-1]["reason"] == f"exit order of the {MNQ} position closed by position_loss"
    h.feed(
        f.order(4, 50, MNQ, type=STOP, side=SELL, size=1, stop=20990, status=3),
        f.order(4, 51, MNQ, type=LIMIT, side=SELL, size=1, limit=21040, status=3),
    )
    assert h.tick(f.at(5)) == [] and len(h.port.calls) == 3


def test_the_exit_orders_stay_while_the_close_failed(harness):
    h = harness(policy("use position_loss(limit: $10)"))
    h.port.failing = True
    h.feed(f.position(0, MNQ, 1, 21000), *EXITS)
    assert summary(h.feed(f.quote(1, MNQ, 20990))) == [("close", MNQ, None, None)]
    assert h.tick(f.at(2)) == [] and h.tick(f.at(3)) == []  # the stop is still its only protection


def test_an_order_placed_after_the_close_is_left_alone(harness):
    h = harness(policy("use position_loss(limit: $10)"))
    h.auto = False
    h.feed(f.position(0, MNQ, 1, 21000), *EXITS)
    h.feed(f.quote(1, MNQ, 20990))
    h.execute(h.in_flight)
    h.in_flight.clear()
    # The trader places a sell stop to go short, then the fill of riskc's close arrives.
    assert h.feed(f.order(2, 53, MNQ, type=STOP, side=SELL, size=1, stop=20900)) == []
    h.feed(f.position(3, MNQ, 0))
    assert summary(h.in_flight) == [("cancel", MNQ, 50, None), ("cancel", MNQ, 51, None)]


def test_a_position_reopened_before_the_flat_was_seen_keeps_its_orders(harness):
    h = harness(policy("use position_loss(limit: $10)"))
    h.feed(f.position(0, MNQ, 1, 21000), *EXITS)
    h.feed(f.quote(1, MNQ, 20990))
    h.engine.book.apply(*decode(f.position(2, MNQ, 0)))  # flat and short in one burst, not evaluated between
    assert h.feed(f.position(3, MNQ, -1, 21000)) == []  # another episode: the trader's orders again
    assert h.tick(f.at(4)) == [] and not h.engine.enforcer.orphans


def test_the_exit_orders_are_still_cancelled_after_a_restart(tmp_path):
    """riskc died after the close was confirmed and before it saw the position flat: the stored
    plan of the close names the exit orders, and the restart's reconciliation cancels them."""
    path = tmp_path / "state.db"
    sources = policy("use position_loss(limit: $10)")
    with Store.open(path) as store:
        first = Harness(store, sources)
        first.feed(f.position(0, MNQ, 1, 21000), *EXITS)
        assert summary(first.feed(f.quote(1, MNQ, 20990))) == [("close", MNQ, None, None)]
        port = first.port  # the broker closed it; its stop and target are still working there
    with Store.open(path) as store:
        second = Harness(store, sources)
        second.port = port
        _, calls = second.reconcile(f.at(5))
        assert summary(calls) == [("cancel", MNQ, 50, None), ("cancel", MNQ, 51, None)]
        assert store.verify_audit().ok


# -- exactly once ------------------------------------------------------------------------------


def test_a_rule_that_keeps_firing_sends_nothing_new_in_flight_or_after_confirmation(harness, store):
    h = harness(policy("use stop_required(grace: 30s)"))
    h.auto = False
    h.feed(f.position(0, MNQ, 1, 21000))
    assert h.tick(f.at(29)) == []
    [close] = h.tick(f.at(30))
    assert h.tick(f.at(31)) == [] and h.feed(f.quote(32, MNQ, 21001)) == []  # in flight
    assert store.get_action(close.key).state == "planned"
    h.execute(h.in_flight)
    assert store.get_action(close.key).state == "confirmed"
    assert h.tick(f.at(33)) == [] and h.tick(f.at(40)) == []  # the position report is late: still once
    assert len(h.port.calls) == 1


def test_a_failed_call_is_planned_again_only_after_retry_after(harness, store):
    h = harness(policy("use stop_required(grace: 30s)"))
    h.port.failing = True
    h.feed(f.position(0, MNQ, 1, 21000))
    [first] = h.tick(f.at(30))
    assert store.get_action(first.key).state == "failed"
    assert h.tick(f.at(31)) == [] and h.tick(f.at(34)) == []
    h.port.failing = False
    [again] = h.tick(f.at(30) + RETRY_AFTER)
    assert again.key == first.key
    record = store.get_action(first.key)
    assert (record.state, record.attempts) == ("confirmed", 2)
    assert [a["outcome"] for a in audit(store, "outcome")] == ["failed", "confirmed"]


@pytest.mark.parametrize("files", [1, 2])
def test_two_rules_wanting_the_same_close_share_one_call(harness, files):
    rules = ("use stop_required(grace: 30s)", "use position_loss(limit: $10)")
    h = harness(policy(*rules)) if files == 1 else harness(*map(policy, rules))
    h.auto = False
    h.feed(f.position(0, MNQ, 1, 21000))
    calls = h.feed(f.quote(30, MNQ, 20990))  # -$20 and 30 s without a stop: both fire
    assert summary(calls) == [("close", MNQ, None, None)]
    assert [r["action"] for r in h.records] == ["close"]


def test_a_lockout_keeping_the_account_flat_shares_the_rules_close(harness, store):
    h = harness(policy("use daily_loss(limit: $100)"))
    h.auto = False
    h.feed(*LOSS)  # locked out
    h.feed(f.position(10, MNQ, 1, 21000))  # daily_loss's flatten and the lockout both want it closed
    assert summary(h.in_flight) == [("close", MNQ, None, None)]


def test_a_breach_that_keeps_firing_still_acts_on_an_order_placed_meanwhile(harness):
    """While daily_loss fires on every event its evaluations are skipped as steady (see
    Engine._steady_key); a new entry order changes the book, so it is cancelled at once."""
    h = harness(policy("use daily_loss(limit: $100)"))
    h.auto = False
    h.feed(f.position(0, MNQ, 1, 21000), *LOSS)
    assert summary(h.in_flight) == [("close", MNQ, None, None)]  # still in flight
    assert h.feed(f.quote(2, MNQ, 21001)) == [] and h.feed(f.quote(3, MNQ, 21002)) == []  # steady
    calls = h.feed(f.order(4, 60, MNQ, type=LIMIT, side=BUY, size=1, limit=20950))
    assert summary(calls) == [("cancel", MNQ, 60, None)]


def test_ages_are_kept_up_to_date_for_a_policy_that_reads_them(harness):
    """The engine updates `age` only when a rule may read it (Program.reads)."""
    h = harness(policy("rule stale_order\n  for order o\n  when o.age >= 30s\n  then cancel o"))
    assert h.engine._ages
    h.feed(f.order(0, 70, MNQ, type=LIMIT, side=BUY, size=1, limit=20950))
    assert h.tick(f.at(29)) == []
    assert summary(h.tick(f.at(30))) == [("cancel", MNQ, 70, None)]


# -- a position riskc cannot price --------------------------------------------------------------

UNKNOWN = "CON.F.US.XYZ.Z25"  # no instrument spec


@pytest.mark.parametrize("on_error", ["flatten", "alert"])
def test_a_position_without_an_instrument_spec_is_alerted_never_closed_and_the_engine_keeps_going(harness, on_error):
    h = harness(f'policy "test"\n  on_error {on_error}\nuse max_contracts_per_symbol(limits: {{MNQ: 1}}, default: 5)\n')
    calls = h.feed(f.position(0, UNKNOWN, 1, 100), f.quote(1, UNKNOWN, 99), f.quote(2, MNQ, 21000))
    assert summary(calls) == []  # PRODUCT.md §8: never closed only because riskc did not know it
    assert [r["action"] for r in h.records] == ["alert"]
    assert "no instrument spec for `XYZ`" in h.records[-1]["reason"] and "instruments:" in h.records[-1]["reason"]
    assert len(h.alerts) == len(h.records)  # critical, and the alert only on the rising edge
    # The other rules still work: an MNQ position over its limit is reduced.
    assert summary(h.feed(f.position(3, MNQ, 3, 21000))) == [("partial_close", MNQ, None, 2)]


# -- lockouts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "until"),
    [
        (f.start, dt.datetime(2025, 10, 29, 22, 0, tzinfo=dt.UTC)),  # 17:00 CDT
        (dt.datetime(2025, 11, 3, 15, 0, tzinfo=dt.UTC), dt.datetime(2025, 11, 3, 23, 0, tzinfo=dt.UTC)),  # 17:00 CST
        # A Friday: the next trading day starts on Sunday at 17:00, not when Friday's day ends.
        (dt.datetime(2025, 11, 7, 15, 0, tzinfo=dt.UTC), dt.datetime(2025, 11, 9, 23, 0, tzinfo=dt.UTC)),
        # Christmas Eve 2025: no session on the 25th, so the next trading day (the 26th) starts on
        # the 25th at 17:00 CST, not when the 24th's day ends.
        (dt.datetime(2025, 12, 24, 15, 0, tzinfo=dt.UTC), dt.datetime(2025, 12, 25, 23, 0, tzinfo=dt.UTC)),
    ],
)
def test_lockout_until_next_trading_day_is_stored_with_the_boundary_instant(harness, store, start, until):
    h = harness(policy("use daily_loss(limit: $100)"))
    g = Feed(account_id=ACCOUNT, start=start)
    h.feed(g.account(0, 50000), g.trade(1, 1, MNQ, side=SELL, pnl=-120, fees="0.37"))
    [lockout] = store.active_lockouts(ACCOUNT, g.at(2))
    assert (lockout.scope, lockout.rule, lockout.until, lockout.condition) == ("account", "daily_loss", until, None)
    assert [r.get("until") for r in h.records if r["action"] == "lockout"] == [until.isoformat()]
    assert store.active_lockouts(ACCOUNT, until - dt.timedelta(microseconds=1)) != []
    assert store.active_lockouts(ACCOUNT, until) == []


def test_while_locked_new_positions_close_and_entries_cancel_but_exits_stay(harness, store):
    h = harness(policy("use daily_loss(limit: $1,000)"))
    h.feed(f.account(0, 50000), f.position(0, MNQ, 2, 21000))
    with Store.open(store.path) as lock_command:  # `riskc lock` runs in its own process
        lock_command.add_lockout(ACCOUNT, "personal", "done for today", f.at(1), until=f.at(3600), origin="personal")
    assert summary(h.tick(f.at(1))) == [("close", MNQ, None, None)]  # noticed on the next tick
    exit_stop = f.order(2, 50, MNQ, type=STOP, side=SELL, size=2, stop=20990)
    exit_target = f.order(2, 51, MNQ, type=LIMIT, side=SELL, size=1, limit=21050)
    entry = f.order(2, 52, ES, type=LIMIT, side=BUY, size=1, limit=5990)
    assert summary(h.feed(exit_stop, exit_target, entry)) == [("cancel", ES, 52, None)]
    # The exits of a position that is gone are plain orders now: they go too.
    assert {c.order_id for c in h.feed(f.position(3, MNQ, 0))} == {50, 51}
    assert summary(h.feed(f.position(5, ES, -1, 6000, opened=5))) == [("close", ES, None, None)]
    assert all(r["rule"] == "personal" for r in h.records)


def test_lockout_while_not_can_trade_is_released_by_the_engine_when_trading_returns(harness, store):
    h = harness(policy("use auth_guard"))
    h.feed(f.account(0, 50000), f.position(0, MNQ, 1, 21000))
    calls = h.feed(f.account(10, 50000, can_trade=False))
    assert summary(calls) == [("close", MNQ, None, None)]
    [lockout] = store.active_lockouts(ACCOUNT, f.at(11))
    assert (lockout.condition, lockout.until) == ("while:auth_guard", None)
    h.tick(f.at(20))
    assert store.active_lockouts(ACCOUNT, f.at(20)) != []
    h.feed(f.account(30, 50000, can_trade=True))
    assert store.active_lockouts(ACCOUNT, f.at(30)) == []
    released = store.get_lockout(lockout.id)
    assert (released.released_by, released.released_at) == ("engine", f.at(30))
    assert [u["outcome"] for u in audit(store, "unlock")] == ["released"]
    assert h.feed(f.position(40, MNQ, 1, 21000, opened=40)) == []  # free to trade again


def test_a_stale_engine_does_not_act_until_reconciled(harness):
    h = harness(policy("use daily_loss(limit: $100)"))
    h.feed(f.position(0, MNQ, 1, 21000))
    h.engine.stale = True
    assert h.feed(*LOSS) == [] and h.tick(f.at(5)) == []
    drift, calls = h.reconcile(f.at(6))
    assert drift == [] and summary(calls) == [("close", MNQ, None, None)]
    assert h.engine.stale is False


# -- reconciliation and recovery ---------------------------------------------------------------


def test_reconcile_corrects_drift_from_the_broker_and_audits_it(harness, store):
    h = harness(policy("use daily_loss(limit: $1,000)"))
    h.feed(f.account(0, 50000), f.position(0, MNQ, 1, 21000), f.order(0, 60, MNQ, stop=20990))
    # Meanwhile, unseen by the feed: MNQ closed and its stop cancelled, an ES position opened.
    h.port.positions = {ES: f.position(5, ES, -2, 6000).args[0]["data"]}
    h.port.orders = {}
    drift, _ = h.reconcile(f.at(10))
    assert drift == [
        f"position {ES}: book 0, broker -2",
        f"position {MNQ}: book 1, broker 0",
        "order 60: only in the book",
    ]
    book = h.engine.book
    assert {c: p.size for c, p in book.positions.items()} == {ES: -2} and book.orders == {}
    assert audit(store, "drift") == [{"drift": drift}]
    assert h.reconcile(f.at(20))[0] == []
    assert len(audit(store, "drift")) == 1  # no drift, nothing to audit


def test_reconcile_counts_trades_missed_while_away(harness, store):
    h = harness(policy("use daily_loss(limit: $100)"))
    h.feed(f.account(0, 50000))
    h.port.trades = [f.trade(5, 77, MNQ, side=SELL, pnl=-150, fees="0.37").args[0]["data"]]
    _, calls = h.reconcile(f.at(10))
    assert h.engine.book.day.realized == D("-150.37")
    assert store.day_totals(ACCOUNT, "2025-10-29").realized_pnl == D("-150.37")
    assert [lo.rule for lo in store.active_lockouts(ACCOUNT, f.at(11))] == ["daily_loss"]


def test_reconcile_leaves_a_call_still_in_flight_alone(harness, store):
    """A periodic reconcile while a close is on its way must not mark it failed: it would be
    planned again, and when the first answer came back the store could not record it."""
    h = harness(policy("use stop_required(grace: 30s)"))
    h.auto = False
    h.feed(f.position(0, MNQ, 1, 21000))
    [close] = h.tick(f.at(30))
    h.engine.mark_sent(close, f.at(30))
    _, calls = h.reconcile(f.at(31))  # the broker has not closed it yet
    assert calls == [] and store.get_action(close.key).state == "sent"
    h.engine.finished(close, True, f.at(32))
    assert store.get_action(close.key).state == "confirmed"


@pytest.mark.parametrize("done_at_broker", [True, False])
def test_an_uncertain_outcome_is_never_resent_before_a_reconcile_verifies_it(harness, store, done_at_broker):
    h = harness(policy("use max_contracts_per_symbol(limits: {MNQ: 2})"))
    h.auto = False
    [cut] = h.feed(f.position(0, MNQ, 5, 21000))
    h.engine.mark_sent(cut, f.at(0))
    h.engine.finished(cut, None, f.at(1), "accepted, but the position still shows 5")
    assert store.get_action(cut.key).state == "sent"
    assert h.tick(f.at(10)) == [] and h.feed(f.quote(11, MNQ, 21001)) == []
    if done_at_broker:
        h.port.positions[MNQ]["size"] = 2
    _, calls = h.reconcile(f.at(20))
    assert store.get_action(cut.key).state == ("confirmed" if done_at_broker else "planned")
    assert [c.key for c in calls] == ([] if done_at_broker else [cut.key])


def test_after_a_restart_an_unconfirmed_call_is_verified_before_anything_is_resent(tmp_path):
    path = tmp_path / "state.db"
    sources = policy("use stop_required(grace: 30s)")
    with Store.open(path) as first_store:
        first = Harness(first_store, sources)
        first.auto = False
        first.feed(f.position(0, MNQ, 1, 21000), f.position(0, ES, 1, 6000))
        close_mnq, close_es = first.tick(f.at(30))
        first.engine.mark_sent(close_mnq, f.at(30))
        asyncio.run(first.port.send(close_mnq))  # reached the broker; the process dies before `finished`
        port = first.port  # the broker outlives riskc
    with Store.open(path) as store:
        second = Harness(store, sources)
        second.port = port
        _, calls = second.reconcile(f.at(35))
        assert store.get_action(close_mnq.key).state == "confirmed"  # found done: not resent
        assert [c.key for c in calls] == [close_es.key]  # planned, never sent: sent now, same key
        assert [c.kind for c in port.calls] == ["close", "close"]
        assert store.verify_audit().ok


def test_a_restart_keeps_the_grace_period_it_had(tmp_path):
    path = tmp_path / "state.db"
    sources = policy("use stop_required(grace: 30s)")
    with Store.open(path) as store:
        first = Harness(store, sources)
        first.feed(f.position(0, MNQ, 1, 21000))
        port = first.port
    with Store.open(path) as store:
        second = Harness(store, sources)
        second.port = port
        assert second.reconcile(f.at(20)) == ([f"position {MNQ}: book 0, broker 1"], [])
        assert store.get_timer(ACCOUNT, f"uncovered:{MNQ}").started_at == f.at(0)
        assert second.tick(f.at(29)) == []
        assert summary(second.tick(f.at(30))) == [("close", MNQ, None, None)]  # 30 s after the open, not the restart


def test_a_restart_drops_the_grace_period_of_a_position_closed_while_away(tmp_path):
    path = tmp_path / "state.db"
    sources = policy("use stop_required(grace: 30s)")
    with Store.open(path) as store:
        first = Harness(store, sources)
        first.feed(f.position(0, MNQ, 1, 21000), f.position(0, ES, 1, 6000))
        first.port.positions.pop(MNQ)  # closed at the broker; riskc died before it heard
        port = first.port
    with Store.open(path) as store:
        second = Harness(store, sources)
        second.port = port
        second.reconcile(f.at(20))
        assert [t.key for t in store.timers(ACCOUNT)] == [f"uncovered:{ES}"]


def test_a_day_that_ended_while_riskc_was_down_is_closed_at_the_restart(tmp_path):
    """Its end-of-day balance is the broker's balance less the new day's fills, exactly; an
    end-of-day trailing drawdown would otherwise trail a stale high."""
    path = tmp_path / "state.db"
    sources = policy("use trailing_drawdown(amount: $2,000, mode: end_of_day)")
    wednesday = Feed(account_id=ACCOUNT, start=dt.datetime(2025, 10, 29, 15, 0, tzinfo=dt.UTC))
    thursday = Feed(account_id=ACCOUNT, start=dt.datetime(2025, 10, 30, 15, 0, tzinfo=dt.UTC))
    with Store.open(path) as store:
        first = Harness(store, sources)
        first.feed(
            wednesday.account(0, 50000),
            wednesday.trade(1, 1, MNQ, side=SELL, pnl=500, fees=0),
            wednesday.account(2, 50500),
        )
    with Store.open(path) as store:  # Thursday: a losing trade happened while riskc was down
        second = Harness(store, sources)
        second.port.account = dict(thursday.account(0, "50299.63").args[0]["data"])
        second.port.trades = [dict(thursday.trade(0, 2, MNQ, side=SELL, pnl=-200, fees="0.37").args[0]["data"])]
        second.reconcile(thursday.at(1))
        closed = store.day_balance(ACCOUNT, dt.date(2025, 10, 29))
        assert (closed.eod_balance, store.eod_high_balance(ACCOUNT)) == (D("50500.00"), D("50500.00"))
        assert second.engine.book.eod_high_balance == D("50500.00")
        assert any(a.get("event") == "day_close_after_restart" for a in audit(store, "event"))


def test_a_restart_that_redoes_the_hour_before_a_close_does_not_invent_a_previous_day(tmp_path):
    """After a crash, the worker (like any redo) can reconcile at a time before a day close it has
    already committed. That close is today's, not an earlier one: riskc never followed the account
    the day before, so there is nothing to close there (the crash test's flaky extra
    ('2025-10-28', '50000.00') row)."""
    path = tmp_path / "state.db"
    sources = policy("use daily_loss(limit: $300)")
    wednesday = Feed(account_id=ACCOUNT, start=dt.datetime(2025, 10, 29, 21, 0, tzinfo=dt.UTC))
    with Store.open(path) as store:
        first = Harness(store, sources)
        first.feed(
            wednesday.account(0, 50000),
            wednesday.trade(1, 1, MNQ, side=SELL, pnl=-400, fees=0),
            wednesday.account(2, 49600),
        )
        first.tick(wednesday.at(3601))  # 22:00:01Z: the trading day of 2025-10-29 is closed
        assert store.day_balance(ACCOUNT, dt.date(2025, 10, 29)).eod_balance == D("49600.00")
        port = first.port
    with Store.open(path) as store:  # killed before the line was marked done: redone from 21:00:02Z
        second = Harness(store, sources)
        second.port = port
        second.reconcile(wednesday.at(2))
        assert store.day_balance(ACCOUNT, dt.date(2025, 10, 28)) is None
        assert not any(a.get("event") == "day_close_after_restart" for a in audit(store, "event"))


# -- alerts, malformed messages, the ledger ----------------------------------------------------


def test_an_alert_is_recorded_on_the_rising_edge_only(harness):
    h = harness(policy('rule careful\n  when day.realized_pnl < -$50\n  then alert "careful"\n  severity low'))
    h.feed(f.trade(1, 1, MNQ, side=SELL, pnl=-60, fees=0))
    h.tick(f.at(2))
    h.feed(f.trade(3, 2, MNQ, side=SELL, pnl=-1, fees=0))
    assert [r["action"] for r in h.records] == ["alert"] and len(h.alerts) == 1
    h.feed(f.trade(4, 3, MNQ, side=SELL, pnl=100, fees=0))  # recovered
    h.feed(f.trade(5, 4, MNQ, side=SELL, pnl=-100, fees=0))  # and again
    assert len(h.alerts) == 2


def test_a_malformed_message_is_counted_and_changes_nothing(harness, store):
    h = harness(policy("use daily_loss(limit: $100)"))
    h.feed(f.account(0, 50000))
    before = store.audit_records()
    data = {
        "id": 9,
        "accountId": ACCOUNT,
        "contractId": MNQ,
        "side": 1,
        "size": 1,
        "price": "n/a",
        "profitAndLoss": -500,
    }
    bad = Message(f.at(1), "user", "GatewayUserTrade", [{"action": 1, "data": data}])
    with pytest.raises(DECODE_ERRORS):  # the adapter refuses it: the engine never sees a half-read trade
        decode(bad)
    replay = Replay(h.engine.policies, store, account_id=ACCOUNT)
    replay.engine = h.engine
    replay.feed(bad)
    assert h.engine.malformed == 1 and len(replay.summary.malformed) == 1
    assert store.day_totals(ACCOUNT, "2025-10-29").trade_count == 0 and store.audit_records() == before


def test_another_accounts_trade_stays_out_of_the_ledger(harness, store):
    h = harness(policy("use daily_loss(limit: $100)"))
    h.feed(f.account(0, 50000), f.trade(1, 5, MNQ, side=SELL, pnl=-500, fees=1, account_id=999))
    assert store.day_totals(ACCOUNT, "2025-10-29").trade_count == 0
    assert store.active_lockouts(ACCOUNT, f.at(2)) == []


def test_the_engine_starts_from_the_stored_high_water_balance(tmp_path):
    with Store.open(tmp_path / "state.db") as store:
        store.record_balance(ACCOUNT, f.at(-86400), "2025-10-28", D(52000))
        h = Harness(store, policy("use trailing_drawdown(amount: $2,000, mode: intraday)"))
        h.auto = False
        calls = h.feed(f.account(0, 50000), f.position(0, MNQ, 1, 21000))
        assert summary(calls) == [("close", MNQ, None, None)]  # 50,000 <= 52,000 - 2,000


# -- the trading day ---------------------------------------------------------------------------


def test_the_day_roll_closes_the_day_in_the_store_and_ends_next_trading_day_lockouts(harness, store):
    """Monday 2025-11-03, the first day after DST ended: the day ends at 17:00 CST = 23:00Z."""
    g = Feed(account_id=ACCOUNT, start=dt.datetime(2025, 11, 3, 15, 0, tzinfo=dt.UTC))
    boundary = dt.datetime(2025, 11, 3, 23, 0, tzinfo=dt.UTC)
    h = harness(policy("use daily_loss(limit: $100)"))
    h.feed(g.account(0, 50000), g.position(0, ES, 1, 6000), g.trade(1, 1, MNQ, side=SELL, pnl=-120, fees="0.37"))
    h.feed(g.account(2, "49879.63"), g.quote(3, ES, 6004))  # +$200 open: flatten is in flight in real life
    h.port.positions.clear()
    h.feed(g.position(4, ES, 1, 6000))  # still reported: the close has not filled
    [lockout] = store.active_lockouts(ACCOUNT, g.at(5))
    assert lockout.until == boundary

    h.tick(boundary - dt.timedelta(seconds=1))
    assert store.day_balance(ACCOUNT, "2025-11-03").eod_balance is None
    assert h.engine.book.day.trades == 1
    h.tick(boundary)
    closed = store.day_balance(ACCOUNT, "2025-11-03")
    # the EOD balance is the balance at the boundary, open P&L included
    assert (closed.eod_balance, closed.eod_high_water) == (D("50079.63"), D("50079.63"))
    assert store.active_lockouts(ACCOUNT, boundary) == []
    day = h.engine.book.day
    assert (day.trading_day, day.trades, day.realized) == (dt.date(2025, 11, 4), 0, Decimal(0))
    assert [e for e in audit(store, "event") if e["event"] == "day_roll"] == [
        {
            "event": "day_roll",
            "trading_day": "2025-11-03",
            "realized_pnl": "-120.37",
            "trades": 1,
            "eod_high_balance": "50079.63",
        }
    ]
    # A fresh day: the same breach rule is quiet until the new day loses again.
    assert h.tick(boundary + dt.timedelta(seconds=1)) == []
    assert h.feed(g.position(8 * 3600 + 5, MNQ, 1, 21000)) == []


# -- the trading state -----------------------------------------------------------------------


def test_a_lockout_halts_the_account_and_its_end_makes_it_active_again(harness, store):
    h = harness(policy("use daily_loss(limit: $100)", "use cooldown_after_loss(loss: $100, cooldown: 15m)"))
    h.feed(*LOSS)
    states = [r for r in h.records if r["action"] == "trading_state"]
    assert [(r["state"], r["rule"]) for r in states] == [("halted", "daily_loss")]
    assert states[0]["until"] == "2025-10-29T22:00:00+00:00" and "account locked by daily_loss" in states[0]["reason"]
    assert h.engine.trading.state == "halted"
    h.tick(dt.datetime(2025, 10, 29, 22, 0, 1, tzinfo=dt.UTC))  # the next trading day: the lockout has ended
    assert [(r["state"], r["ts"]) for r in h.records if r["action"] == "trading_state"][1:] == [
        ("active", "2025-10-29T22:00:01+00:00")
    ]
    assert h.engine.trading.state == "active"
    audited = [a for d in audit(store, "decision") for a in d["actions"] if a["action"] == "trading_state"]
    assert [a["state"] for a in audited] == ["halted", "active"]


def test_a_symbol_block_leaves_exits_only(harness):
    h = harness(policy("use symbol_block(symbols: [CL])"))
    h.feed(f.position(0, MNQ, 1, 21000), f.position(1, CL, 1, 60))
    [state] = [r for r in h.records if r["action"] == "trading_state"]
    assert (state["state"], state["rule"]) == ("reducing", "symbol_block")
    assert state["reason"].startswith("CL blocked (exits only)")


def test_the_state_is_recorded_once_per_change_not_per_event(harness):
    h = harness(policy("use daily_loss(limit: $100)"))
    h.feed(*LOSS)
    for second in range(2, 30):
        h.feed(f.quote(second, MNQ, 21000 + second))
        h.tick(f.at(second))
    assert [r["state"] for r in h.records if r["action"] == "trading_state"] == ["halted"]


# -- a rule that fails at run time -----------------------------------------------------------


def test_a_rule_that_divides_by_zero_is_located_in_its_file_audited_and_fails_closed(harness, store):
    source = policy(
        "  on_error flatten",
        "rule loss_per_trade",
        "  when day.realized_pnl / day.trades < -$100",
        '  then alert "losing too much per trade"',
    )
    h = harness(source)
    calls = h.feed(f.account(0, 50000), f.position(1, MNQ, 1, 21000))  # no trade yet: day.trades is 0
    assert summary(calls) == [("close", MNQ, None, None)]
    [flatten] = [r for r in h.records if r["action"] == "flatten"]
    assert flatten["reason"].startswith("p0.risk:4:8: loss_per_trade could not be evaluated (an undefined result")
    audited = [a["reason"] for d in audit(store, "decision") for a in d["actions"] if a["action"] == "flatten"]
    assert audited and audited[0] == flatten["reason"]


# -- stale prices ------------------------------------------------------------------------------


@pytest.mark.parametrize("on_error", ["alert", "flatten"])
def test_rules_that_read_prices_are_unevaluable_once_the_prices_are_older_than_stale_after(harness, on_error):
    """PRODUCT.md §8: the market feed is down; REST keeps sizes current. After stale_after (10 s)
    position_loss (reads unrealized P&L) is a rule that cannot be evaluated (on_error decides);
    max_contracts (reads sizes) keeps cutting; daily_loss (realized P&L) keeps running."""
    h = harness(
        f'policy "test"\n  on_error {on_error}\n'
        "use position_loss(limit: $100)\nuse max_contracts(limit: 2)\nuse daily_loss(limit: $500)\n"
    )
    h.feed(f.account(0, 50000), f.position(0, MNQ, 1, 21000), f.quote(1, MNQ, 21000))
    h.engine.prices_down_at = f.at(2)
    assert summary(h.tick(f.at(11))) == []  # 9 s: the marks are still current enough
    calls = h.tick(f.at(12))
    failed = [r for r in h.records if r["rule"] == "position_loss"]
    assert failed and "prices are 10s old" in failed[0]["reason"] and f"on_error {on_error}" in failed[0]["reason"]
    assert summary(calls) == ([("close", MNQ, None, None)] if on_error == "flatten" else [])
    if on_error == "alert":
        assert summary(h.feed(f.position(13, MNQ, 4, 21000))) == [("partial_close", MNQ, None, 2)]
        h.engine.prices_down_at = None  # the market feed is back
        before = len(h.records)
        assert summary(h.tick(f.at(20))) == [] and len(h.records) == before


def test_rules_that_read_prices_are_found_in_the_syntax_tree(harness):
    from riskc.engine.enforce.stale_prices import price_rules

    h = harness(policy("use position_loss(limit: $100)", "use max_contracts(limit: 2)", "use daily_loss(limit: $500)"))
    program = h.engine.policies.programs[0]
    assert {program.rules[i].id for i in price_rules(program)} == {"position_loss"}


# -- no rollback by an older read --------------------------------------------------------------


def test_a_rest_read_older_than_the_stream_does_not_set_a_position_back(harness):
    """The read started at t=5; at t=6 the stream said the position is now 3. The REST state
    (read before that, still saying 1) must not set it back."""
    h = harness(policy("use max_contracts(limit: 5)"))
    h.feed(f.account(0, 50000), f.position(1, MNQ, 1, 21000), f.position(6, MNQ, 3, 21000))
    old = broker_state(
        [{"id": 1, "accountId": ACCOUNT, "contractId": MNQ, "type": 1, "size": 1}], [], [], None, f.at(5)
    )
    h.engine.reconcile(old, f.at(5))
    assert h.engine.book.positions[MNQ].size == 3
    h.engine.reconcile(old, f.at(7))  # a read that started after the stream's word: it wins
    assert h.engine.book.positions[MNQ].size == 1


def test_an_order_missing_from_one_read_is_ended_only_when_confirmed_gone(harness):
    h = harness(policy("use max_contracts(limit: 5)"))
    h.feed(
        f.account(0, 50000), f.position(1, MNQ, 1, 21000), f.order(2, 10, MNQ, type=STOP, side=SELL, size=1, stop=20990)
    )
    position = [{"id": 1, "accountId": ACCOUNT, "contractId": MNQ, "type": 1, "size": 1}]
    h.engine.reconcile(broker_state(position, [], [], None, f.at(5)), f.at(5), gone=frozenset())
    assert 10 in h.engine.book.orders  # placed while the read ran, say: not recorded gone
    h.engine.reconcile(broker_state(position, [], [], None, f.at(6)), f.at(6), gone=frozenset({10}))
    assert 10 not in h.engine.book.orders


def test_an_order_confirmed_gone_is_ended_even_when_the_brokers_clock_is_ahead(harness):
    """Clock skew: the broker stamps updates 30 s ahead of riskc. A reconciliation at riskc's
    time must still end an order two reads confirmed gone (not drop it as an older update)."""
    h = harness(policy("use max_contracts(limit: 5)"))
    stop = f.order(2, 10, MNQ, type=STOP, side=SELL, size=1, stop=20990)
    data = stop.args[0]["data"] if isinstance(stop.args[0], dict) and "data" in stop.args[0] else stop.args[0]
    data["updateTimestamp"] = f.at(32).isoformat()  # the broker's clock, 30 s ahead
    h.feed(f.account(0, 50000), f.position(1, MNQ, 1, 21000), stop)
    assert 10 in h.engine.book.orders
    position = [{"id": 1, "accountId": ACCOUNT, "contractId": MNQ, "type": 1, "size": 1}]
    h.engine.reconcile(broker_state(position, [], [], None, f.at(5)), f.at(5), gone=frozenset({10}))
    assert 10 not in h.engine.book.orders
