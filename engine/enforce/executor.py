"""Carry out one broker call: send it with a timeout, check its effect in the broker's state, and
resend only what did not take effect (PRODUCT.md §8). Shared by every ``BrokerPort``; no SDK here.

Why verify every time: the Gateway's answer is not the truth. A close can take effect while its
reply is lost (a timeout, a 500), the SDK's own close helpers swallow errors, and a reply saying
"success" is only a promise. Why not simply resend: a partial close or a new stop sent twice acts
twice. So after every send, whatever it returned, ``execute`` reads ``port.state()``:

- the effect is there: ``confirmed``;
- the Gateway rejected the call and the effect is not there: ``failed`` (not retryable);
- the send failed or its outcome is unknown: keep reading the state (exponential backoff with
  jitter) for a *window* at least as long as the request could still be in flight (the port's
  ``settle_window``: the SDK's own request timeout, which a shorter ``timeout`` here does not
  stop), and resend only if the effect is still missing after it, up to ``retries`` times. A
  resent ``partial_close`` is sized from the broker's current size (what is there minus what
  should be left), never the planned cut again;
- ``place_stop`` and ``modify_stop`` look at the working orders before the first send: a stop
  already there (placed by an earlier attempt, before a crash) is not placed again;
- the Gateway accepted a call that is not idempotent (``partial_close``, ``place_stop``) but the
  state does not show it even after waiting: ``uncertain``, never resent;
- the state cannot be read: no resend (it might act twice); ``uncertain`` once the checks run out.

How an ``Outcome`` maps onto the store's action states (engine/store/actions.py): the hook's
first ``Step("sending")`` is the moment for ``mark_sent`` (it runs before the request leaves);
``confirmed`` → ``mark_confirmed(result=outcome.result)``; ``failed`` →
``mark_failed(detail, retryable=outcome.retryable)``; ``uncertain`` → leave the action ``sent``:
it is among ``unconfirmed_actions()`` and the next reconcile verifies it, exactly as after a crash.

``execute`` never raises (a hook that raises is logged and ignored), except that cancelling the
task that runs it cancels it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from riskc.engine.adapters.port import BrokerCall, BrokerError, BrokerPort, BrokerState
from riskc.engine.core.events import STOP_TYPES, SUSPENDED, OrderUpdate
from riskc.engine.core.events import WORKING as WORKING_ORDERS
from riskc.engine.core.instruments import DEFAULT_INSTRUMENTS, Instruments, UnknownInstrument, symbol_of

log = logging.getLogger("riskc.executor")

Status = Literal["confirmed", "failed", "uncertain"]
IDEMPOTENT = frozenset({"close", "cancel", "modify_stop"})  # sending twice does no harm
WORKING = WORKING_ORDERS | SUSPENDED  # an order a cancel has not taken away yet
LOOK_FIRST = frozenset({"place_stop", "modify_stop"})  # a stop already in place is not sent again
MAX_EXTRA_READS = 30  # a bound on the reads of one window, whatever the pacing


@dataclass(frozen=True, slots=True)
class Step:
    """One thing ``execute`` did, for the audit hook. ``phase``: ``sending`` (just before a
    request leaves), ``sent`` (``ok``: the broker accepted it), ``verified`` (``ok``: the effect
    is in the broker's state; None: the state could not be read)."""

    call: BrokerCall
    phase: Literal["sending", "sent", "verified"]
    attempt: int
    ok: bool | None = None
    detail: str = ""
    result: dict[str, Any] | None = None

    def to_record(self) -> dict[str, Any]:
        record = {"phase": self.phase, "attempt": self.attempt, "ok": self.ok, "detail": self.detail}
        return record | ({"result": self.result} if self.result else {})


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a call ended. ``attempts``: requests sent. ``result``: the broker's last accepting
    reply, if any. ``retryable``: for ``failed``, whether sending it again later could work."""

    call: BrokerCall
    status: Status
    attempts: int
    detail: str
    result: dict[str, Any] | None = None
    retryable: bool = True

    @property
    def confirmed(self) -> bool:
        return self.status == "confirmed"

    def to_record(self) -> dict[str, Any]:
        record = {"status": self.status, "attempts": self.attempts, "detail": self.detail} | self.call.to_record()
        if self.result:
            record["result"] = self.result
        if self.status == "failed":
            record["retryable"] = self.retryable
        return record


Hook = Callable[[Step | Outcome], None | Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Reply:
    ok: bool
    detail: str
    result: dict[str, Any] | None = None
    rejected: bool = False  # the broker said no: the call did not and will not take effect
    unsent: bool = False  # refused before the broker acted (a rejected token): resend once verified


@dataclass(frozen=True, slots=True)
class _Verdict:
    done: bool | None  # None: the state could not be read
    detail: str


async def execute(
    port: BrokerPort,
    call: BrokerCall,
    *,
    timeout: float = 10.0,
    retries: int = 2,
    backoff: float = 0.5,
    max_backoff: float = 8.0,
    checks: int = 3,
    window: float | None = None,
    audit: Hook | None = None,
    instruments: Instruments = DEFAULT_INSTRUMENTS,
    rng: Callable[[], float] = random.random,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    """Send ``call`` through ``port`` until its effect shows in ``port.state()`` (module doc).

    ``timeout`` bounds each send and each state read; ``retries`` is how many times it may be
    resent; ``checks`` (at least 2) how many unreadable state reads may follow one send before
    deciding. ``window``: how long after a send whose outcome is unknown its effect may still
    appear (default: the larger of ``timeout`` and the port's ``settle_window``); the call is not
    resent before that much time (the send's own duration plus the pauses) has passed. Pauses grow
    as ``backoff * 2**n`` (capped at ``max_backoff``), each scaled by a factor in [0.5, 1) drawn
    from ``rng``; ``sleep`` waits and ``clock`` times the send (inject them for fast, deterministic
    tests)."""
    if window is None:
        window = max(timeout, float(getattr(port, "settle_window", 0.0) or 0.0))
    pacing = _Pacing(backoff, max_backoff, rng, sleep)
    run = _Execution(port, call, timeout, audit, instruments, pacing, window, clock)
    outcome = await run.execute(max(0, retries), max(2, checks))
    await run.tell(outcome)
    return outcome


def took_effect(call: BrokerCall, state: BrokerState, instruments: Instruments = DEFAULT_INSTRUMENTS) -> bool:
    """Whether ``state`` shows ``call`` done: the one check used after a send, after a crash
    (planned-but-unconfirmed actions) and by the replay's simulated broker."""
    return _Execution(None, call, 0.0, None, instruments, None).effect(state)[0]  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class _Pacing:
    backoff: float
    max_backoff: float
    rng: Callable[[], float]
    sleep: Callable[[float], Awaitable[Any]]

    def delay(self, n: int) -> float:
        return min(self.max_backoff, self.backoff * 2**n) * (0.5 + self.rng() / 2)


class _Execution:
    def __init__(
        self,
        port: BrokerPort,
        call: BrokerCall,
        timeout: float,
        audit: Hook | None,
        instruments: Instruments,
        pacing: _Pacing | None,
        window: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.port, self.call, self.timeout, self.audit = port, call, timeout, audit
        self.instruments = instruments
        self.pacing, self.window, self.clock = pacing, window, clock
        self.pauses = 0
        self.waited = 0.0  # since the last send left: its duration plus the pauses after it
        self.expect: int | None = None if call.expect_size is None else abs(call.expect_size)
        self.order_id: Any = None  # of a placed stop, from the broker's reply
        self.last: BrokerState | None = None  # the last state read
        self.sending = call  # what goes out: a resent partial close is resized

    async def execute(self, retries: int, checks: int) -> Outcome:
        if self.call.kind == "partial_close" and self.expect is None and not await self._baseline():
            return Outcome(self.call, "failed", 0, "cannot read the position to size the partial close")
        if self.call.kind in LOOK_FIRST:
            already = await self.verify(0)
            if already.done:
                return Outcome(self.call, "confirmed", 0, f"already in place: {already.detail}")
        accepted: dict[str, Any] | None = None
        attempt = 0
        while True:
            attempt += 1
            await self.tell(Step(self.sending, "sending", attempt))
            started = self.clock()
            reply = await self.send()
            self.waited = max(0.0, self.clock() - started)
            await self.tell(Step(self.sending, "sent", attempt, reply.ok, reply.detail, reply.result))
            if reply.ok:
                accepted = reply.result
            verdict = await self.settle(attempt, reply, checks)
            if verdict.done:
                return Outcome(self.call, "confirmed", attempt, verdict.detail, accepted or reply.result)
            if reply.rejected:
                return Outcome(self.call, "failed", attempt, f"{reply.detail}; {verdict.detail}", None, retryable=False)
            if verdict.done is None:
                return Outcome(
                    self.call, "uncertain", attempt, f"{reply.detail}; cannot verify: {verdict.detail}", accepted
                )
            if reply.ok and self.call.kind not in IDEMPOTENT:
                return Outcome(
                    self.call, "uncertain", attempt, f"accepted, but not visible: {verdict.detail}", accepted
                )
            if attempt > retries:
                return Outcome(self.call, "failed", attempt, f"{reply.detail}; {verdict.detail}", accepted)
            self.resize()

    async def settle(self, attempt: int, reply: _Reply, checks: int) -> _Verdict:
        """Read the state until it decides. "Not there" counts at once when the broker rejected the
        call; after one pause when it accepted it (its state may lag its reply); and only once the
        window has passed when the outcome is unknown (the request may still be in flight: the
        SDK's own timeout is longer than ours, and a server acts on what it received). An
        unreadable state is read again, ``checks`` reads in all."""
        verdict, paused, reads = await self.verify(attempt), False, 1
        unknown = not reply.ok and not reply.rejected and not reply.unsent
        while not verdict.done:
            if verdict.done is False:
                if reply.rejected or (paused and (not unknown or self.waited >= self.window)):
                    break
                if reads >= checks + MAX_EXTRA_READS:
                    break
            elif reads >= checks:
                break
            await self.pause()
            verdict, paused, reads = await self.verify(attempt), True, reads + 1
        return verdict

    def resize(self) -> None:
        """Before resending a partial close: cut what is there now down to what should be left."""
        if self.call.kind != "partial_close" or self.last is None or self.expect is None:
            return
        now = abs(self.last.position_size(self.call.contract_id or ""))
        self.sending = replace(self.call, size=max(1, now - self.expect))

    # -- steps ------------------------------------------------------------------------------

    async def send(self) -> _Reply:
        try:
            async with asyncio.timeout(self.timeout):
                result = await self.port.send(self.sending)
        except BrokerError as error:
            return _Reply(False, str(error), rejected=not error.retryable, unsent=getattr(error, "unsent", False))
        except TimeoutError:
            return _Reply(False, f"{self.sending.describe()}: no answer within {self.timeout:g}s; outcome unknown")
        except Exception as error:  # a port bug must not stop enforcement: treat as unknown outcome
            log.exception("broker port %s raised on %s", getattr(self.port, "name", "?"), self.sending.describe())
            return _Reply(False, f"{self.sending.describe()}: {type(error).__name__}: {error}")
        if isinstance(result, dict) and result.get("order_id") is not None:
            self.order_id = result["order_id"]
        return _Reply(True, f"{self.sending.describe()}: accepted", result)

    async def verify(self, attempt: int) -> _Verdict:
        state = await self.read()
        if isinstance(state, str):
            verdict = _Verdict(None, state)
        else:
            self.last = state
            done, detail = self.effect(state)
            verdict = _Verdict(done, detail)
        await self.tell(Step(self.call, "verified", attempt, verdict.done, verdict.detail))
        return verdict

    async def read(self) -> BrokerState | str:
        try:
            async with asyncio.timeout(self.timeout):
                return await self.port.state(self.call.account_id)
        except TimeoutError:
            return f"the broker's state did not arrive within {self.timeout:g}s"
        except Exception as error:
            return f"reading the broker's state: {error}"

    async def pause(self) -> None:
        if self.pacing is None:
            return
        delay = self.pacing.delay(self.pauses)
        await self.pacing.sleep(delay)
        self.pauses += 1
        self.waited += delay

    async def _baseline(self) -> bool:
        """``partial_close`` without ``expect_size``: what is left is the current size minus the cut."""
        state = await self.read()
        if isinstance(state, str):
            return False
        self.expect = max(0, abs(state.position_size(self.call.contract_id or "")) - (self.call.size or 0))
        return True

    async def tell(self, event: Step | Outcome) -> None:
        if self.audit is None:
            return
        try:
            result = self.audit(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("the audit hook failed on %s", event)

    # -- effects ----------------------------------------------------------------------------

    def effect(self, state: BrokerState) -> tuple[bool, str]:
        """Whether the call's effect is in ``state``, and what was seen."""
        call = self.call
        match call.kind:
            case "close":
                size = state.position_size(call.contract_id or "")
                return size == 0, f"{call.contract_id} position is {size}"
            case "partial_close":
                size = state.position_size(call.contract_id or "")
                return abs(size) <= (
                    self.expect or 0
                ), f"{call.contract_id} position is {size}, wanted at most {self.expect}"
            case "cancel":
                order = state.open_order(call.order_id)  # type: ignore[arg-type]
                working = order is not None and order.status in WORKING
                return not working, f"order {call.order_id} is {'still working' if working else 'not working'}"
            case "modify_stop":
                order = state.open_order(call.order_id)  # type: ignore[arg-type]
                if order is None or order.status not in WORKING:
                    return False, f"order {call.order_id} is not working"
                price = order.stop_price
                return self.same_price(price, order.contract_id), f"order {call.order_id} stop is {price}"
            case "place_stop":
                found = [o for o in state.orders if self.is_our_stop(o)]
                return bool(found), (
                    f"working stop {found[0].order_id} found"
                    if found
                    else f"no working {call.side} stop {call.size} {call.contract_id} at {call.stop_price}"
                )
            case "place_target":
                found = [o for o in state.orders if self.is_our_target(o)]
                return bool(found), (
                    f"working target {found[0].order_id} found"
                    if found
                    else f"no working {call.side} target {call.size} {call.contract_id} at {call.limit_price}"
                )
        return False, f"unknown call kind {call.kind!r}"

    def is_our_stop(self, order: OrderUpdate) -> bool:
        return self._is_ours(order, order.type in STOP_TYPES, order.stop_price, self.call.stop_price)

    def is_our_target(self, order: OrderUpdate) -> bool:
        return self._is_ours(order, order.type == "limit", order.price, self.call.limit_price)

    def _is_ours(self, order: OrderUpdate, right_type: bool, price: Any, wanted: Decimal | None) -> bool:
        """The order this call placed: its id when the broker answered one, else a working order
        of the call's type, contract, side and size at the call's price (within half a tick)."""
        call = self.call
        if order.status not in WORKING:
            return False
        if self.order_id is not None and order.order_id == self.order_id:
            return True
        return (
            right_type
            and order.contract_id == call.contract_id
            and order.side == call.side
            and order.size == call.size
            and self.same_price(price, call.contract_id, wanted)
        )

    def same_price(self, price: Any, contract_id: str | None, wanted: Decimal | None = None) -> bool:
        """Equal within half a tick: the broker (or the SDK) rounds prices to the tick."""
        wanted = self.call.stop_price if wanted is None else wanted
        if price is None or wanted is None:
            return False
        try:
            got = Decimal(str(price))
        except InvalidOperation:
            return False
        try:
            half_tick = self.instruments.spec(symbol_of(contract_id or "")).tick_size / 2
        except UnknownInstrument:
            return got == wanted
        return abs(got - wanted) < half_tick
