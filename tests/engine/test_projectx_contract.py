"""The ProjectX adapter's REST contract, with the real project-x-py client over an
``httpx.MockTransport`` (docs/sdk-notes.md §1): the exact requests each broker call and each state
read make, and the executor's retries and verification against what the mock broker really did."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

pytest.importorskip("project_x_py")

from riskc.engine.adapters.port import BrokerCall, BrokerError
from riskc.engine.adapters.projectx.sdk import ProjectXBroker, quiet_sdk_logging
from riskc.engine.enforce.executor import execute

ACCT = 13298777
MNQ = "CON.F.US.MNQ.Z25"
ENVELOPE = {"success": True, "errorCode": 0, "errorMessage": None}
TOKEN = "x.eyJleHAiOjQxMDI0NDQ4MDB9.y"  # exp in 2100
STATE_PATHS = ["/Position/searchOpen", "/Order/searchOpen", "/Account/search", "/Order/v2/query"]


class MockGateway:
    """A small stateful Gateway behind ``httpx.MockTransport``. ``faults[path]`` is a list of
    per-request faults: ``500`` (error, no effect), ``"500+apply"`` (effect, then 500),
    ``"reject"`` (``success: false``), ``("hang", apply)`` (never answers; effect first if apply)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []
        self.faults: dict[str, list[Any]] = {}
        self.positions: dict[str, dict[str, Any]] = {}
        self.orders: dict[int, dict[str, Any]] = {}
        self.trades: list[dict[str, Any]] = []

    def set_position(self, contract: str, size: int) -> None:
        if size == 0:
            self.positions.pop(contract, None)
        else:
            self.positions[contract] = {
                "id": 7,
                "accountId": ACCT,
                "contractId": contract,
                "type": 1 if size > 0 else 2,
                "size": abs(size),
                "averagePrice": 26246.25,
                "creationTimestamp": "2025-10-29T15:50:13+00:00",
            }

    def size(self, contract: str = MNQ) -> int:
        p = self.positions.get(contract)
        return 0 if p is None else (p["size"] if p["type"] == 1 else -p["size"])

    def requests_to(self, path: str) -> list[Any]:
        return [body for p, body in self.seen if p == path]

    async def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api")
        body = json.loads(request.content) if request.content else None
        self.seen.append((path, body))
        fault = self.faults.get(path, []).pop(0) if self.faults.get(path) else None
        if fault == 500:
            return httpx.Response(500, text="Injected")
        if fault == "reject":
            return httpx.Response(200, json={"success": False, "errorCode": 2, "errorMessage": "Rejected by risk"})
        if isinstance(fault, tuple) and fault[0] == "hang":
            if fault[1]:
                self.reply(path, body or {})
            await asyncio.sleep(3600)
        reply = self.reply(path, body or {})
        if fault == "500+apply":
            return httpx.Response(500, text="Injected after the effect")
        return httpx.Response(200, json=reply)

    def reply(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        match path:
            case "/Auth/loginKey":
                return ENVELOPE | {"token": TOKEN}
            case "/Account/search":
                return ENVELOPE | {
                    "accounts": [
                        {
                            "id": ACCT,
                            "name": "50KTC-V2-1234567",
                            "balance": 50012.37,
                            "canTrade": True,
                            "isVisible": True,
                            "simulated": True,
                        }
                    ]
                }
            case "/Position/searchOpen":
                return ENVELOPE | {"positions": list(self.positions.values())}
            case "/Position/closeContract":
                self.positions.pop(body["contractId"], None)
                return ENVELOPE
            case "/Position/partialCloseContract":
                size = self.size(body["contractId"])
                self.set_position(body["contractId"], size - body["size"] if size > 0 else size + body["size"])
                return ENVELOPE
            case "/Order/searchOpen":
                return ENVELOPE | {"orders": [o for o in self.orders.values() if o["status"] == 1]}
            case "/Order/v2/query":
                statuses = body["filter"].get("statuses") or []
                return ENVELOPE | {"orders": [o for o in self.orders.values() if o["status"] in statuses]}
            case "/Order/searchById":
                return ENVELOPE | {"order": self.orders.get(body["orderId"])}
            case "/Order/cancel":
                self.orders[body["orderId"]]["status"] = 3
                return ENVELOPE
            case "/Order/modify":
                self.orders[body["orderId"]]["stopPrice"] = body["stopPrice"]
                return ENVELOPE
            case "/Order/place":
                oid = 1000 + len(self.orders)
                self.orders[oid] = self.order(oid, body["type"], body["side"], body["size"], body["stopPrice"])
                return ENVELOPE | {"orderId": oid}
            case "/Trade/search":
                return ENVELOPE | {"trades": self.trades}
            case "/Contract/search":
                return ENVELOPE | {
                    "contracts": [
                        {
                            "id": MNQ,
                            "name": "MNQZ5",
                            "description": "Micro E-mini Nasdaq-100",
                            "tickSize": 0.25,
                            "tickValue": 0.5,
                            "activeContract": True,
                            "symbolId": "F.US.MNQ",
                        }
                    ]
                }
        return ENVELOPE

    def order(self, oid: int, type_: int, side: int, size: int, stop: float | None, status: int = 1) -> dict[str, Any]:
        return {
            "id": oid,
            "accountId": ACCT,
            "contractId": MNQ,
            "creationTimestamp": "2025-10-29T15:40:41+00:00",
            "updateTimestamp": None,
            "status": status,
            "type": type_,
            "side": side,
            "size": size,
            "limitPrice": None,
            "stopPrice": stop,
            "fillVolume": 0,
            "filledPrice": None,
            "customTag": None,
        }


@pytest.fixture
async def gateway() -> Any:
    from project_x_py import ProjectX

    quiet_sdk_logging()
    mock = MockGateway()

    class MockedProjectX(ProjectX):
        async def _create_client(self) -> httpx.AsyncClient:  # the SDK's only transport hook (§1)
            return httpx.AsyncClient(transport=httpx.MockTransport(mock.handler))

    async with MockedProjectX(username="trader", api_key="fake-api-key-0123456789") as px:
        await px.authenticate()
        mock.seen.clear()
        yield mock, ProjectXBroker(px, ACCT, call_timeout=0.5, read_timeout=2.0)


def fast(**kwargs: Any) -> dict[str, Any]:
    async def no_sleep(seconds: float) -> None:
        pass

    return {"timeout": 2.0, "retries": 2, "rng": lambda: 0.5, "sleep": no_sleep} | kwargs


# ------------------------------------------------------------------------------ exact requests


async def test_close_sends_exactly_one_close_contract(gateway: Any) -> None:
    mock, broker = gateway
    mock.set_position(MNQ, 2)
    reply = await broker.send(BrokerCall("close", ACCT, contract_id=MNQ, expect_size=0))
    assert reply == ENVELOPE
    assert mock.seen == [("/Position/closeContract", {"accountId": ACCT, "contractId": MNQ})]


async def test_partial_close_sends_the_size(gateway: Any) -> None:
    mock, broker = gateway
    mock.set_position(MNQ, -4)
    await broker.send(BrokerCall("partial_close", ACCT, contract_id=MNQ, size=3, expect_size=-1))
    assert mock.seen == [("/Position/partialCloseContract", {"accountId": ACCT, "contractId": MNQ, "size": 3})]
    assert mock.size() == -1


async def test_cancel_sends_order_cancel(gateway: Any) -> None:
    mock, broker = gateway
    mock.orders[55] = mock.order(55, 4, 1, 1, 26236.0)
    assert await broker.send(BrokerCall("cancel", ACCT, contract_id=MNQ, order_id=55)) == {
        "success": True,
        "cancelled": True,
    }
    assert mock.seen == [("/Order/cancel", {"accountId": ACCT, "orderId": 55})]


async def test_modify_stop_looks_the_order_up_then_sends_only_the_stop_price(gateway: Any) -> None:
    mock, broker = gateway
    mock.orders[55] = mock.order(55, 4, 1, 1, 26236.0)
    await broker.send(BrokerCall("modify_stop", ACCT, contract_id=MNQ, order_id=55, stop_price=Decimal("26240.10")))
    assert mock.seen[0] == ("/Order/searchById", {"accountId": ACCT, "orderId": 55})
    # the SDK rounds to the tick with the instrument found by *symbol* (§3)
    assert mock.requests_to("/Contract/search")[0] == {"searchText": "MNQ", "live": False}
    assert mock.requests_to("/Order/modify") == [{"accountId": ACCT, "orderId": 55, "stopPrice": 26240.0}]


async def test_place_stop_sends_a_stop_order(gateway: Any) -> None:
    mock, broker = gateway
    call = BrokerCall("place_stop", ACCT, contract_id=MNQ, side="sell", size=2, stop_price=Decimal("26236.25"))
    reply = await broker.send(call)
    assert mock.requests_to("/Order/place") == [
        {
            "accountId": ACCT,
            "contractId": MNQ,
            "type": 4,
            "side": 1,
            "size": 2,
            "limitPrice": None,
            "stopPrice": 26236.25,
            "trailPrice": None,
        }
    ]
    assert reply == {"success": True, "order_id": 1000}
    buy = BrokerCall("place_stop", ACCT, contract_id=MNQ, side="buy", size=1, stop_price=Decimal("26300"))
    await broker.send(buy)
    assert mock.requests_to("/Order/place")[1]["side"] == 0


async def test_place_target_sends_a_limit_order(gateway: Any) -> None:
    mock, broker = gateway
    call = BrokerCall("place_target", ACCT, contract_id=MNQ, side="sell", size=2, limit_price=Decimal("26250.50"))
    reply = await broker.send(call)
    [placed] = mock.requests_to("/Order/place")
    assert (placed["type"], placed["side"], placed["size"], placed["limitPrice"]) == (1, 1, 2, 26250.5)
    assert placed["stopPrice"] is None
    assert reply["success"] and reply["orderId"]


async def test_state_reads_the_account_in_gateway_shape(gateway: Any) -> None:
    mock, broker = gateway
    mock.set_position(MNQ, 2)
    mock.orders[55] = mock.order(55, 4, 1, 2, 26236.25)
    mock.orders[56] = mock.order(56, 1, 1, 2, None, status=8)  # suspended bracket child
    mock.orders[57] = mock.order(57, 4, 1, 2, 26230.0, status=3)  # cancelled: not listed
    mock.trades = [
        {
            "id": 5002,
            "accountId": ACCT,
            "contractId": MNQ,
            "creationTimestamp": "2025-10-29T15:40:46+00:00",
            "price": 26242.25,
            "profitAndLoss": -4.0,
            "fees": 0.37,
            "side": 1,
            "size": 1,
            "voided": False,
            "orderId": 1004,
        }
    ]
    since = dt.datetime(2025, 10, 28, 22, 0, tzinfo=dt.UTC)
    state = await broker.state(ACCT, trades_since=since)
    assert sorted(mock.seen, key=lambda s: s[0]) == sorted(
        [
            ("/Position/searchOpen", {"accountId": ACCT}),
            ("/Order/searchOpen", {"accountId": ACCT}),
            ("/Account/search", {"onlyActiveAccounts": False}),
            ("/Trade/search", {"accountId": ACCT, "startTimestamp": "2025-10-28T22:00:00+00:00"}),
            (
                "/Order/v2/query",
                {
                    "filter": {"accountId": ACCT, "statuses": [8]},
                    "pageSize": 100,
                    "pageOffset": 0,
                    "includeTotalCount": False,
                },
            ),
        ],
        key=lambda s: s[0],
    )
    assert state.position_size(MNQ) == 2 and state.positions[0].avg_price == Decimal("26246.25")
    assert sorted(o.order_id for o in state.orders) == [55, 56]
    assert state.trades[0].fees == Decimal("0.37") and state.trades[0].pnl == Decimal("-4.0")
    assert state.account.balance == Decimal("50012.37") and state.account.can_trade is True
    assert state.extra == {"trades_read": True, "suspended_read": True}


async def test_state_without_trades_since_does_not_read_trades(gateway: Any) -> None:
    mock, broker = gateway
    state = await broker.state(ACCT)
    assert sorted(p for p, _ in mock.seen) == sorted(STATE_PATHS)
    assert state.trades == () and state.extra["trades_read"] is False


async def test_state_read_failure_is_a_broker_error(gateway: Any) -> None:
    mock, broker = gateway
    mock.faults["/Order/searchOpen"] = ["reject"]
    with pytest.raises(BrokerError, match="Rejected by risk"):
        await broker.state(ACCT)


async def test_a_call_for_another_account_is_refused_without_a_request(gateway: Any) -> None:
    mock, broker = gateway
    with pytest.raises(BrokerError) as caught:
        await broker.send(BrokerCall("close", 42, contract_id=MNQ))
    assert caught.value.retryable is False and mock.seen == []


# ------------------------------------------------------------------- failures, seen by send()


async def test_rejection_is_not_retryable_and_500_is_unknown_outcome(gateway: Any) -> None:
    mock, broker = gateway
    mock.set_position(MNQ, 2)
    mock.faults["/Position/closeContract"] = ["reject", 500]
    with pytest.raises(BrokerError) as rejected:
        await broker.send(BrokerCall("close", ACCT, contract_id=MNQ))
    assert rejected.value.retryable is False and "Rejected by risk (errorCode 2)" in str(rejected.value)
    with pytest.raises(BrokerError) as unknown:
        await broker.send(BrokerCall("close", ACCT, contract_id=MNQ))
    assert unknown.value.retryable is True and "outcome unknown" in str(unknown.value)
    assert len(mock.requests_to("/Position/closeContract")) == 2  # the SDK never retries a mutation (§4.2)


async def test_a_hanging_call_is_cut_at_call_timeout(gateway: Any) -> None:
    mock, broker = gateway
    mock.set_position(MNQ, 2)
    mock.faults["/Position/closeContract"] = [("hang", False)]
    started = asyncio.get_running_loop().time()
    with pytest.raises(BrokerError, match="no answer within 0.5s; outcome unknown") as caught:
        await broker.send(BrokerCall("close", ACCT, contract_id=MNQ))
    assert caught.value.retryable and asyncio.get_running_loop().time() - started < 1.5


async def test_order_rejection_from_the_sdk_is_not_retryable(gateway: Any) -> None:
    mock, broker = gateway
    mock.faults["/Order/place"] = ["reject"]
    call = BrokerCall("place_stop", ACCT, contract_id=MNQ, side="sell", size=1, stop_price=Decimal("26236"))
    with pytest.raises(BrokerError, match="rejected: Rejected by risk") as caught:
        await broker.send(call)
    assert caught.value.retryable is False


# ---------------------------------------------------------------- the executor over the SDK


async def test_500_but_the_position_is_gone_is_confirmed_without_a_resend(gateway: Any) -> None:
    mock, broker = gateway
    mock.set_position(MNQ, 2)
    mock.faults["/Position/closeContract"] = ["500+apply"]
    outcome = await execute(broker, BrokerCall("close", ACCT, contract_id=MNQ, expect_size=0), **fast())
    assert (outcome.status, outcome.attempts) == ("confirmed", 1)
    assert len(mock.requests_to("/Position/closeContract")) == 1
    assert {p for p, _ in mock.seen[1:]} == set(STATE_PATHS)


async def test_500_and_the_position_still_there_is_resent_once(gateway: Any) -> None:
    mock, broker = gateway
    mock.set_position(MNQ, 2)
    mock.faults["/Position/closeContract"] = [500]
    outcome = await execute(broker, BrokerCall("close", ACCT, contract_id=MNQ, expect_size=0), **fast())
    assert (outcome.status, outcome.attempts) == ("confirmed", 2)
    closes = [i for i, (p, _) in enumerate(mock.seen) if p == "/Position/closeContract"]
    assert len(closes) == 2
    between = {p for p, _ in mock.seen[closes[0] + 1 : closes[1]]}
    assert between == set(STATE_PATHS)  # the state was read before the resend
    assert mock.size() == 0


async def test_timeout_without_effect_is_resent_and_timeout_with_effect_is_not(gateway: Any) -> None:
    mock, broker = gateway
    mock.set_position(MNQ, 2)
    mock.faults["/Position/closeContract"] = [("hang", False)]
    outcome = await execute(broker, BrokerCall("close", ACCT, contract_id=MNQ, expect_size=0), **fast())
    assert (outcome.status, outcome.attempts) == ("confirmed", 2)

    mock.set_position(MNQ, 3)
    mock.faults["/Position/partialCloseContract"] = [("hang", True)]  # acted, never answered
    reduce = BrokerCall("partial_close", ACCT, contract_id=MNQ, size=2, expect_size=1)
    outcome = await execute(broker, reduce, **fast())
    assert (outcome.status, outcome.attempts) == ("confirmed", 1)
    assert len(mock.requests_to("/Position/partialCloseContract")) == 1 and mock.size() == 1


async def test_gateway_rejection_of_a_close_is_failed_not_confirmed(gateway: Any) -> None:
    """``close_position_direct`` would turn this (and every other error) into
    ``{"success": false}`` (§4.3); the adapter keeps the rejection, the executor checks the state."""
    mock, broker = gateway
    mock.set_position(MNQ, 2)
    mock.faults["/Position/closeContract"] = ["reject"]
    outcome = await execute(broker, BrokerCall("close", ACCT, contract_id=MNQ, expect_size=0), **fast())
    assert (outcome.status, outcome.retryable, outcome.attempts) == ("failed", False, 1)
    assert "Rejected by risk" in outcome.detail and mock.size() == 2


async def test_swallowed_close_error_is_retried_until_the_state_shows_it(gateway: Any) -> None:
    """The SDK's own helper says "failed" even when the close went through: the state decides."""
    from project_x_py import EventBus, PositionManager

    mock, broker = gateway
    mock.set_position(MNQ, 2)
    mock.faults["/Position/closeContract"] = ["500+apply"]
    swallowed = await PositionManager(broker.client, EventBus()).close_position_direct(MNQ)
    assert swallowed == {"success": False, "error": "Operation failed"} and mock.size() == 0

    mock.set_position(MNQ, 2)
    mock.faults["/Position/closeContract"] = [500, 500, 500]
    outcome = await execute(broker, BrokerCall("close", ACCT, contract_id=MNQ, expect_size=0), **fast(retries=2))
    assert (outcome.status, outcome.attempts) == ("failed", 3)
    assert outcome.retryable and "position is 2" in outcome.detail


async def test_modify_stop_and_cancel_through_the_executor(gateway: Any) -> None:
    mock, broker = gateway
    mock.orders[55] = mock.order(55, 4, 1, 1, 26236.0)
    move = BrokerCall("modify_stop", ACCT, contract_id=MNQ, order_id=55, stop_price=Decimal("26240.00"))
    assert (await execute(broker, move, **fast())).status == "confirmed"
    mock.faults["/Order/cancel"] = ["500+apply"]
    outcome = await execute(broker, BrokerCall("cancel", ACCT, contract_id=MNQ, order_id=55), **fast())
    assert (outcome.status, len(mock.requests_to("/Order/cancel"))) == ("confirmed", 1)


# ------------------------------------------------------------------ credentials and imports


def test_credentials_come_from_the_environment_and_never_print() -> None:
    from riskc.engine.adapters.projectx.sdk import Credentials, MissingCredentials

    creds = Credentials.from_env(
        {"PROJECT_X_USERNAME": "trader", "PROJECT_X_API_KEY": "k-0123456789-secret", "PROJECT_X_ACCOUNT_NAME": "50KTC"}
    )
    assert (creds.username, creds.api_key, creds.account_name) == ("trader", "k-0123456789-secret", "50KTC")
    assert "secret" not in repr(creds) and "trader" not in repr(creds)
    with pytest.raises(MissingCredentials, match="set PROJECT_X_API_KEY in the environment"):
        Credentials.from_env({"PROJECT_X_USERNAME": "trader"})


def test_redact_hides_tokens_and_credentials_in_use() -> None:
    from riskc.engine.adapters.projectx import sdk as projectx

    projectx._secrets.add("k-0123456789-secret")
    text = projectx.redact(
        "GET /hubs/user?access_token=abc.def&id=1 Bearer xyz eyJhbGciOi.eyJzdWIi.sig k-0123456789-secret"
    )
    assert text == "GET /hubs/user?access_token=***&id=1 Bearer *** *** ***"


def test_importing_the_adapter_and_the_executor_does_not_import_the_sdk() -> None:
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import sys, riskc.engine.adapters.projectx.sdk, riskc.engine.enforce.executor, riskc.engine.cli.record_cmd\n"
        "assert 'project_x_py' not in sys.modules\nprint('ok')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (run.returncode, run.stdout.strip()) == (0, "ok"), run.stderr
