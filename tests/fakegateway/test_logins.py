"""Several accounts and several logins, live, through the real SDK against the fake Gateway
(issue 21, PRODUCT.md §8): one login serves all its accounts over ONE connection (one login
request, one user hub subscribing each account, one rate limit); a breach on one account acts on
that account only; a rejected token is replaced once and every account reconciled; `logins:`
reads each login's credentials from the variables it names, and never shows them; `accounts:
all` guards every account a login lists that can trade. Every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from riskc.engine.daemon.config import Credentials, load_config
from riskc.engine.daemon.daemon import Daemon
from riskc.engine.daemon.loops import build_loops

from .conftest import MNQ, bounded
from .server import FakeGateway
from .test_daemon_e2e import config_head, until

A = 13298777  # the fake's default account
B, C, D = 13298778, 13298779, 13298780
LIMIT_2 = 'policy "live"\n  timezone America/Chicago\n\nuse max_contracts(limit: 2)\n'


def write_config(tmp: Path, gw: FakeGateway, accounts: str, *, logins: str = "", reconcile: str = "30s") -> Path:
    policy = tmp / "p.risk"
    policy.write_text(LIMIT_2)
    path = tmp / "riskc.yaml"
    body = config_head(tmp, gw, reconcile) + "alerts: {console: false}\nweb: false\n"
    path.write_text(body + logins + accounts.replace("POLICY", str(policy)))
    return path


def start(path: Path, credentials: Any) -> tuple[Daemon, asyncio.Task]:
    daemon = Daemon(load_config(path), live_view=False)
    return daemon, asyncio.create_task(daemon.run(lambda d: build_loops(d, credentials), ()))


def start_two(gw: FakeGateway, tmp: Path) -> tuple[Daemon, asyncio.Task]:
    """Accounts A and B on the one login, MNQ priced: the daemon started on TWO_ACCOUNTS."""
    gw.add_account(B, "50KTC-V2-7654321")
    gw.set_price(MNQ, 26250.0)
    return start(write_config(tmp, gw, TWO_ACCOUNTS), Credentials(gw.username, gw.api_key))


async def all_reconciled(daemon: Daemon, count: int = 2) -> None:
    await until(lambda: len(daemon.loops) == count and all(lp.activity.last_reconcile for lp in daemon.loops))


async def stop(daemon: Daemon, task: asyncio.Task) -> None:
    daemon.stop()
    await asyncio.wait_for(task, 30)


def loop_of(daemon: Daemon, account_id: int) -> Any:
    return next(lp for lp in daemon.loops if lp.account_id == account_id)


TWO_ACCOUNTS = """\
accounts:
  - {name: 50KTC-V2-1234567, policies: [POLICY]}
  - {id: 13298778, policies: [POLICY]}
"""


@bounded(60)
async def test_two_accounts_of_one_login_share_one_login_one_hub_and_one_rate_limit(
    gw: FakeGateway, tmp_path: Path
) -> None:
    gw.add_account(B, "50KTC-V2-7654321")
    gw.set_price(MNQ, 26250.0)
    gw.set_position(MNQ, 1, 26246.0, account_id=A)
    gw.set_position(MNQ, 1, 26246.0, account_id=B)
    daemon, task = start(write_config(tmp_path, gw, TWO_ACCOUNTS), Credentials(gw.username, gw.api_key))
    try:
        await all_reconciled(daemon)
        assert len(gw.requests_to("/Auth/loginKey")) == 1
        assert len(gw.requests_to("/Account/search")) == 2  # the login's, and one shared by both reconciliations
        (user,) = gw.connections("user")
        assert len(gw.connections("market")) == 1
        assert gw.subscribed_accounts(user) == {A, B}
        # B's position goes over the limit, announced on the one user hub: only B is cut.
        gw.set_position(MNQ, 3, 26246.0, account_id=B)
        assert await gw.push_user("GatewayUserPosition", gw.position(MNQ, B)) == 1
        requests = await gw.wait_for_request("/Position/partialCloseContract", timeout=20)
        assert requests[0].json == {"accountId": B, "contractId": MNQ, "size": 1}
        await until(lambda: gw.signed_size(MNQ, B) == 2)
        # A quote of MNQ, held by both, reaches both accounts.
        before = {lp.account_id: lp.activity.messages for lp in daemon.loops}
        await gw.push_market(
            "GatewayQuote",
            MNQ,
            {
                "symbol": "F.US.MNQ",
                "lastPrice": 26251.0,
                "bestBid": 26250.75,
                "bestAsk": 26251.0,
                "timestamp": "2025-12-01T15:00:00+00:00",
            },
        )
        await until(lambda: all(lp.activity.messages > before[lp.account_id] for lp in daemon.loops))
        # Every request of either account was counted against the one limit of the login.
        admission = loop_of(daemon, A).port.admission
        assert loop_of(daemon, B).port.admission is admission
        reads = [r for r in gw.requests if r.path == "/Position/searchOpen"]
        assert {r.json["accountId"] for r in reads} == {A, B}
        assert admission.used() >= len(reads) + 1  # the reads of both, and B's close
    finally:
        await stop(daemon, task)
    assert gw.signed_size(MNQ, A) == 1  # A was never touched
    assert all(r.json["accountId"] == B for r in gw.requests_to("/Position/partialCloseContract"))
    assert len(gw.requests_to("/Auth/loginKey")) == 1


@bounded(60)
async def test_a_rejected_token_is_replaced_once_and_every_account_reconciled(gw: FakeGateway, tmp_path: Path) -> None:
    daemon, task = start_two(gw, tmp_path)
    try:
        await all_reconciled(daemon)
        first = {lp.account_id: lp.activity.last_reconcile for lp in daemon.loops}
        negotiated = len(gw.negotiations)
        gw.revoke_tokens()  # REST answers 401 from now on; the open hub sockets stay up
        gw.set_position(MNQ, 3, 26246.0, account_id=B)
        await gw.push_user("GatewayUserPosition", gw.position(MNQ, B))  # B's cut meets the 401
        await until(lambda: gw.signed_size(MNQ, B) == 2, timeout=30)
        await until(lambda: all(lp.activity.last_reconcile != first[lp.account_id] for lp in daemon.loops))
        assert len(gw.requests_to("/Auth/loginKey")) == 2  # the first login and ONE more
        assert len(gw.negotiations) == negotiated and len(gw.connections("user")) == 1  # hubs not rebuilt
        assert not any(lp.engine.stale for lp in daemon.loops)
    finally:
        await stop(daemon, task)


TWO_LOGINS = """\
logins:
  - {name: main, username_env: PX_MAIN_USER, api_key_env: PX_MAIN_KEY}
  - {name: second, username_env: PX_SECOND_USER, api_key_env: PX_SECOND_KEY}
"""
SECOND_KEY = "second-login-api-key-9f8e7d6c"


@bounded(60)
async def test_two_logins_from_named_variables_never_show_their_secrets(
    gw: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from .sdk import quiet_sdk_logging

    gw.add_login("second-user", SECOND_KEY)
    gw.add_account(B, "50KTC-V2-7654321", login="second-user")
    gw.set_price(MNQ, 26250.0)
    gw.set_position(MNQ, 3, 26246.0, account_id=B)  # over the limit: cut through the second login
    monkeypatch.setenv("PX_MAIN_USER", gw.username)
    monkeypatch.setenv("PX_MAIN_KEY", gw.api_key)
    monkeypatch.setenv("PX_SECOND_USER", "second-user")
    monkeypatch.setenv("PX_SECOND_KEY", SECOND_KEY)
    accounts = "accounts:\n  - {id: 13298777, login: main, policies: [POLICY]}\n"
    accounts += "  - {id: 13298778, login: second, policies: [POLICY]}\n"
    quiet_sdk_logging(logging.DEBUG)  # the SDK's own debug lines too: none may show a secret
    caplog.set_level(logging.DEBUG)
    try:
        daemon, task = start(write_config(tmp_path, gw, accounts, logins=TWO_LOGINS), None)
        try:
            await until(lambda: gw.signed_size(MNQ, B) == 2, timeout=30)
            logins = gw.requests_to("/Auth/loginKey")
            assert sorted(r.json["userName"] for r in logins) == sorted([gw.username, "second-user"])
            users = gw.connections("user")
            assert {frozenset(gw.subscribed_accounts(c)) for c in users} == {frozenset({A}), frozenset({B})}
            gw.fail_next("/Position/searchOpen", status=500, times=2)  # errors get logged
            await asyncio.sleep(0.5)
        finally:
            await stop(daemon, task)
    finally:
        quiet_sdk_logging(logging.WARNING)
    assert [r.json["accountId"] for r in gw.requests_to("/Position/partialCloseContract")] == [B]
    captured = caplog.text + (tmp_path / "log.jsonl").read_text()
    from riskc.engine.store import Store

    with Store.open_readonly(tmp_path / "state.db") as store:
        captured += "".join(str(r.payload) for r in store.audit_records())
    assert captured and SECOND_KEY not in captured and gw.api_key not in captured


def test_a_missing_login_variable_is_named_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from riskc.engine.cli.main import main

    gw = FakeGateway()  # not started: riskc must stop before any connection
    path = write_config(tmp_path, gw, "accounts:\n  - {id: 1, login: main, policies: [POLICY]}\n", logins=TWO_LOGINS)
    monkeypatch.setenv("PX_MAIN_USER", "main-user-name")
    monkeypatch.setenv("PX_MAIN_KEY", "main-key-0123456789")
    monkeypatch.setenv("PX_SECOND_USER", "second-user-name")
    monkeypatch.delenv("PX_SECOND_KEY", raising=False)
    result = CliRunner().invoke(main, ["run", "--config", str(path), "--plain", "--max-time", "1"])
    assert result.exit_code == 2, result.output
    assert "PX_SECOND_KEY" in result.output and "login `second`" in result.output
    assert "Traceback" not in result.output
    for secret in ("main-key-0123456789", "second-user-name", "main-user-name"):
        assert secret not in result.output


@bounded(60)
async def test_accounts_all_guards_every_account_the_login_lists_that_can_trade(
    gw: FakeGateway, tmp_path: Path
) -> None:
    from riskc.engine.daemon.board.status import status_json

    gw.add_account(B, "50KTC-V2-2")
    gw.add_account(C, "50KTC-V2-3")
    gw.add_account(D, "50KTC-V2-FAILED", can_trade=False)
    gw.set_price(MNQ, 26250.0)
    gw.set_position(MNQ, 3, 26246.0, account_id=C)
    daemon, task = start(
        write_config(tmp_path, gw, "accounts: {all: true, policies: [POLICY]}\n"), Credentials(gw.username, gw.api_key)
    )
    try:
        await until(lambda: len(daemon.loops) == 3 and all(lp.activity.last_reconcile for lp in daemon.loops))
        shown = {a["id"]: a["name"] for a in status_json(daemon)["accounts"]}
        assert shown == {A: gw.accounts[0]["name"], B: "50KTC-V2-2", C: "50KTC-V2-3"}
        assert len(gw.requests_to("/Auth/loginKey")) == 1
        (user,) = gw.connections("user")
        assert gw.subscribed_accounts(user) == {A, B, C}
        await until(lambda: gw.signed_size(MNQ, C) == 2, timeout=20)
    finally:
        await stop(daemon, task)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert next(r for r in log if r.get("event") == "started")["accounts"] == 3
    from riskc.engine.cli.main import main

    status = CliRunner().invoke(main, ["status", "--config", str(tmp_path / "riskc.yaml"), "--json"])
    assert status.exit_code == 0, status.output
    assert sorted(a["id"] for a in json.loads(status.output)["accounts"]) == [A, B, C]


@bounded(30)
async def test_stops_of_the_second_account_are_placed_and_moved_for_that_account(gw: FakeGateway) -> None:
    """The SDK's order manager refuses an account other than its client's, and moves a stop under
    its client's account id: each account of the login must be its own to it."""
    from decimal import Decimal

    from riskc.engine.adapters.port import BrokerCall
    from riskc.engine.adapters.projectx.sdk import AccountsWanted, AccountWanted, connect_login

    from .test_projectx_e2e import credentials, urls

    gw.add_account(B, "50KTC-V2-7654321")
    gw.set_position(MNQ, 2, 26246.0, account_id=B)
    wanted = AccountsWanted((AccountWanted(id=A), AccountWanted(id=B)))
    connection = await connect_login(credentials(gw), urls(gw), wanted)
    try:
        port = connection.brokers[B]
        stop = BrokerCall("place_stop", B, contract_id=MNQ, side="sell", size=2, stop_price=Decimal("26236"), key="s")
        placed = await port.send(stop)
        order = gw.orders[placed["order_id"]]
        assert order["accountId"] == B and order["stopPrice"] == 26236
        move = BrokerCall("modify_stop", B, order_id=order["id"], stop_price=Decimal("26240"), key="m")
        await port.send(move)
        assert gw.orders[order["id"]]["stopPrice"] == 26240
        assert [r.json["accountId"] for r in gw.requests_to("/Order/modify")] == [B]
    finally:
        await connection.close()


@bounded(90)
async def test_accounts_all_on_a_desk_is_split_between_two_workers_by_lease(
    gw: FakeGateway, tmp_path: Path, pg_url: str
) -> None:
    """Two `riskc run` workers on one PostgreSQL desk, `accounts: all` over the fake's four
    accounts: the first takes all four, the second joins and the leases split them two and two;
    a breach on an account is cut once, by its holder, though both workers hear it."""
    import os
    import sys

    from riskc.engine.store import Store
    from riskc.engine.store.desk import leases

    def held() -> dict[int, str]:
        with Store.open_readonly(pg_url) as store:
            return {row.account_id: row.worker for row in leases(store.db) if row.held}

    for account_id in (B, C, D):
        gw.add_account(account_id, f"50KTC-V2-{account_id}")
    gw.set_price(MNQ, 26250.0)
    path = write_config(tmp_path, gw, "accounts: {all: true, policies: [POLICY]}\n")
    path.write_text(path.read_text().replace(f"state: {tmp_path / 'state.db'}", f"state: {pg_url}"))
    env = dict(os.environ, PROJECT_X_USERNAME=gw.username, PROJECT_X_API_KEY=gw.api_key)
    command = ["-c", "from riskc.engine.cli.main import main; main()", "run", "--config", str(path)]
    command += ["--plain", "--no-web", "--max-time", "80"]
    workers = []

    async def spawn() -> Any:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        workers.append(worker)
        return worker

    async def settled(predicate: Any, timeout: float) -> dict[int, str]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                now = held()
            except Exception:  # the desk is being created
                now = {}
            if predicate(now):
                return now
            assert asyncio.get_running_loop().time() < deadline, f"leases: {now}"
            assert all(w.returncode is None for w in workers), [await w.communicate() for w in workers]
            await asyncio.sleep(0.2)

    try:
        first = await spawn()
        alone = await settled(lambda h: len(h) == 4, 30)
        assert set(alone) == {A, B, C, D} and {w.rsplit(":", 1)[1] for w in alone.values()} == {str(first.pid)}
        second = await spawn()
        split = await settled(lambda h: len(h) == 4 and len(set(h.values())) == 2, 30)
        pids = sorted(w.rsplit(":", 1)[1] for w in split.values())
        assert pids == sorted([str(first.pid)] * 2 + [str(second.pid)] * 2)
        taken = next(a for a, w in split.items() if w.endswith(f":{second.pid}"))
        await asyncio.sleep(1.0)  # the taker's engine recovers and reconciles
        gw.set_position(MNQ, 3, 26246.0, account_id=taken)
        assert await gw.push_user("GatewayUserPosition", gw.position(MNQ, taken)) == 2  # both workers hear it
        await gw.wait_for_request("/Position/partialCloseContract", timeout=20)
        await asyncio.sleep(1.5)
        assert [r.json for r in gw.requests_to("/Position/partialCloseContract")] == [
            {"accountId": taken, "contractId": MNQ, "size": 1}
        ]
        assert len(gw.requests_to("/Auth/loginKey")) == 2  # one login per worker, whatever the accounts
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.terminate()
        for worker in workers:
            try:
                await asyncio.wait_for(worker.communicate(), 20)
            except TimeoutError:
                worker.kill()
    with Store.open_readonly(pg_url) as store:
        assert store.verify_audit().ok


@bounded(60)
async def test_accounts_all_picks_up_an_account_that_appears_while_running(gw: FakeGateway, tmp_path: Path) -> None:
    gw.add_account(B, "50KTC-V2-2")
    gw.set_price(MNQ, 26250.0)
    path = write_config(tmp_path, gw, "accounts: {all: true, policies: [POLICY]}\n", reconcile="1s")
    daemon, task = start(path, Credentials(gw.username, gw.api_key))
    try:
        await all_reconciled(daemon)
        gw.add_account(C, "50KTC-V2-NEW")  # a new Combine, over the limit already
        gw.set_position(MNQ, 3, 26246.0, account_id=C)
        await until(lambda: gw.signed_size(MNQ, C) == 2, timeout=20)
        assert sorted(lp.account_id for lp in daemon.loops) == [A, B, C]
        (user,) = gw.connections("user")
        await until(lambda: gw.subscribed_accounts(user) == {A, B, C})
        gw.set_position(MNQ, 4, 26246.0, account_id=C)  # heard on the one hub, as the others are
        assert await gw.push_user("GatewayUserPosition", gw.position(MNQ, C)) == 1
        await until(lambda: gw.signed_size(MNQ, C) == 2, timeout=20)
        assert len(gw.requests_to("/Auth/loginKey")) == 1
    finally:
        await stop(daemon, task)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["account"] for r in log if r.get("event") == "account_added"] == [C]


@bounded(30)
async def test_a_reconciliation_waits_for_the_rate_limit_instead_of_failing(gw: FakeGateway, px: Any) -> None:
    """The login's budget is spent (other accounts' reads): the next reconciliation waits its turn,
    longer than its read timeout, and then reads; it is not a failure that would pause its account."""
    import datetime as dt

    from riskc.engine.adapters.admission import Admission
    from riskc.engine.adapters.projectx.sdk import ProjectXBroker

    admission = Admission(6, 0, window=1.5)
    broker = ProjectXBroker(px, px.account_info.id, read_timeout=0.5, admission=admission)
    await admission.acquire(6)  # the whole window, used
    started = asyncio.get_running_loop().time()
    state = await broker.state(px.account_info.id, trades_since=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert asyncio.get_running_loop().time() - started >= 1.0 and state.account is not None


@bounded(60)
async def test_after_the_hubs_drop_both_accounts_are_subscribed_again_and_reconciled(
    gw: FakeGateway, tmp_path: Path
) -> None:
    """The SDK restores only its own account's subscriptions on a reopened hub: riskc sends the
    other accounts' again, and every account reconciles before its rules act."""
    daemon, task = start_two(gw, tmp_path)
    try:
        await all_reconciled(daemon)
        first = {lp.account_id: lp.activity.last_reconcile for lp in daemon.loops}
        gw.set_position(MNQ, 3, 26246.0, account_id=B)  # while the hubs are down: only REST knows
        await gw.drop_connections()
        await until(lambda: all(lp.activity.last_reconcile != first[lp.account_id] for lp in daemon.loops), 30)
        await until(lambda: gw.signed_size(MNQ, B) == 2, timeout=20)  # found by B's reconciliation
        (user,) = gw.connections("user")
        await until(lambda: gw.subscribed_accounts(user) == {A, B})
        gw.set_position(MNQ, 4, 26246.0, account_id=B)
        assert await gw.push_user("GatewayUserPosition", gw.position(MNQ, B)) == 1  # B heard again
        await until(lambda: gw.signed_size(MNQ, B) == 2, timeout=20)
        assert len(gw.requests_to("/Auth/loginKey")) == 1
    finally:
        await stop(daemon, task)


GROUP_POLICY = """\
policy "desk"
  scope group
  timezone America/Chicago

rule group_size
  "No more than 3 contracts across the group."
  when group.open_contracts > 3
  then flatten
"""


@bounded(60)
async def test_a_group_of_two_accounts_on_one_login_is_flattened_together(
    gw: FakeGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Groups over live accounts served by one connection: neither account breaches alone (2 of
    its limit of 2), the group does (4 > 3): both are closed, each under its own account id. An
    account of another login listed between them reorders the loops (one connection per login):
    the group still finds its members by their entries."""
    gw.add_account(B, "50KTC-V2-7654321")
    gw.add_login("second-user", SECOND_KEY)
    gw.add_account(C, "50KTC-V2-OTHER", login="second-user")
    gw.set_price(MNQ, 26250.0)
    for name, value in (("PX_MAIN_USER", gw.username), ("PX_MAIN_KEY", gw.api_key)):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PX_SECOND_USER", "second-user")
    monkeypatch.setenv("PX_SECOND_KEY", SECOND_KEY)
    (tmp_path / "desk.risk").write_text(GROUP_POLICY)
    names = "50KTC-V2-1234567", "50KTC-V2-7654321"  # by name: the loops are found by their entries
    groups = f"groups:\n  - {{name: desk, accounts: [{', '.join(names)}], policies: [{tmp_path / 'desk.risk'}]}}\n"
    accounts = "accounts:\n" + f"  - {{name: {names[0]}, login: main, policies: [POLICY]}}\n"
    accounts += "  - {name: 50KTC-V2-OTHER, login: second, policies: [POLICY]}\n"
    accounts += f"  - {{name: {names[1]}, login: main, policies: [POLICY]}}\n"
    daemon, task = start(write_config(tmp_path, gw, accounts + groups, logins=TWO_LOGINS), None)
    try:
        await until(lambda: len(daemon.loops) == 3 and all(lp.activity.last_reconcile for lp in daemon.loops))
        assert {lp.account_id: len(lp.groups) for lp in daemon.loops} == {A: 1, B: 1, C: 0}
        gw.set_position(MNQ, 2, 26246.0, account_id=A)
        await gw.push_user("GatewayUserPosition", gw.position(MNQ, A))
        await asyncio.sleep(0.5)
        assert gw.requests_to("/Position/closeContract") == []  # 2 in the group: nothing yet
        gw.set_position(MNQ, 2, 26246.0, account_id=B)
        await gw.push_user("GatewayUserPosition", gw.position(MNQ, B))
        await until(lambda: gw.signed_size(MNQ, A) == 0 and gw.signed_size(MNQ, B) == 0, timeout=20)
        closed = sorted(r.json["accountId"] for r in gw.requests_to("/Position/closeContract"))
        assert closed == [A, B]
        assert len(gw.requests_to("/Auth/loginKey")) == 2 and len(gw.connections("user")) == 2
    finally:
        await stop(daemon, task)


@bounded(30)
async def test_a_rejected_token_makes_every_account_reconcile_a_planned_refresh_does_not(gw: FakeGateway) -> None:
    from riskc.engine.adapters.projectx.sdk import (
        AccountsWanted,
        AccountWanted,
        ConnectionEvent,
        ConnectOptions,
        connect_login,
    )

    from .test_projectx_e2e import credentials, urls

    gw.add_account(B, "50KTC-V2-7654321")
    always = ConnectOptions(refresh_before=gw.token_ttl_seconds + 60)  # every ensure() refreshes
    wanted = AccountsWanted((AccountWanted(id=A), AccountWanted(id=B)))
    connection = await connect_login(credentials(gw), urls(gw), wanted, options=always)
    inboxes = {account_id: asyncio.Queue() for account_id in (A, B)}
    for account_id, inbox in inboxes.items():
        connection.attach(account_id, inbox)

    def renewed() -> dict[int, int]:
        return {
            a: sum(1 for i in list(q._queue) if isinstance(i, ConnectionEvent) and i.state == "renewed")  # type: ignore[attr-defined]
            for a, q in inboxes.items()
        }

    try:
        await connection.brokers[A].state(A)  # a planned refresh: a new login, nothing missed
        await asyncio.sleep(0.2)
        assert len(gw.requests_to("/Auth/loginKey")) >= 2 and renewed() == {A: 0, B: 0}
        gw.revoke_tokens()  # the Gateway rejects the token: the next read logs in again
        connection.session.refresh_before = 0.0
        await connection.brokers[B].state(B)
        await asyncio.sleep(0.2)
        assert renewed() == {A: 1, B: 1}
    finally:
        await connection.close()
