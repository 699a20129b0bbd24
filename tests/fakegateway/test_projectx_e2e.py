"""riskc's ProjectX adapter (engine/broker/projectx.py) end to end: the real SDK, connected by
``connect(...)`` to the fake Gateway. Hub payloads arrive as ``Message``s, broker calls reach the
Gateway, and the watchdog reports (and repairs) dropped hubs. Every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from riskc.engine.adapters.port import BrokerCall
from riskc.engine.adapters.projectx.intake import Message, parse_line
from riskc.engine.adapters.projectx.sdk import (
    ConnectError,
    ConnectionEvent,
    ConnectOptions,
    Credentials,
    GatewayUrls,
    ProjectXConnection,
    connect,
)
from riskc.engine.enforce.executor import execute

from .conftest import MNQ, bounded
from .server import FakeGateway
from .test_fake_gateway import SAMPLE

MES = "CON.F.US.MES.Z25"
FAST = ConnectOptions(watch_interval=0.05, settle=0.05, revive_after=2.0, connect_timeout=10)


def urls(gw: FakeGateway) -> GatewayUrls:
    return GatewayUrls(gw.api_url, gw.user_hub_url, gw.market_hub_url)


def credentials(gw: FakeGateway) -> Credentials:
    return Credentials(gw.username or "trader", gw.api_key or "fake-api-key-0123456789")


class Inbox:
    """The connection's sink: a queue. ``next(want)`` returns the first item received (now or
    within ``timeout``) that ``want`` accepts and no earlier call returned."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Message | ConnectionEvent] = asyncio.Queue()
        self.seen: list[Message | ConnectionEvent] = []
        self._taken: set[int] = set()

    async def next(self, want: Callable[[Any], bool] = lambda item: True, timeout: float = 5.0) -> Any:
        async def _next() -> Any:
            start = 0
            while True:
                for index in range(start, len(self.seen)):
                    if index not in self._taken and want(self.seen[index]):
                        self._taken.add(index)
                        return self.seen[index]
                start = len(self.seen)
                self.seen.append(await self.queue.get())

        return await asyncio.wait_for(_next(), timeout)

    async def message(self, target: str, timeout: float = 5.0) -> Message:
        return await self.next(lambda m: isinstance(m, Message) and m.target == target, timeout)

    async def event(self, hub: str, state: str, timeout: float = 5.0) -> ConnectionEvent:
        return await self.next(lambda e: isinstance(e, ConnectionEvent) and (e.hub, e.state) == (hub, state), timeout)


@pytest.fixture
async def live(gw: FakeGateway) -> AsyncIterator[tuple[ProjectXConnection, Inbox]]:
    inbox = Inbox()
    gw.set_position(MNQ, 2, 26246.0)
    connection = await asyncio.wait_for(connect(credentials(gw), urls(gw), sink=inbox.queue, options=FAST), 15)
    await gw.wait_for_invocation("SubscribeContractQuotes", hub="market")
    try:
        yield connection, inbox
    finally:
        await asyncio.wait_for(connection.close(), 15)


@bounded(20)
async def test_every_hub_payload_arrives_as_the_message_a_recording_line_would_be(
    gw: FakeGateway, live: tuple[ProjectXConnection, Inbox]
) -> None:
    connection, inbox = live
    assert connection.account_id == gw.account_id and connection.health() == {"user": True, "market": True}
    for line in SAMPLE:
        assert await gw.push_recording_line(line) == 1
        got = await inbox.message(line["target"])
        want = parse_line(json.dumps({"ts": "2025-10-29T15:40:38+00:00", **line}), 1)
        assert isinstance(want, Message)
        assert (got.hub, got.target, got.args) == (want.hub, want.target, want.args)
        assert got.ts.tzinfo is not None and got.line == 0
        # and written out, it reads back the same (riskc record)
        again = parse_line(got.to_json(), 1)
        assert isinstance(again, Message) and (again.target, again.args) == (got.target, got.args)
    assert connection.received == len(SAMPLE)


@bounded(20)
async def test_a_close_reaches_the_gateway_and_its_consequences_come_back(
    gw: FakeGateway, live: tuple[ProjectXConnection, Inbox]
) -> None:
    connection, inbox = live
    gw.set_price(MNQ, 26250.0)
    call = BrokerCall("close", connection.account_id, contract_id=MNQ, expect_size=0)
    outcome = await execute(connection.broker, call, timeout=5)
    assert (outcome.status, outcome.attempts) == ("confirmed", 1)
    assert [r.json for r in gw.requests_to("/Position/closeContract")] == [
        {"accountId": gw.account_id, "contractId": MNQ}
    ]
    position = await inbox.message("GatewayUserPosition")
    assert position.args[0]["data"]["size"] == 0
    trade = await inbox.message("GatewayUserTrade")
    assert str(trade.args[0]["data"]["profitAndLoss"]) == "16.0"


@bounded(20)
async def test_a_close_that_errors_but_happened_is_confirmed_without_resending(
    gw: FakeGateway, live: tuple[ProjectXConnection, Inbox]
) -> None:
    connection, _ = live
    gw.fail_next("/Position/closeContract", status=500, then_apply=True)
    call = BrokerCall("close", connection.account_id, contract_id=MNQ, expect_size=0)
    outcome = await execute(connection.broker, call, timeout=5, backoff=0.01)
    assert (outcome.status, len(gw.requests_to("/Position/closeContract"))) == ("confirmed", 1)


@bounded(20)
async def test_state_reads_positions_orders_suspended_trades_and_account(
    gw: FakeGateway, live: tuple[ProjectXConnection, Inbox]
) -> None:
    connection, _ = live
    stop = gw.add_order(MNQ, type=4, side=1, size=2, stop_price=26236.0)
    child = gw.add_order(MNQ, type=1, side=1, size=2, limit_price=26270.0, status=8)
    gw.add_trade(contractId=MNQ, price=26242.25, profitAndLoss=-4.0, fees=0.37, side=1, size=1)
    import datetime as dt

    state = await connection.broker.state(
        connection.account_id, trades_since=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    )
    assert state.position_size(MNQ) == 2
    assert sorted(o.order_id for o in state.orders) == sorted([stop["id"], child["id"]])
    assert [o.status for o in sorted(state.orders)] == ["open", "suspended"]
    assert [str(t.fees) for t in state.trades] == ["0.37"]
    assert state.account is not None and state.account.account_id == gw.account_id


@bounded(25)
async def test_dropped_hubs_are_reported_down_then_back_and_stream_again(
    gw: FakeGateway, live: tuple[ProjectXConnection, Inbox]
) -> None:
    connection, inbox = live
    assert await gw.drop_connections() == 2
    await inbox.event("user", "disconnected")
    await inbox.event("user", "reconnected")
    await gw.wait_for_invocation("SubscribeOrders", hub="user", count=2)
    events = [(e.hub, e.state) for e in inbox.seen if isinstance(e, ConnectionEvent)]
    if ("market", "reconnected") not in events:
        await inbox.event("market", "reconnected")
    events = [(e.hub, e.state) for e in inbox.seen if isinstance(e, ConnectionEvent)]
    for hub in ("user", "market"):
        assert events.index((hub, "disconnected")) < events.index((hub, "reconnected"))
    assert connection.health() == {"user": True, "market": True} and connection.revivals == 0
    await gw.wait_for_invocation("SubscribeContractQuotes", hub="market", count=2)
    assert await gw.push_recording_line(SAMPLE[3]) == 1
    await inbox.message("GatewayUserPosition")


@bounded(25)
async def test_a_hub_killed_by_an_error_close_is_rebuilt(
    gw: FakeGateway, live: tuple[ProjectXConnection, Inbox]
) -> None:
    """A SignalR close with an error ends pysignalr's run task and leaves the SDK's flags True
    (pinned in test_fake_gateway): only the watchdog notices, and rebuilds both hubs."""
    connection, inbox = live
    negotiations = len(gw.negotiations)
    await gw.drop_connections("user", mode="signalr_close_error")
    await inbox.event("user", "disconnected")
    await inbox.event("user", "reconnected", timeout=10)
    assert connection.revivals == 1 and len(gw.negotiations) >= negotiations + 2
    await gw.wait_for_invocation("SubscribeOrders", hub="user", count=2)
    assert await gw.push_recording_line(SAMPLE[0]) == 1
    await inbox.message("GatewayUserAccount")


@bounded(20)
async def test_market_data_follows_new_positions(gw: FakeGateway, live: tuple[ProjectXConnection, Inbox]) -> None:
    connection, inbox = live
    assert connection.contracts == {MNQ}  # the open position's contract, subscribed at connect
    assert [i.arguments for i in gw.invocations_of("SubscribeContractQuotes")] == [[MNQ]]
    await gw.push_user(
        "GatewayUserPosition",
        {
            "id": 9,
            "accountId": gw.account_id,
            "contractId": MES,
            "type": 1,
            "size": 1,
            "averagePrice": 6000.25,
            "creationTimestamp": "2025-10-29T15:50:13+00:00",
        },
    )
    await inbox.message("GatewayUserPosition")
    await gw.wait_for_invocation("SubscribeContractQuotes", hub="market", count=2)
    assert gw.invocations_of("SubscribeContractQuotes")[1].arguments == [MES]
    await connection.subscribe([MES, MNQ])  # already there: nothing sent
    await asyncio.sleep(0.1)
    assert len(gw.invocations_of("SubscribeContractQuotes")) == 2
    assert await gw.push_market("GatewayQuote", MES, {"lastPrice": 6001.0}) == 1
    quote = await inbox.message("GatewayQuote")
    assert quote.args[0] == MES


@bounded(20)
async def test_an_async_consumer_gets_items_in_arrival_order(gw: FakeGateway) -> None:
    got: list[str] = []
    done = asyncio.Event()

    async def consume(item: Message | ConnectionEvent) -> None:
        await asyncio.sleep(0.01)  # a slow consumer must not reorder anything
        got.append(item.args[0]["data"]["id"] if isinstance(item, Message) else item.state)
        if len(got) == 5:
            done.set()

    connection = await connect(credentials(gw), urls(gw), sink=consume, follow_contracts=False, options=FAST)
    await gw.wait_for_invocation("SubscribeOrders", hub="user")  # hub sends are fire-and-forget
    try:
        for n in range(5):
            await gw.push_user(
                "GatewayUserOrder",
                {"id": n, "accountId": gw.account_id, "contractId": MNQ, "status": 1, "type": 4, "side": 1, "size": 1},
            )
        await asyncio.wait_for(done.wait(), 5)
        assert got == [0, 1, 2, 3, 4]
    finally:
        await connection.close()


@bounded(15)
async def test_wrong_key_is_a_connect_error_that_does_not_show_the_key(gw: FakeGateway) -> None:
    wrong = Credentials(gw.username or "trader", "wrong-key-0123456789-secret")
    with pytest.raises(ConnectError) as caught:
        await connect(wrong, urls(gw), sink=asyncio.Queue(), options=FAST)
    assert "refused the login" in str(caught.value) and "secret" not in str(caught.value)
    assert gw.invocations == []


@bounded(15)
async def test_unknown_account_name_is_a_connect_error(gw: FakeGateway) -> None:
    with pytest.raises(ConnectError, match="NOPE"):
        await connect(credentials(gw), urls(gw), "NOPE", sink=asyncio.Queue(), options=FAST)


@bounded(15)
async def test_unreachable_gateway_is_a_connect_error() -> None:
    nowhere = GatewayUrls("http://127.0.0.1:9/api", "http://127.0.0.1:9/hubs/user", "http://127.0.0.1:9/hubs/market")
    with pytest.raises(ConnectError, match="cannot log in"):
        await connect(
            Credentials("trader", "fake-api-key-0123456789"),
            nowhere,
            sink=asyncio.Queue(),
            options=ConnectOptions(connect_timeout=1),
        )  # the SDK retries a login 3 times in 3 s


@bounded(25)
async def test_hub_tokens_are_redacted_from_logs(
    gw: FakeGateway, live: tuple[ProjectXConnection, Inbox], caplog: pytest.LogCaptureFixture
) -> None:
    connection, inbox = live
    logging.getLogger("pysignalr.transport").setLevel(logging.INFO)  # it logs the URL with ?access_token=
    gw.strict_connection_ids = True  # the reconnect has to negotiate again
    with caplog.at_level(logging.INFO):
        await gw.drop_connections("user")
        await inbox.event("user", "reconnected", timeout=10)
    negotiations = [r.getMessage() for r in caplog.records if "negotiation" in r.getMessage()]
    assert negotiations and all("access_token=***" in text for text in negotiations)
    token = connection.client.session_token
    assert not any(token in r.getMessage() for r in caplog.records)
    assert "fake-api-key" not in caplog.text


@bounded(25)
async def test_hubs_refusing_the_token_are_rebuilt_after_a_fresh_login(
    gw: FakeGateway, live: tuple[ProjectXConnection, Inbox]
) -> None:
    connection, inbox = live
    old = connection.client.session_token
    gw.revoke_tokens()  # e.g. the session was ended elsewhere: REST and hubs refuse the old token
    await gw.drop_connections()
    await inbox.event("user", "disconnected")
    await inbox.event("user", "reconnected", timeout=10)
    new = connection.client.session_token
    assert new != old and new in gw.tokens and connection.revivals >= 1
    assert gw.negotiations[-1]["query"]["access_token"] == new
    await gw.wait_for_invocation("SubscribeOrders", hub="user", count=2)
    state = await connection.broker.state(connection.account_id)  # REST works with the new token too
    assert state.position_size(MNQ) == 2
