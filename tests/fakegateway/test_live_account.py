"""A live account through the real SDK against the fake Gateway (issue 15, PRODUCT.md §8): closes
that never double under a slow broker, instruments from the broker's contract data, sessions that
heal. The fake behaves as the real Gateway is documented to: a request it received acts whether or
not the client still waits for the reply. Every wait is bounded."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from riskc.engine.adapters.admission import Admission
from riskc.engine.adapters.port import BrokerCall, BrokerError
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


# -- instruments from the broker ----------------------------------------------------------------

CPE = "CON.F.US.CPE.Z25"  # copper: not in riskc's built-in table
SIL = "CON.F.US.SIL.Z25"  # micro silver: idem
COPPER = {"id": CPE, "name": "CPEZ5", "description": "Copper: December 2025", "tickSize": 0.0005, "tickValue": 12.5}
SILVER = {"id": SIL, "name": "SILZ5", "description": "Micro Silver: December 2025", "tickSize": 0.005, "tickValue": 5.0}
FLATTEN_POLICY = 'policy "live"\n  timezone America/Chicago\n  on_error flatten\n\nuse max_contracts(limit: 5)\n'


@bounded(60)
async def test_copper_and_micro_silver_are_priced_from_the_brokers_contract_data(gw: FakeGateway, tmp_path) -> None:
    """A copper position at start and a micro silver one seen first on the hub (bare, as the
    Gateway's docs show it), both within every limit under `on_error flatten`: nothing is closed,
    both are priced with the Gateway's tick size and value, and the specs are cached in the store."""
    from riskc.engine.daemon.daemon import Daemon
    from riskc.engine.store import Store

    from .test_daemon_e2e import config, until

    for contract in (COPPER, SILVER):
        gw.set_contract(**contract, activeContract=True, symbolId=f"F.US.{contract['id'].split('.')[3]}")
    gw.set_position(CPE, 1, 5.1)
    policy = tmp_path / "p.risk"
    policy.write_text(FLATTEN_POLICY)
    daemon, task = _start(Daemon, config(tmp_path, gw, policy), gw)
    try:
        await until(lambda: bool(daemon.loops) and _views(daemon).get(CPE) is not None, timeout=20)
        assert _views(daemon)[CPE].tick_value == Decimal("12.5")
        gw.set_position(SIL, 1, 31.5)
        await gw.push_raw("user", "GatewayUserPosition", [gw.position(SIL)])
        await until(lambda: _views(daemon).get(SIL) is not None)
        view = _views(daemon)[SIL]
        assert (view.tick_size, view.tick_value) == (Decimal("0.005"), Decimal("5.0"))
        await asyncio.sleep(0.5)
        assert gw.requests_to("/Position/closeContract") == []
        assert gw.signed_size(CPE) == 1 and gw.signed_size(SIL) == 1
        assert [r.json for r in gw.requests_to("/Contract/searchById")] == [{"contractId": CPE}, {"contractId": SIL}]
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 30)
    with Store.open(tmp_path / "state.db") as store:
        cached = {c.symbol: (c.contract_id, c.tick_size, c.tick_value) for c in store.cached_instruments()}
    assert cached == {"CPE": (CPE, Decimal("0.0005"), Decimal("12.5")), "SIL": (SIL, Decimal("0.005"), Decimal("5.0"))}


@bounded(60)
async def test_a_cached_spec_prices_the_position_when_the_contract_search_fails(gw: FakeGateway, tmp_path) -> None:
    from riskc.engine.daemon.daemon import Daemon
    from riskc.engine.store import Store
    from riskc.engine.store.instruments import CachedInstrument

    from .test_daemon_e2e import config, until

    with Store.open(tmp_path / "state.db") as store:
        at = __import__("datetime").datetime(2025, 12, 1, tzinfo=__import__("datetime").UTC)
        store.save_instrument(CachedInstrument("CPE", CPE, Decimal("0.0005"), Decimal("12.5"), "Copper", "broker", at))
    gw.set_position(CPE, 1, 5.1)  # the fake has no CPE contract: searchById and search fail
    policy = tmp_path / "p.risk"
    policy.write_text(FLATTEN_POLICY)
    daemon, task = _start(Daemon, config(tmp_path, gw, policy), gw)
    try:
        await until(lambda: bool(daemon.loops) and _views(daemon).get(CPE) is not None, timeout=20)
        assert _views(daemon)[CPE].tick_value == Decimal("12.5")
        await asyncio.sleep(0.3)
        assert gw.requests_to("/Position/closeContract") == []
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 30)


@bounded(60)
async def test_a_position_stamped_with_dotnets_default_time_is_followed_and_guarded(gw: FakeGateway, tmp_path) -> None:
    """A time the Gateway never set comes as .NET's default, `0001-01-01T00:00:00`, which no
    calendar or local clock can place: the position is followed all the same (its time taken as
    absent), from the REST state at start and from the hub, and the guard acts on it: the
    oversize position is reduced to the limit, not flattened as a rule that failed would be."""
    from riskc.engine.daemon.daemon import Daemon

    from .test_daemon_e2e import config, until

    gw.set_position(MNQ, 1, 21000.0)
    gw.position(MNQ)["creationTimestamp"] = "0001-01-01T00:00:00"
    policy = tmp_path / "p.risk"
    policy.write_text(FLATTEN_POLICY)
    daemon, task = _start(Daemon, config(tmp_path, gw, policy), gw)
    try:
        await until(lambda: bool(daemon.loops) and _views(daemon).get(MNQ) is not None, timeout=20)
        gw.set_position(MNQ, 7, 21000.0)
        gw.position(MNQ)["creationTimestamp"] = "0001-01-01T00:00:00"
        await gw.push_raw("user", "GatewayUserPosition", [gw.position(MNQ)])
        await until(lambda: gw.requests_to("/Position/partialCloseContract") != [], timeout=20)
        [close] = gw.requests_to("/Position/partialCloseContract")
        assert close.json["size"] == 2 and gw.requests_to("/Position/closeContract") == []
        assert not task.done()
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 30)


def _start(daemon_class: Any, path: Any, gw: FakeGateway) -> tuple[Any, asyncio.Task]:
    from riskc.engine.daemon.config import Credentials, load_config
    from riskc.engine.daemon.loops import build_loops

    daemon = daemon_class(load_config(path), live_view=False)
    credentials = Credentials(gw.username, gw.api_key)
    return daemon, asyncio.create_task(daemon.run(lambda d: build_loops(d, credentials), ()))


def _views(daemon: Any) -> dict[str, Any]:
    return {v.contract_id: v for v in daemon.loops[0].engine.position_views()}


# -- sessions that heal -------------------------------------------------------------------------


async def _connect(gw: FakeGateway, **options: Any) -> tuple[Any, Any]:
    from riskc.engine.adapters.projectx.sdk import ConnectOptions, connect

    from .test_projectx_e2e import Inbox, credentials, urls

    inbox = Inbox()
    fast = ConnectOptions(watch_interval=0.05, settle=0.05, revive_after=2.0, connect_timeout=10, **options)
    connection = await asyncio.wait_for(connect(credentials(gw), urls(gw), sink=inbox.queue, options=fast), 15)
    return connection, inbox


@bounded(40)
async def test_a_revoked_token_while_the_hubs_stay_up_is_replaced_by_a_fresh_login(gw: FakeGateway) -> None:
    """The Gateway rejects the token (401) while the hubs stay up: the close gets a 401 (refused
    before acting), riskc logs in again at once and the close is resent and confirmed; reads
    work again too. The SDK alone would never log in again: the token is not near its expiry."""
    gw.set_position(MNQ, 4, 26246.0)
    connection, _ = await _connect(gw)
    try:
        logins = len(gw.requests_to("/Auth/loginKey"))
        gw.revoke_tokens()
        assert connection.health() == {"user": True, "market": True}
        call = BrokerCall("close", connection.account_id, contract_id=MNQ, expect_size=0)
        outcome = await execute(connection.broker, call, timeout=5, backoff=0.05)
        assert outcome.status == "confirmed", outcome.detail
        assert gw.signed_size(MNQ) == 0 and len(gw.requests_to("/Position/closeContract")) == 2
        assert len(gw.requests_to("/Auth/loginKey")) == logins + 1  # once, not per request
        gw.revoke_tokens()
        state = await connection.broker.state(connection.account_id)  # a read heals the same way
        assert state.positions == () and len(gw.requests_to("/Auth/loginKey")) == logins + 2
    finally:
        await asyncio.wait_for(connection.close(), 15)


@bounded(40)
async def test_an_account_that_cannot_trade_is_found_followed_and_found_again_after_a_relogin(gw: FakeGateway) -> None:
    gw.accounts[0]["canTrade"] = False  # the active-only search hides it ("No accounts found")
    gw.set_position(MNQ, 1, 26246.0)
    connection, _ = await _connect(gw)
    try:
        assert connection.account_id == gw.account_id and connection.account["canTrade"] is False
        assert all(r.json == {"onlyActiveAccounts": False} for r in gw.requests_to("/Account/search"))
        gw.revoke_tokens()
        state = await connection.broker.state(connection.account_id)
        assert [p.contract_id for p in state.positions] == [MNQ]
        assert connection.session.logins == 2 and connection.account_id == gw.account_id
    finally:
        await asyncio.wait_for(connection.close(), 15)


@bounded(40)
async def test_gateway_logout_logs_in_again_and_rebuilds_the_hubs(gw: FakeGateway) -> None:
    connection, inbox = await _connect(gw)
    try:
        logins = len(gw.requests_to("/Auth/loginKey"))
        assert await gw.push_raw("user", "GatewayLogout", []) == 1
        await inbox.event("user", "disconnected", timeout=10)
        await inbox.event("user", "reconnected", timeout=15)
        await inbox.event("market", "reconnected", timeout=15)
        assert connection.logouts == 1 and len(gw.requests_to("/Auth/loginKey")) == logins + 1
    finally:
        await asyncio.wait_for(connection.close(), 15)


@bounded(40)
async def test_a_failing_suspended_order_query_degrades_instead_of_breaking_every_read(gw: FakeGateway) -> None:
    gw.set_position(MNQ, 2, 26246.0)
    gw.fail_next("/Order/v2/query", status=500, times=20)  # not a 404: the endpoint exists but fails
    connection, _ = await _connect(gw)  # start-up reads the state: it must not fail
    try:
        state = await connection.broker.state(connection.account_id)
        assert [p.size for p in state.positions] == [2] and state.extra["suspended_read"] is False
        assert connection.broker.optional_failures >= 1
    finally:
        await asyncio.wait_for(connection.close(), 15)


@bounded(20)
async def test_a_refused_login_is_one_clear_line(gw: FakeGateway) -> None:
    from riskc.engine.adapters.projectx.sdk import ConnectError, Credentials, connect

    from .test_projectx_e2e import urls

    with pytest.raises(ConnectError) as caught:
        await connect(Credentials("trader", "wrong-key-000"), urls(gw), sink=asyncio.Queue())
    text = str(caught.value)
    assert "\n" not in text and "refused the login" in text and "PROJECT_X_API_KEY" in text
    assert "wrong-key-000" not in text


@bounded(60)
async def test_the_daemon_follows_an_account_that_cannot_trade_and_auth_guard_keeps_it_flat(
    gw: FakeGateway, tmp_path
) -> None:
    from riskc.engine.daemon.daemon import Daemon

    from .test_daemon_e2e import config, until

    gw.accounts[0]["canTrade"] = False
    gw.set_price(MNQ, 26250.0)
    gw.set_position(MNQ, 1, 26246.0)
    policy = tmp_path / "p.risk"
    policy.write_text('policy "live"\n  timezone America/Chicago\n\nuse auth_guard\n')
    daemon, task = _start(Daemon, config(tmp_path, gw, policy), gw)
    try:
        await until(lambda: gw.signed_size(MNQ) == 0, timeout=30)
        assert [r.json for r in gw.requests_to("/Position/closeContract")] == [
            {"accountId": gw.account_id, "contractId": MNQ}
        ]
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 30)


@bounded(40)
async def test_a_hub_that_stops_pinging_is_rebuilt_and_reconnects() -> None:
    """A half-open socket: the market hub stays open but sends nothing, not even the keep-alive
    pings it sent before. riskc notices the silence, logs in again, rebuilds both hubs and
    reports them back (the daemon reconciles on that before rules act)."""
    async with FakeGateway(keepalive_interval=0.2) as gw:
        connection, inbox = await _connect(gw, silent_after=1.5)
        try:
            await asyncio.sleep(0.5)  # a few pings: the hubs have shown that they ping
            logins = len(gw.requests_to("/Auth/loginKey"))
            assert gw.silence("market") == 1
            event = await inbox.event("market", "disconnected", timeout=10)
            assert "silent" in event.detail
            await inbox.event("market", "reconnected", timeout=15)
            assert connection.revivals >= 1 and len(gw.requests_to("/Auth/loginKey")) > logins
            assert connection.health() == {"user": True, "market": True}
        finally:
            await asyncio.wait_for(connection.close(), 15)


@bounded(20)
async def test_a_hub_that_never_pinged_is_not_judged_silent(gw: FakeGateway) -> None:
    connection, inbox = await _connect(gw, silent_after=0.3)
    try:
        await asyncio.sleep(1.0)
        assert connection.revivals == 0 and connection.health() == {"user": True, "market": True}
    finally:
        await asyncio.wait_for(connection.close(), 15)


# -- one rate limit per login ---------------------------------------------------------------------


@bounded(30)
async def test_a_429_on_a_read_honours_retry_after_and_the_next_read_works(gw: FakeGateway, px: Any) -> None:
    """The SDK alone would sleep 60 s inside the read whatever Retry-After says; riskc fails the
    read at once, holds every request for Retry-After (2 s), then reads again."""
    import time

    gw.set_position(MNQ, 1, 26246.0)
    port = broker(px)
    gw.rate_limit_next("/Position/searchOpen", retry_after=2)
    started = time.monotonic()
    with pytest.raises(BrokerError, match="rate limiting"):
        await port.state(port.account_id)
    assert time.monotonic() - started < 2
    state = await port.state(port.account_id)
    assert [p.size for p in state.positions] == [1] and time.monotonic() - started >= 2


@bounded(30)
async def test_a_close_refused_with_429_is_sent_again_once_verified(gw: FakeGateway, px: Any) -> None:
    gw.set_position(MNQ, 2, 26246.0)
    port = broker(px)
    port.admission = Admission(100, 10)
    gw.rate_limit_next("/Position/closeContract", retry_after=1)
    call = BrokerCall("close", port.account_id, contract_id=MNQ, expect_size=0)
    outcome = await execute(port, call, timeout=10, backoff=0.05)
    assert outcome.status == "confirmed" and gw.signed_size(MNQ) == 0
    assert len(gw.requests_to("/Position/closeContract")) == 2


# -- login and connection failures ---------------------------------------------------------------


@bounded(60)
async def test_riskc_run_with_a_refused_login_is_one_line_and_exit_1(gw: FakeGateway, tmp_path) -> None:
    from click.testing import CliRunner

    from riskc.engine.cli.main import main

    from .test_daemon_e2e import config

    policy = tmp_path / "p.risk"
    policy.write_text(FLATTEN_POLICY)
    path = config(tmp_path, gw, policy)
    env = {"PROJECT_X_USERNAME": "trader", "PROJECT_X_API_KEY": "not-the-key-42"}
    result = await asyncio.to_thread(CliRunner().invoke, main, ["run", "--config", str(path), "--plain"], env=env)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert any("refused the login" in line and "PROJECT_X_API_KEY" in line for line in lines)
    assert "Traceback" not in result.output and "not-the-key-42" not in result.output


@bounded(30)
async def test_an_unreachable_gateway_is_retried_with_backoff_one_line_each(tmp_path) -> None:
    from riskc.engine.adapters.projectx.sdk import ConnectError
    from riskc.engine.daemon.live import StoppedWhileConnecting, _connect

    lines: list[str] = []

    class Daemon:
        stopping = asyncio.Event()

        class alerts:
            @staticmethod
            def alert(severity: str, text: str, **_: Any) -> None:
                lines.append(text)

        @staticmethod
        def log_record(record: dict[str, Any]) -> None:
            pass

    attempts = 0

    async def attempt() -> Any:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectError("cannot log in at http://127.0.0.1:9/api: ConnectError: refused")
        return "connected"

    assert await _connect(Daemon, attempt, backoff=(0.01, 0.02)) == "connected"
    assert len(lines) == 2 and all("\n" not in line and "retrying in" in line for line in lines)

    async def never() -> Any:
        raise ConnectError("the Gateway's hubs did not come up in time")

    async def stop_soon() -> None:
        await asyncio.sleep(0.05)
        Daemon.stopping.set()

    stopper = asyncio.create_task(stop_soon())
    with pytest.raises(StoppedWhileConnecting):
        await _connect(Daemon, never, backoff=(0.01,))
    await stopper

    async def refused() -> Any:
        raise ConnectError("refused the login", permanent=True)

    with pytest.raises(ConnectError):
        await _connect(Daemon, refused, backoff=(0.01,))


# -- stale prices -------------------------------------------------------------------------------


@bounded(60)
async def test_a_market_hub_outage_makes_price_rules_unevaluable_after_stale_after(gw: FakeGateway, tmp_path) -> None:
    """The market hub goes down and stays down; the user hub and REST keep working (reconciled
    every second). After stale_after (1 s) position_loss, which reads the open P&L, cannot be
    evaluated and on_error flatten closes the position: the reconciliation did not make the frozen
    mark current again."""
    import textwrap

    from riskc.engine.daemon.daemon import Daemon

    from .test_daemon_e2e import until

    gw.set_price(MNQ, 26250.0)
    gw.set_position(MNQ, 1, 26246.0)
    policy = tmp_path / "p.risk"
    policy.write_text(
        'policy "live"\n  timezone America/Chicago\n  on_error flatten\n\nuse position_loss(limit: $1000)\n'
    )
    path = tmp_path / "riskc.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        state: {tmp_path / "state.db"}
        log: {tmp_path / "log.jsonl"}
        stale_after: 1s
        broker:
          kind: projectx
          api_url: {gw.api_url}
          user_hub_url: {gw.user_hub_url}
          market_hub_url: {gw.market_hub_url}
        reconcile_every: 1s
        accounts:
          - policies: [{policy}]
        alerts: {{console: false}}
    """)
    )
    daemon, task = _start(Daemon, path, gw)
    try:
        await until(lambda: bool(daemon.loops) and MNQ in daemon.loops[0].engine.book.positions, timeout=20)
        await asyncio.sleep(1.5)
        assert gw.requests_to("/Position/closeContract") == []  # prices current: nothing to do
        gw.reject_hub_connections("market", times=1000)
        await gw.drop_connections("market")
        await until(lambda: gw.signed_size(MNQ) == 0, timeout=30)
        engine = daemon.loops[0].engine
        assert engine.prices_down_at is not None and not engine.stale
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 30)
    log = (tmp_path / "log.jsonl").read_text()
    assert "prices are" in log and "market data feed is down" in log


# -- payload shapes through the real SDK --------------------------------------------------------


@bounded(30)
async def test_a_multi_item_invocation_reaches_riskc_whole_and_every_contract_is_subscribed(gw: FakeGateway) -> None:
    """One `GatewayUserOrder` invocation carrying a list of two orders (one wrapped, one bare) on
    two contracts: both decode, and the new contract's market data is subscribed."""
    from riskc.engine.adapters.projectx.decode import decode

    mes = "CON.F.US.MES.Z25"
    connection, inbox = await _connect(gw)
    try:
        first = gw.add_order(MNQ, type=4, side=1, size=1, stop_price=26200.0)
        second = gw.add_order(mes, type=1, side=0, size=2, limit_price=6000.0)
        assert await gw.push_raw("user", "GatewayUserOrder", [[{"action": 1, "data": first}, second]]) == 1
        message = await inbox.message("GatewayUserOrder")
        assert [(e.order_id, e.contract_id) for e in decode(message)] == [(first["id"], MNQ), (second["id"], mes)]
        await gw.wait_for(lambda: any(i.arguments == [mes] for i in gw.invocations_of("SubscribeContractQuotes")))
        assert mes in connection.contracts
    finally:
        await asyncio.wait_for(connection.close(), 15)


@bounded(40)
async def test_the_token_is_replaced_before_it_expires_while_the_hubs_stay_up() -> None:
    """Tokens live 4 s; riskc logs in again 2 s before expiry (the watchdog looks every 0.5 s),
    so reads never meet an expired token and the hubs are not rebuilt for it."""
    async with FakeGateway(token_ttl_seconds=4) as gw:
        gw.set_position(MNQ, 1, 26246.0)
        connection, _ = await _connect(gw, refresh_before=2.0, auth_check_every=0.5)
        try:
            for _ in range(12):
                state = await connection.broker.state(connection.account_id)
                assert [p.size for p in state.positions] == [1]
                await asyncio.sleep(0.5)
            assert connection.session.logins >= 3 and connection.revivals == 0
            assert connection.health() == {"user": True, "market": True}
        finally:
            await asyncio.wait_for(connection.close(), 15)
