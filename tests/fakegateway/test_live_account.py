"""A live account through the real SDK against the fake Gateway (issue 15, PRODUCT.md §8): closes
that never double under a slow broker, instruments from the broker's contract data, sessions that
heal. The fake behaves as the real Gateway is documented to: a request it received acts whether or
not the client still waits for the reply. Every wait is bounded."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from riskc.engine.adapters.port import BrokerCall
from riskc.engine.adapters.projectx.sdk import ProjectXBroker
from riskc.engine.enforce.executor import Outcome, Step, execute

from .conftest import MNQ, bounded
from .server import FakeGateway


def broker(px: Any) -> ProjectXBroker:
    return ProjectXBroker(px, px.account_info.id, call_timeout=15, read_timeout=10)


@bounded(30)
async def test_a_partial_close_that_lands_after_the_timeout_is_not_sent_twice(gw: FakeGateway, px: Any) -> None:
    """Position 4, limit 2: the cut of 2 takes effect 3 s after it reached the Gateway; riskc's
    timeout is 1 s, the SDK's request timeout 5 s. The position must end at 2, not 0."""
    gw.set_position(MNQ, 4, 26246.0)
    gw.act_late("/Position/partialCloseContract", 3.0)
    port = broker(px)
    assert port.settle_window == 7.0  # the SDK's timeout_seconds (5, tests/fakegateway/sdk.py) + 2
    cut = BrokerCall("partial_close", port.account_id, contract_id=MNQ, size=2, expect_size=2, key="k")
    events: list[Step | Outcome] = []
    outcome = await execute(port, cut, timeout=1.0, retries=3, backoff=0.25, max_backoff=1.0, audit=events.append)
    assert outcome.status == "confirmed", outcome.detail
    assert gw.signed_size(MNQ) == 2
    assert len(gw.requests_to("/Position/partialCloseContract")) == 1
    assert "no answer within 1s" in next(e.detail for e in events if isinstance(e, Step) and e.phase == "sent")


@bounded(30)
async def test_a_place_stop_retried_after_a_lost_reply_leaves_one_stop(gw: FakeGateway, px: Any) -> None:
    gw.set_position(MNQ, 2, 26246.0)
    gw.fail_next("/Order/place", status=500, then_apply=True)  # placed, reply lost
    port = broker(px)
    stop = BrokerCall(
        "place_stop", port.account_id, contract_id=MNQ, side="sell", size=2, stop_price=Decimal("26236"), key="s"
    )
    first = await execute(port, stop, timeout=5, backoff=0.1, max_backoff=0.5)
    again = await execute(port, stop, timeout=5, backoff=0.1, max_backoff=0.5)  # e.g. after a crash
    assert (first.status, again.status, again.attempts) == ("confirmed", "confirmed", 0)
    assert len([o for o in gw.open_orders() if o["type"] == 4]) == 1
    assert len(gw.requests_to("/Order/place")) == 1
