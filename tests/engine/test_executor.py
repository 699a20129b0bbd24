"""The executor's policy (engine/broker/executor.py) over a scripted in-memory port: verify after
every send, resend only what did not take effect, never resend a non-idempotent call the broker
accepted, deterministic backoff. No SDK, no network, no real sleeping."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from riskc.engine.adapters.port import BrokerCall, BrokerError, BrokerState
from riskc.engine.adapters.projectx.decode import broker_state
from riskc.engine.enforce.executor import Outcome, Step, execute

ACCT = 13298777
MNQ = "CON.F.US.MNQ.Z25"


NOW = dt.datetime(2025, 10, 29, 15, 0, tzinfo=dt.UTC)


def position(size: int, contract: str = MNQ) -> dict[str, Any]:
    return {"id": 1, "accountId": ACCT, "contractId": contract, "type": 1 if size > 0 else 2, "size": abs(size)}


class ScriptedPort:
    """A broker whose sends follow a script: each entry is ``"ok"`` (apply, accept), ``"lost"``
    (apply, then fail as if the reply was lost), ``"error"`` (fail, no effect), ``"reject"``
    (rejected, no effect), ``"lie"`` (accept, no effect), ``"hang"`` (never answers, no effect)."""

    name = "scripted"

    def __init__(self, size: int = 2, orders: list[dict[str, Any]] | None = None, *, script: list[str]) -> None:
        self.size = size
        self.orders = {o["id"]: dict(o) for o in orders or []}
        self.script = list(script)
        self.sent: list[BrokerCall] = []
        self.reads = 0
        self.unreadable = 0  # the next n state reads fail
        self.lag = 0  # the next n state reads show the state before the last send

    async def send(self, call: BrokerCall) -> dict[str, Any] | None:
        self.sent.append(call)
        step = self.script.pop(0)
        if step == "hang":
            await asyncio.sleep(3600)
        self._before = (self.size, {k: dict(v) for k, v in self.orders.items()})
        if step in ("ok", "lost"):
            self.apply(call)
        if step == "lost":
            raise BrokerError(f"{call.describe()}: outcome unknown")
        if step == "error":
            raise BrokerError(f"{call.describe()}: HTTP 500")
        if step == "reject":
            raise BrokerError(f"{call.describe()}: rejected: Invalid size", retryable=False)
        return {"success": True, **({"order_id": 77} if call.kind == "place_stop" else {})}

    def apply(self, call: BrokerCall) -> None:
        match call.kind:
            case "close":
                self.size = 0
            case "partial_close":
                self.size -= (call.size or 0) if self.size > 0 else -(call.size or 0)
            case "cancel":
                self.orders.pop(call.order_id, None)
            case "modify_stop":
                self.orders[call.order_id]["stopPrice"] = float(call.stop_price)  # type: ignore[arg-type]
            case "place_stop":
                self.orders[77] = {
                    "id": 77,
                    "contractId": call.contract_id,
                    "type": 4,
                    "status": 1,
                    "side": 0 if call.side == "buy" else 1,
                    "size": call.size,
                    "stopPrice": float(call.stop_price),
                }  # type: ignore[arg-type]

    async def state(self, account_id: int) -> BrokerState:
        self.reads += 1
        if self.unreadable:
            self.unreadable -= 1
            raise BrokerError("HTTP 503 on /Position/searchOpen")
        size, orders = self.size, self.orders
        if self.lag:
            self.lag -= 1
            size, orders = self._before
        return broker_state([position(size)] if size else [], list(orders.values()), [], None, NOW)


class Clock:
    def __init__(self) -> None:
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


async def run(port: ScriptedPort, call: BrokerCall, **kwargs: Any) -> tuple[Outcome, list[Step | Outcome], Clock]:
    clock, events = Clock(), []
    kwargs = {"timeout": 0.2, "retries": 2, "backoff": 0.5, "rng": lambda: 0.5, "sleep": clock.sleep} | kwargs
    outcome = await execute(port, call, audit=events.append, **kwargs)
    return outcome, events, clock


CLOSE = BrokerCall("close", ACCT, contract_id=MNQ, expect_size=0, key="k1", rule="daily_loss")
REDUCE = BrokerCall("partial_close", ACCT, contract_id=MNQ, size=2, expect_size=1, key="k2")


async def test_accepted_and_visible_is_confirmed_after_one_read() -> None:
    port = ScriptedPort(2, script=["ok"])
    outcome, events, clock = await run(port, CLOSE)
    assert (outcome.status, outcome.attempts, outcome.result) == ("confirmed", 1, {"success": True})
    assert [(e.phase, e.ok) for e in events if isinstance(e, Step)] == [
        ("sending", None),
        ("sent", True),
        ("verified", True),
    ]
    assert events[-1] is outcome and port.reads == 1 and clock.slept == []


async def test_lost_reply_but_position_gone_is_not_resent() -> None:
    port = ScriptedPort(2, script=["lost"])
    outcome, _, _ = await run(port, CLOSE)
    assert (outcome.status, outcome.attempts, len(port.sent)) == ("confirmed", 1, 1)


async def test_failed_send_with_position_still_there_is_resent_after_a_pause_and_a_second_look() -> None:
    port = ScriptedPort(2, script=["error", "ok"])
    outcome, events, clock = await run(port, CLOSE)
    assert (outcome.status, outcome.attempts, len(port.sent)) == ("confirmed", 2, 2)
    phases = [(e.phase, e.attempt, e.ok) for e in events if isinstance(e, Step)]
    assert phases == [
        ("sending", 1, None),
        ("sent", 1, False),
        ("verified", 1, False),
        ("verified", 1, False),
        ("sending", 2, None),
        ("sent", 2, True),
        ("verified", 2, True),
    ]
    assert clock.slept == [0.375]  # 0.5 * 2**0 * (0.5 + 0.5/2)


async def test_retries_run_out_into_failed_with_growing_backoff() -> None:
    port = ScriptedPort(2, script=["error"] * 3)
    outcome, _, clock = await run(port, CLOSE, retries=2, max_backoff=0.8)
    assert (outcome.status, outcome.attempts, outcome.retryable) == ("failed", 3, True)
    assert "HTTP 500" in outcome.detail and "position is 2" in outcome.detail
    assert clock.slept == pytest.approx([0.375, 0.6, 0.6])  # 0.5, 1 and 2 capped at 0.8; times 0.75


async def test_rejection_is_failed_at_once_and_not_retryable() -> None:
    port = ScriptedPort(2, script=["reject"])
    outcome, _, clock = await run(port, REDUCE)
    assert (outcome.status, outcome.attempts, outcome.retryable, clock.slept) == ("failed", 1, False, [])
    assert "Invalid size" in outcome.detail


async def test_partial_close_accepted_but_not_visible_is_uncertain_and_never_resent() -> None:
    port = ScriptedPort(3, script=["lie", "ok"])
    outcome, _, _ = await run(port, REDUCE)
    assert (outcome.status, len(port.sent)) == ("uncertain", 1)
    assert "not visible" in outcome.detail and port.size == 3


async def test_close_accepted_but_not_visible_is_resent_because_close_is_idempotent() -> None:
    port = ScriptedPort(3, script=["lie", "ok"])
    outcome, _, _ = await run(port, CLOSE)
    assert (outcome.status, len(port.sent)) == ("confirmed", 2)


async def test_a_lagging_state_read_does_not_cause_a_second_partial_close() -> None:
    port = ScriptedPort(3, script=["lost", "ok"])
    port.lag = 1  # the first read after the send still shows 3 contracts
    outcome, _, _ = await run(port, REDUCE)
    assert (outcome.status, len(port.sent), port.size) == ("confirmed", 1, 1)


async def test_unreadable_state_means_no_resend_and_uncertain() -> None:
    port = ScriptedPort(2, script=["error", "ok"])
    port.unreadable = 10
    outcome, _, _ = await run(port, CLOSE, checks=3)
    assert (outcome.status, len(port.sent), port.reads) == ("uncertain", 1, 3)
    assert "cannot verify" in outcome.detail


async def test_state_readable_again_after_a_pause_decides() -> None:
    port = ScriptedPort(2, script=["lost"])
    port.unreadable = 1
    outcome, _, _ = await run(port, CLOSE)
    assert (outcome.status, len(port.sent)) == ("confirmed", 1)


async def test_a_hanging_send_times_out_and_is_verified() -> None:
    port = ScriptedPort(2, script=["hang", "ok"])
    outcome, events, _ = await run(port, CLOSE, timeout=0.05)
    sent = [e for e in events if isinstance(e, Step) and e.phase == "sent"]
    assert "no answer within 0.05s" in sent[0].detail
    assert (outcome.status, outcome.attempts) == ("confirmed", 2)


async def test_partial_close_without_expect_size_reads_a_baseline_first() -> None:
    port = ScriptedPort(5, script=["lost"])
    call = BrokerCall("partial_close", ACCT, contract_id=MNQ, size=2)
    outcome, _, _ = await run(port, call)
    assert (outcome.status, port.size) == ("confirmed", 3)


@pytest.mark.parametrize(
    "script, status, sends", [(["ok"], "confirmed", 1), (["error", "ok"], "confirmed", 2), (["reject"], "failed", 1)]
)
async def test_cancel(script: list[str], status: str, sends: int) -> None:
    port = ScriptedPort(0, [{"id": 9, "contractId": MNQ, "type": 4, "status": 1, "side": 1, "size": 2}], script=script)
    outcome, _, _ = await run(port, BrokerCall("cancel", ACCT, contract_id=MNQ, order_id=9))
    assert (outcome.status, len(port.sent)) == (status, sends)


async def test_modify_stop_matches_within_half_a_tick() -> None:
    order = {"id": 9, "contractId": MNQ, "type": 4, "status": 1, "side": 1, "size": 2, "stopPrice": 26236.0}
    port = ScriptedPort(2, [order], script=["lost"])
    port.apply = lambda call: port.orders[9].update(stopPrice=26242.25)  # the broker rounded to the tick
    outcome, _, _ = await run(
        port, BrokerCall("modify_stop", ACCT, contract_id=MNQ, order_id=9, stop_price=Decimal("26242.3"))
    )
    assert (outcome.status, len(port.sent)) == ("confirmed", 1)


async def test_modify_stop_of_a_gone_order_fails_after_the_rejection() -> None:
    port = ScriptedPort(2, [], script=["reject"])
    outcome, _, _ = await run(
        port, BrokerCall("modify_stop", ACCT, contract_id=MNQ, order_id=9, stop_price=Decimal("26242.25"))
    )
    assert (outcome.status, outcome.retryable) == ("failed", False) and "not working" in outcome.detail


async def test_place_stop_lost_reply_finds_the_working_stop_and_does_not_place_a_second() -> None:
    port = ScriptedPort(2, script=["lost", "ok"])
    call = BrokerCall("place_stop", ACCT, contract_id=MNQ, side="sell", size=2, stop_price=Decimal("26236.00"))
    outcome, _, _ = await run(port, call)
    assert (outcome.status, len(port.sent)) == ("confirmed", 1)


async def test_place_stop_that_failed_is_placed_again() -> None:
    port = ScriptedPort(2, script=["error", "ok"])
    call = BrokerCall("place_stop", ACCT, contract_id=MNQ, side="sell", size=2, stop_price=Decimal("26236"))
    outcome, _, _ = await run(port, call)
    assert (outcome.status, outcome.result) == ("confirmed", {"success": True, "order_id": 77})


async def test_a_failing_audit_hook_and_a_buggy_port_do_not_escape() -> None:
    class Buggy(ScriptedPort):
        async def send(self, call: BrokerCall) -> dict[str, Any] | None:
            self.sent.append(call)
            raise KeyError("bug")

    def hook(event: object) -> None:
        raise RuntimeError("store is locked")

    port = Buggy(2, script=[])
    outcome = await execute(port, CLOSE, retries=1, audit=hook, rng=lambda: 0.0, sleep=Clock().sleep)
    assert (outcome.status, outcome.attempts) == ("failed", 2) and "KeyError" in outcome.detail


async def test_async_audit_hook_runs_before_the_request_leaves() -> None:
    seen: list[str] = []

    class Watching(ScriptedPort):
        async def send(self, call: BrokerCall) -> dict[str, Any] | None:
            seen.append("send")
            return await super().send(call)

    async def hook(event: Step | Outcome) -> None:
        await asyncio.sleep(0)
        seen.append(event.phase if isinstance(event, Step) else event.status)

    await execute(Watching(2, script=["ok"]), CLOSE, audit=hook, sleep=Clock().sleep)
    assert seen == ["sending", "send", "sent", "verified", "confirmed"]


async def test_outcome_record_for_the_audit_log() -> None:
    port = ScriptedPort(2, script=["reject"])
    outcome, _, _ = await run(port, CLOSE)
    record = outcome.to_record()
    assert record["status"] == "failed" and record["retryable"] is False
    assert record["call"] == "close" and record["contract_id"] == MNQ and record["key"] == "k1"


async def test_cancelling_the_task_cancels_execute() -> None:
    port = ScriptedPort(2, script=["hang"])
    task = asyncio.create_task(execute(port, CLOSE, timeout=60))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class SlowPort(ScriptedPort):
    """A slow broker: a send times out on riskc's side, and its effect lands ``late_reads`` state
    reads later (the request was still in flight: the SDK's own timeout is longer)."""

    def __init__(self, size: int, late_reads: int, *, cut_first: int | None = None) -> None:
        super().__init__(size, script=[])
        self.late_reads = late_reads
        self.pending: list[tuple[int, BrokerCall]] = []
        self.cut_first = cut_first  # the first send lands with this size instead (a partial fill)

    async def send(self, call: BrokerCall) -> dict[str, Any] | None:
        self.sent.append(call)
        if len(self.sent) == 1:
            landing = call if self.cut_first is None else BrokerCall(**{**_fields(call), "size": self.cut_first})
            self.pending.append((self.reads + self.late_reads, landing))
            raise BrokerError(f"{call.describe()}: no answer within 5s; outcome unknown")
        self.apply(call)
        return {"success": True}

    async def state(self, account_id: int) -> BrokerState:
        for due, call in list(self.pending):
            if self.reads >= due:
                self.pending.remove((due, call))
                self.apply(call)
        return await super().state(account_id)


def _fields(call: BrokerCall) -> dict[str, Any]:
    return {name: getattr(call, name) for name in BrokerCall.__slots__}


async def test_an_effect_that_lands_after_the_timeout_is_not_resent_within_the_window() -> None:
    """Position 4, limit 2: the cut of 2 lands 7 s after it was sent, after riskc's 5 s timeout;
    the executor keeps looking for the window (10 s) and the position ends at 2, not 0."""
    port = SlowPort(4, late_reads=4)
    cut = BrokerCall("partial_close", ACCT, contract_id=MNQ, size=2, expect_size=2, key="k3")
    outcome, _, clock = await run(port, cut, timeout=5, window=10, backoff=1, max_backoff=4)
    assert (outcome.status, len(port.sent), port.size) == ("confirmed", 1, 2)
    assert sum(clock.slept) < 10  # it landed inside the window


async def test_not_resent_before_the_window_has_passed() -> None:
    port = SlowPort(4, late_reads=1000)
    cut = BrokerCall("partial_close", ACCT, contract_id=MNQ, size=2, expect_size=2, key="k3")
    outcome, events, clock = await run(port, cut, timeout=5, window=10, backoff=1, max_backoff=4, retries=1)
    resend = next(i for i, e in enumerate(events) if isinstance(e, Step) and e.phase == "sending" and e.attempt == 2)
    assert sum(clock.slept) >= 10 and resend > 0
    assert (outcome.status, port.size) == ("confirmed", 2)


async def test_a_resent_partial_close_is_sized_from_the_brokers_current_size() -> None:
    port = SlowPort(4, late_reads=1, cut_first=1)  # of the cut of 3, one contract went through
    cut = BrokerCall("partial_close", ACCT, contract_id=MNQ, size=3, expect_size=1, key="k4")
    outcome, _, _ = await run(port, cut, timeout=5, window=1)
    assert [c.size for c in port.sent] == [3, 2]
    assert (outcome.status, port.size) == ("confirmed", 1)


async def test_the_window_defaults_to_the_ports_settle_window() -> None:
    port = SlowPort(4, late_reads=6)
    port.settle_window = 12.0  # type: ignore[attr-defined]
    cut = BrokerCall("partial_close", ACCT, contract_id=MNQ, size=2, expect_size=2, key="k3")
    outcome, _, _ = await run(port, cut, timeout=1, backoff=1, max_backoff=4)
    assert (outcome.status, len(port.sent), port.size) == ("confirmed", 1, 2)


async def test_a_stop_already_working_is_not_placed_again() -> None:
    stop = {"id": 5, "contractId": MNQ, "type": 4, "status": 1, "side": 1, "size": 2, "stopPrice": 26236.0}
    port = ScriptedPort(2, [stop], script=["ok"])
    call = BrokerCall("place_stop", ACCT, contract_id=MNQ, side="sell", size=2, stop_price=Decimal("26236"))
    outcome, _, _ = await run(port, call)
    assert (outcome.status, outcome.attempts, port.sent) == ("confirmed", 0, [])
    assert "already in place" in outcome.detail


async def test_a_stop_already_at_its_price_is_not_modified_again() -> None:
    stop = {"id": 5, "contractId": MNQ, "type": 4, "status": 1, "side": 1, "size": 2, "stopPrice": 26240.0}
    port = ScriptedPort(2, [stop], script=["ok"])
    call = BrokerCall("modify_stop", ACCT, contract_id=MNQ, order_id=5, stop_price=Decimal("26240"))
    outcome, _, _ = await run(port, call)
    assert (outcome.status, port.sent) == ("confirmed", [])


async def test_a_call_refused_before_the_broker_acted_is_resent_without_waiting_the_window() -> None:
    class Refused(ScriptedPort):
        async def send(self, call: BrokerCall) -> dict[str, Any] | None:
            if not self.sent:
                self.sent.append(call)
                raise BrokerError("close: the Gateway rejected the session token (401)", unsent=True)
            return await super().send(call)

    port = Refused(2, script=["ok"])
    outcome, _, clock = await run(port, CLOSE, window=30)
    assert (outcome.status, len(port.sent), port.size) == ("confirmed", 2, 0)
    assert sum(clock.slept) < 30
