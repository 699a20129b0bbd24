"""The real project-x-py 4.4.1 client against the fake Gateway (and an httpx MockTransport).

These tests pin the SDK boundary riskc relies on (docs/sdk-notes.md): the REST paths and JSON
bodies it sends, the callback names and payload shapes of its realtime client, how it
reconnects, and which failures it swallows. Every test is bounded (``@bounded``).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from .conftest import MNQ, bounded
from .server import DEFAULT_ACCOUNT_ID, DEFAULT_ACCOUNT_NAME, FakeGateway

project_x_py = pytest.importorskip("project_x_py")
from project_x_py import EventBus, OrderManager, PositionManager, ProjectX  # noqa: E402

ACCT = DEFAULT_ACCOUNT_ID

# Lines as in PRODUCT.md §6.1 / samples/session-sample.jsonl (args exactly as the hub sent them).
SAMPLE = [
    {
        "hub": "user",
        "target": "GatewayUserAccount",
        "args": [
            {
                "action": 1,
                "data": {
                    "id": ACCT,
                    "name": DEFAULT_ACCOUNT_NAME,
                    "balance": 50000.0,
                    "canTrade": True,
                    "isVisible": True,
                    "simulated": True,
                },
            }
        ],
    },
    {
        "hub": "user",
        "target": "GatewayUserOrder",
        "args": [
            {
                "action": 1,
                "data": {
                    "id": 1003,
                    "accountId": ACCT,
                    "contractId": MNQ,
                    "symbolId": "F.US.MNQ",
                    "creationTimestamp": "2025-10-29T15:40:41+00:00",
                    "updateTimestamp": "2025-10-29T15:40:41+00:00",
                    "status": 1,
                    "type": 4,
                    "side": 1,
                    "size": 1,
                    "limitPrice": None,
                    "stopPrice": 26242.25,
                    "fillVolume": 0,
                    "filledPrice": None,
                    "customTag": None,
                },
            }
        ],
    },
    {
        "hub": "user",
        "target": "GatewayUserTrade",
        "args": [
            {
                "action": 1,
                "data": {
                    "id": 5002,
                    "accountId": ACCT,
                    "contractId": MNQ,
                    "creationTimestamp": "2025-10-29T15:40:46.200000+00:00",
                    "price": 26242.25,
                    "profitAndLoss": -4.0,
                    "fees": 0.37,
                    "side": 1,
                    "size": 1,
                    "voided": False,
                    "orderId": 1004,
                },
            }
        ],
    },
    {
        "hub": "user",
        "target": "GatewayUserPosition",
        "args": [
            {
                "action": 1,
                "data": {
                    "id": 401,
                    "accountId": ACCT,
                    "contractId": MNQ,
                    "creationTimestamp": "2025-10-29T15:50:13.776995+00:00",
                    "type": 1,
                    "size": 2,
                    "averagePrice": 26246.0,
                },
            }
        ],
    },
    {
        "hub": "market",
        "target": "GatewayQuote",
        "args": [
            MNQ,
            {
                "symbol": "F.US.MNQ",
                "lastPrice": 26244.0,
                "bestBid": 26243.75,
                "bestAsk": 26244.0,
                "timestamp": "2025-10-29T15:40:38+00:00",
            },
        ],
    },
    {
        "hub": "market",
        "target": "GatewayTrade",
        "args": [
            MNQ,
            [
                {
                    "symbolId": "F.US.MNQ",
                    "price": 26251.0,
                    "timestamp": "2025-10-29T15:52:01+00:00",
                    "type": 0,
                    "volume": 3,
                }
            ],
        ],
    },
]
CALLBACK_OF = {
    "GatewayUserAccount": "account_update",
    "GatewayUserOrder": "order_update",
    "GatewayUserTrade": "trade_execution",
    "GatewayUserPosition": "position_update",
    "GatewayQuote": "quote_update",
    "GatewayTrade": "market_trade",
}


class Recorder:
    """Collects SDK realtime callbacks; ``wait(name, n)`` is bounded."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._cond = asyncio.Condition()

    async def attach(self, rt: Any, names: list[str]) -> None:
        for name in names:

            async def callback(data: Any, _name: str = name) -> None:
                self.events.append((_name, data))
                async with self._cond:
                    self._cond.notify_all()

            await rt.add_callback(name, callback)

    def of(self, name: str) -> list[Any]:
        return [d for n, d in self.events if n == name]

    async def wait(self, name: str, count: int = 1, timeout: float = 5.0) -> list[Any]:
        async def _wait() -> None:
            async with self._cond:
                await self._cond.wait_for(lambda: len(self.of(name)) >= count)

        await asyncio.wait_for(_wait(), timeout)
        return self.of(name)


async def connect_and_subscribe(rt: Any, gw: FakeGateway, contracts: list[str] | None = None) -> None:
    """connect() + subscribe; hub sends are fire-and-forget, so wait until the fake saw them."""
    n_user = len(gw.invocations_of("SubscribeTrades"))
    n_market = len(gw.invocations_of("SubscribeContractMarketDepth"))
    contracts = contracts or [MNQ]
    assert await asyncio.wait_for(rt.connect(), 10) is True
    assert await rt.subscribe_user_updates() is True
    assert await rt.subscribe_market_data(contracts) is True
    await gw.wait_for_invocation("SubscribeTrades", count=n_user + 1)
    await gw.wait_for_invocation("SubscribeContractMarketDepth", count=n_market + len(contracts))


# --------------------------------------------------------------------------------------- REST


@bounded(10)
async def test_authenticate_and_list_accounts(gw: FakeGateway, px: ProjectX) -> None:
    login, search = gw.requests[0], gw.requests[1]
    assert (login.method, login.path, login.json) == (
        "POST",
        "/Auth/loginKey",
        {"userName": gw.username, "apiKey": gw.api_key},
    )
    assert "Authorization" not in login.headers
    assert (search.path, search.json) == ("/Account/search", {"onlyActiveAccounts": True})
    assert search.headers["Authorization"] == f"Bearer {px.session_token}"
    assert px.session_token in gw.tokens
    assert px.token_expiry is not None  # decoded from the JWT "exp"
    assert px.account_info.id == ACCT and px.account_info.name == DEFAULT_ACCOUNT_NAME

    accounts = await px.list_accounts()
    assert [a.id for a in accounts] == [ACCT]


@bounded(10)
async def test_bad_api_key_raises_auth_error_and_hides_gateway_message(gw: FakeGateway) -> None:
    from project_x_py import ProjectXAuthenticationError

    from .sdk import make_config

    async with ProjectX(username=gw.username, api_key="wrong-key-0123456789", config=make_config(gw)) as px:
        with pytest.raises(ProjectXAuthenticationError):
            await px.authenticate()
    # loginKey answered {"success": false, "token": null}; the SDK does not check "success",
    # stores token None and only fails on /Account/search with "Bearer None" (401).
    assert [r.path for r in gw.requests][:2] == ["/Auth/loginKey", "/Account/search"]
    assert gw.requests[1].headers.get("Authorization") == "Bearer None"


@bounded(10)
async def test_search_open_positions_returns_fake_state(gw: FakeGateway, px: ProjectX) -> None:
    gw.set_position(MNQ, 2, 26246.0)
    gw.set_position("CON.F.US.MES.Z25", -3, 6000.25)
    positions = await px.search_open_positions()
    assert gw.requests[-1].path == "/Position/searchOpen"
    assert gw.requests[-1].json == {"accountId": ACCT}
    got = {(p.contractId, p.type, p.size, p.averagePrice) for p in positions}
    assert got == {(MNQ, 1, 2, 26246.0), ("CON.F.US.MES.Z25", 2, 3, 6000.25)}


@bounded(10)
async def test_close_position_sends_exact_request_and_takes_effect(gw: FakeGateway, px: ProjectX) -> None:
    gw.set_position(MNQ, 2, 26246.0)
    pm = PositionManager(px, EventBus())
    result = await pm.close_position_direct(MNQ)
    assert result == {"success": True, "errorCode": 0, "errorMessage": None}
    closes = gw.requests_to("/Position/closeContract")
    assert len(closes) == 1
    assert closes[0].method == "POST"
    assert closes[0].json == {"accountId": ACCT, "contractId": MNQ}
    # on success the SDK re-reads positions ("verify and remove", operations.py:419-463)
    assert gw.requests[-1].path == "/Position/searchOpen"
    assert gw.position(MNQ) is None


@bounded(10)
async def test_partial_close_sends_exact_request(gw: FakeGateway, px: ProjectX) -> None:
    gw.set_position(MNQ, 4, 26250.0)
    pm = PositionManager(px, EventBus())
    result = await pm.partially_close_position(MNQ, 1)
    assert result["success"] is True
    partial = gw.requests_to("/Position/partialCloseContract")
    assert [r.json for r in partial] == [{"accountId": ACCT, "contractId": MNQ, "size": 1}]
    assert gw.requests[-1].path == "/Position/searchOpen"  # refresh_positions() after success
    assert gw.signed_size(MNQ) == 3


@bounded(10)
async def test_close_errors_are_swallowed_and_never_retried(gw: FakeGateway, px: ProjectX) -> None:
    gw.set_position(MNQ, 2, 26246.0)
    pm = PositionManager(px, EventBus())

    # HTTP 500: mutating endpoint -> one attempt, OrderSubmissionUncertainError inside,
    # swallowed by @handle_errors(reraise=False) into a generic failure dict.
    gw.fail_next("/Position/closeContract", status=500)
    assert await pm.close_position_direct(MNQ) == {"success": False, "error": "Operation failed"}
    assert len(gw.requests_to("/Position/closeContract")) == 1
    assert gw.position(MNQ) is not None

    # The broker acted but the reply was an error: same generic failure, position is gone.
    gw.fail_next("/Position/closeContract", status=500, then_apply=True)
    assert await pm.close_position_direct(MNQ) == {"success": False, "error": "Operation failed"}
    assert len(gw.requests_to("/Position/closeContract")) == 2
    assert gw.position(MNQ) is None
    assert await px.search_open_positions() == []  # only broker state tells the truth

    # A business rejection (HTTP 200, success=false) is returned verbatim.
    gw.set_position(MNQ, 1, 26246.0)
    gw.fail_next("/Position/closeContract", success=False, error_code=2, error_message="Rejected")
    result = await pm.close_position_direct(MNQ)
    assert result == {"success": False, "errorCode": 2, "errorMessage": "Rejected"}


@bounded(10)
async def test_close_timeout_is_swallowed_but_close_may_have_happened(gw: FakeGateway) -> None:
    from .sdk import make_client

    gw.set_position(MNQ, 2, 26246.0)
    async with make_client(gw, timeout_seconds=1) as px:
        await px.authenticate()
        pm = PositionManager(px, EventBus())
        gw.delay_next("/Position/closeContract", 1.5)  # answered (and applied) after the client gave up
        started = time.monotonic()
        assert await pm.close_position_direct(MNQ) == {"success": False, "error": "Operation failed"}
        assert 0.9 < time.monotonic() - started < 1.5
        await asyncio.sleep(0.7)
        assert len(gw.requests_to("/Position/closeContract")) == 1
        assert await px.search_open_positions() == []


@bounded(10)
async def test_orders_stop_place_modify_cancel_search(gw: FakeGateway, px: ProjectX) -> None:
    om = OrderManager(px, EventBus())
    resp = await om.place_stop_order(MNQ, side=1, size=1, stop_price=26242.3)
    place = gw.requests_to("/Order/place")
    assert place[0].json == {
        "accountId": ACCT,
        "contractId": MNQ,
        "type": 4,
        "side": 1,
        "size": 1,
        "limitPrice": None,
        "stopPrice": 26242.25,
        "trailPrice": None,
    }
    # tick alignment looks the instrument up by *symbol*, not by contract id
    assert gw.requests_to("/Contract/search")[0].json == {"searchText": "MNQ", "live": False}
    order_id = resp.orderId
    assert gw.orders[order_id]["status"] == 1 and gw.orders[order_id]["stopPrice"] == 26242.25

    open_orders = await om.search_open_orders()
    assert gw.requests[-1].path == "/Order/searchOpen" and gw.requests[-1].json == {"accountId": ACCT}
    assert [(o.id, o.type, o.stopPrice) for o in open_orders] == [(order_id, 4, 26242.25)]

    assert await om.modify_order(order_id, stop_price=26240.1) is True
    modify = gw.requests_to("/Order/modify")
    assert modify[0].json == {"accountId": ACCT, "orderId": order_id, "stopPrice": 26240.0}
    assert gw.orders[order_id]["stopPrice"] == 26240.0

    assert await om.cancel_order(order_id) is True
    assert gw.requests_to("/Order/cancel")[0].json == {"accountId": ACCT, "orderId": order_id}
    assert gw.orders[order_id]["status"] == 3
    assert await om.search_open_orders() == []


@bounded(10)
async def test_trades_and_contract_lookup(gw: FakeGateway, px: ProjectX) -> None:
    gw.set_position(MNQ, 1, 26244.25)
    gw.set_price(MNQ, 26242.25)
    pm = PositionManager(px, EventBus())
    assert (await pm.close_position_direct(MNQ))["success"] is True
    trades = await px.search_trades()
    body = gw.requests_to("/Trade/search")[0].json
    assert set(body) == {"accountId", "startTimestamp", "endTimestamp"} and body["accountId"] == ACCT
    assert [(t.side, t.size, t.price, t.profitAndLoss) for t in trades] == [(1, 1, 26242.25, -4.0)]

    inst = await px.get_instrument(MNQ)
    assert gw.requests_to("/Contract/searchById")[0].json == {"contractId": MNQ}
    assert (inst.id, inst.tickSize, inst.tickValue) == (MNQ, 0.25, 0.5)


# --------------------------------------------------------------------------------------- hubs


@bounded(10)
async def test_realtime_subscribes_and_callbacks_get_raw_payloads(gw: FakeGateway, rt: Any) -> None:
    rec = Recorder()
    await rec.attach(rt, list(CALLBACK_OF.values()))
    await connect_and_subscribe(rt, gw)
    assert rt.user_connected and rt.market_connected and rt.is_connected()

    user = [(i.target, i.arguments) for i in gw.invocations if i.hub == "user" and i.target != "Heartbeat"]
    assert user == [
        ("SubscribeAccounts", []),
        ("SubscribeOrders", [ACCT]),
        ("SubscribePositions", [ACCT]),
        ("SubscribeTrades", [ACCT]),
    ]
    market = [(i.target, i.arguments) for i in gw.invocations if i.hub == "market" and i.target != "Heartbeat"]
    assert market == [
        ("SubscribeContractQuotes", [MNQ]),
        ("SubscribeContractTrades", [MNQ]),
        ("SubscribeContractMarketDepth", [MNQ]),
    ]
    # the SDK's own heartbeat is a hub invocation, not a SignalR ping (health_monitoring.py:447-490)
    assert {i.hub for i in gw.invocations_of("Heartbeat")} == {"user", "market"}

    for line in SAMPLE:
        assert await gw.push_recording_line(line) == 1
    for line in SAMPLE:
        name = CALLBACK_OF[line["target"]]
        (got,) = await rec.wait(name)
        if line["hub"] == "user":
            # user callbacks receive args[0] unchanged: {"action": 1, "data": {...}}
            assert got == line["args"][0]
        else:
            # market callbacks receive {"contract_id": args[0], "data": args[1]}
            assert got == {"contract_id": line["args"][0], "data": line["args"][1]}


@bounded(10)
async def test_broker_actions_emit_user_hub_events(gw: FakeGateway, px: ProjectX, rt: Any) -> None:
    rec = Recorder()
    await rec.attach(rt, ["order_update", "trade_execution", "position_update", "account_update"])
    await connect_and_subscribe(rt, gw)
    gw.set_position(MNQ, 2, 26246.0)
    gw.set_price(MNQ, 26250.0)
    result = await PositionManager(px, EventBus()).close_position_direct(MNQ)
    assert result["success"] is True
    (pos,) = await rec.wait("position_update")
    assert pos["data"]["size"] == 0 and pos["data"]["type"] == 0
    (trade,) = await rec.wait("trade_execution")
    assert trade["data"]["profitAndLoss"] == 16.0 and trade["data"]["side"] == 1
    (order,) = await rec.wait("order_update")
    assert order["data"]["status"] == 2 and order["data"]["type"] == 2
    (acct,) = await rec.wait("account_update")
    assert acct["data"]["balance"] == pytest.approx(50000.0 + 16.0 - 0.74)


@bounded(10)
async def test_only_first_item_of_a_multi_item_invocation_is_forwarded(gw: FakeGateway, rt: Any) -> None:
    rec = Recorder()
    await rec.attach(rt, ["position_update"])
    await connect_and_subscribe(rt, gw)
    a = SAMPLE[3]["args"][0]
    b = {"action": 1, "data": dict(a["data"], id=402, size=1)}
    await gw.push_raw("user", "GatewayUserPosition", [a, b])
    await rec.wait("position_update")
    await asyncio.sleep(0.2)
    assert rec.of("position_update") == [a]  # b is silently dropped (async_hub.py:97-101 + event_handling.py:684)


@bounded(15)
async def test_reconnects_and_resubscribes_after_server_drop(gw: FakeGateway, rt: Any) -> None:
    rec = Recorder()
    await rec.attach(rt, ["position_update", "quote_update"])
    await connect_and_subscribe(rt, gw)
    first_user = gw.connections("user")[0].connection_id

    assert await gw.drop_connections() == 2
    await gw.wait_for_invocation("SubscribeOrders", hub="user", count=2, timeout=5)
    await gw.wait_for_invocation("SubscribeContractQuotes", hub="market", count=2, timeout=5)
    assert rt.user_connected and rt.market_connected
    # pysignalr reconnects immediately with the *same* negotiated id (no new negotiation)
    assert len(gw.negotiations) == 2
    assert gw.connections("user")[0].connection_id == first_user
    second = gw.invocations_of("SubscribeOrders")[1]
    assert second.arguments == [ACCT]

    assert await gw.push_recording_line(SAMPLE[3]) == 1
    assert await gw.push_recording_line(SAMPLE[4]) == 1
    await rec.wait("position_update")
    await rec.wait("quote_update")


@bounded(15)
async def test_stale_connection_id_renegotiates_and_resubscribes(rt: Any, gw: FakeGateway) -> None:
    gw.strict_connection_ids = True  # like ASP.NET Core: a negotiated id is single-use
    await connect_and_subscribe(rt, gw)
    started = time.monotonic()
    await gw.drop_connections("user")
    await gw.wait_for_invocation("SubscribeOrders", hub="user", count=2, timeout=8)
    elapsed = time.monotonic() - started
    # reconnect with the old id -> 404 -> NegotiationFailure -> sleep retry_sleep*1.5 -> negotiate
    assert [a["status"] for a in gw.ws_attempts if a["hub"] == "user"] == [101, 404, 101]
    assert len([n for n in gw.negotiations if n["hub"] == "user"]) == 2
    assert 1.3 < elapsed < 4.0
    assert rt.user_connected


@bounded(15)
async def test_signalr_close_with_error_kills_hub_but_flags_stay_true(gw: FakeGateway, rt: Any) -> None:
    await connect_and_subscribe(rt, gw)
    await gw.drop_connections(mode="signalr_close_error")
    task = rt.user_connection._run_task
    await asyncio.wait_for(asyncio.wait({task}), 5)
    assert task.done() and type(task.exception()).__name__ == "ServerError"
    await asyncio.sleep(0.5)
    # No close callback ran: the SDK still believes it is connected, and nothing reconnects.
    assert rt.user_connected is True and rt.is_connected() is True
    assert rt._hub_is_live("user") is False
    assert len(gw.invocations_of("SubscribeOrders")) == 1

    # Recovery recipe for a supervisor: disconnect(), clear the ready events (disconnect()
    # leaves them set, so connect() would return False before the hubs are up), connect().
    # Subscriptions are restored by the on-open hook (_user_updates_subscribed and
    # _subscribed_contracts persist).
    rt.market_connection._run_task.exception()  # retrieve, avoid "never retrieved" noise
    await rt.disconnect()
    assert rt.user_hub_ready.is_set() and rt.market_hub_ready.is_set()
    rt.user_hub_ready.clear()
    rt.market_hub_ready.clear()
    assert await rt.connect() is True
    await gw.wait_for_invocation("SubscribeOrders", count=2, timeout=5)
    await gw.wait_for_invocation("SubscribeContractQuotes", count=2, timeout=5)
    assert rt._hub_is_live("user") and rt._hub_is_live("market")


@bounded(15)
async def test_negotiation_retry_budget_is_finite(gw: FakeGateway, rt: Any) -> None:
    await connect_and_subscribe(rt, gw)
    transport = rt.user_connection._client._transport
    assert transport._retry_count == 10  # SDK passes retry_count=10 (async_hub.py:62-70), never reset
    transport._retry_count = 1  # pretend nine reconnects already happened in this process
    gw.strict_connection_ids = True
    await gw.drop_connections("user")
    task = rt.user_connection._run_task
    await asyncio.wait_for(asyncio.wait({task}), 5)
    assert type(task.exception()).__name__ == "NegotiationFailure"
    assert rt.user_connected is False  # here the flag is right, but nothing will reconnect
    await asyncio.sleep(0.3)
    assert len(gw.invocations_of("SubscribeOrders")) == 1
    assert [a["status"] for a in gw.ws_attempts if a["hub"] == "user"] == [101, 404]


@bounded(10)
async def test_connect_after_disconnect_reports_false_but_comes_up(gw: FakeGateway, rt: Any) -> None:
    await connect_and_subscribe(rt, gw)
    await rt.disconnect()
    assert await rt.connect() is False  # stale *_hub_ready events (see the recipe above)
    await gw.wait_for_invocation("SubscribeOrders", count=2, timeout=5)
    assert rt.user_connected and rt.market_connected


# ------------------------------------------------------------------------- httpx MockTransport


class _MockGateway:
    """Minimal Gateway behind ``httpx.MockTransport`` with scripted statuses per path."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, Any]] = []
        self.script: dict[str, list[int]] = {}

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api")
        body = json.loads(request.content) if request.content else None
        self.seen.append((request.method, path, body))
        statuses = self.script.get(path)
        if statuses:
            status = statuses.pop(0)
            if status != 200:
                return httpx.Response(status, text="Injected")
        envelope = {"success": True, "errorCode": 0, "errorMessage": None}
        if path == "/Auth/loginKey":
            return httpx.Response(200, json={**envelope, "token": "x.eyJleHAiOjQxMDI0NDQ4MDB9.y"})
        if path == "/Account/search":
            return httpx.Response(
                200,
                json={
                    **envelope,
                    "accounts": [
                        {
                            "id": ACCT,
                            "name": DEFAULT_ACCOUNT_NAME,
                            "balance": 50000.0,
                            "canTrade": True,
                            "isVisible": True,
                            "simulated": True,
                        }
                    ],
                },
            )
        if path == "/Position/searchOpen":
            return httpx.Response(200, json={**envelope, "positions": []})
        return httpx.Response(200, json=envelope)


@bounded(15)
async def test_mock_transport_exact_close_request_and_retry_policy() -> None:
    mock = _MockGateway()

    class MockedProjectX(ProjectX):
        # The SDK builds its httpx.AsyncClient in HttpMixin._create_client (client/http.py:125-167)
        # with no transport parameter; overriding that hook is the least invasive injection.
        async def _create_client(self) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url="",
                transport=httpx.MockTransport(mock.handler),
                headers={"User-Agent": "ProjectX-Python-SDK/4.4.1", "Accept": "application/json"},
            )

    async with MockedProjectX(username="trader", api_key="fake-api-key-0123456789") as px:
        await px.authenticate()
        assert px.base_url == "https://api.topstepx.com/api"  # default config; never contacted
        pm = PositionManager(px, EventBus())

        # 500 then 200 on a *mutating* endpoint: not retried, failure swallowed.
        mock.script["/Position/closeContract"] = [500, 200]
        assert await pm.close_position_direct(MNQ) == {"success": False, "error": "Operation failed"}
        closes = [s for s in mock.seen if s[1] == "/Position/closeContract"]
        assert closes == [("POST", "/Position/closeContract", {"accountId": ACCT, "contractId": MNQ})]

        # the next close gets the scripted 200 and succeeds
        assert (await pm.close_position_direct(MNQ))["success"] is True
        assert len([s for s in mock.seen if s[1] == "/Position/closeContract"]) == 2

        # 500 then 200 on a *read*: retried once after a 1 s backoff (client/http.py:213-260).
        mock.script["/Position/searchOpen"] = [500, 200]
        before = len(mock.seen)
        started = time.monotonic()
        assert await px.search_open_positions() == []
        assert 0.9 < time.monotonic() - started < 2.5
        assert [s[1] for s in mock.seen[before:]] == ["/Position/searchOpen"] * 2


# --------------------------------------------------------------------------------------- logging


@bounded(10)
async def test_sdk_logging_is_quiet_on_stdout(gw: FakeGateway, capsys: pytest.CaptureFixture[str]) -> None:
    from .sdk import make_client, make_realtime

    capsys.readouterr()
    async with make_client(gw) as px:
        await px.authenticate()
        rt = make_realtime(px)
        await rt.connect()
        await rt.cleanup()
        gw.fail_next("/Position/closeContract", status=500)
        await PositionManager(px, EventBus()).close_position_direct(MNQ)  # logs an ERROR
    assert capsys.readouterr().out == ""


@bounded(10)
async def test_stale_market_feed_watchdog_reconnects_both_hubs_in_a_loop(gw: FakeGateway, rt: Any) -> None:
    # Defaults are 30 s / 5 s (health_monitoring.py:170-171); shrunk here to keep the test short.
    rt.stale_feed_seconds = 0.5
    rt.stale_feed_check_interval = 0.2
    await connect_and_subscribe(rt, gw)
    await asyncio.sleep(2.0)  # no GatewayQuote/GatewayTrade/GatewayDepth at all: a quiet market
    # force_health_reconnect() tears down *both* hubs; its connect() reports False (stale ready
    # events), so the hubs are never marked fresh and the watchdog fires again on every check.
    assert len([n for n in gw.negotiations if n["hub"] == "user"]) >= 3
    assert len(gw.invocations_of("SubscribeOrders")) >= 3
    rt.stale_feed_seconds = float("inf")  # how riskc turns the watchdog off
    await asyncio.sleep(0.5)
    settled = len(gw.negotiations)
    await asyncio.sleep(0.6)
    assert len(gw.negotiations) == settled


@bounded(10)
async def test_update_jwt_token_reports_failure_and_reverts_attribute(gw: FakeGateway, px: ProjectX, rt: Any) -> None:
    await connect_and_subscribe(rt, gw)
    old = px.session_token
    await px.authenticate()  # a fresh REST token
    new = px.session_token
    assert await rt.update_jwt_token(new, timeout=5) is False  # its connect() sees stale ready events
    assert rt.jwt_token == old  # "recovered" to the original token ...
    await gw.wait_for(lambda: rt.user_connected and rt.market_connected)
    assert gw.negotiations[-1]["query"]["access_token"] == new  # ... yet the live hubs use the new one

    # Deterministic recipe (docs/sdk-notes.md §5.6)
    await rt.disconnect()
    rt.jwt_token = new
    rt.setup_complete = False
    rt.user_hub_ready.clear()
    rt.market_hub_ready.clear()
    assert await rt.connect() is True
    assert gw.negotiations[-1]["query"]["access_token"] == new
