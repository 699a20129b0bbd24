"""`riskc run` against the fake Gateway with the real SDK: a position over the limit found at
start is cut, a policy edited mid-run takes effect, and after the server drops the sockets the SDK
reconnects and the daemon reconciles from REST before acting again. Every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from pathlib import Path

from riskc.engine.daemon.config import Credentials, load_config
from riskc.engine.daemon.daemon import Daemon
from riskc.engine.daemon.loops import build_loops
from riskc.engine.daemon.reload import watch_and_reload
from riskc.engine.store import Store

from .conftest import MNQ, bounded
from .server import FakeGateway

POLICY = 'policy "live"\n  timezone America/Chicago\n\nuse max_contracts(limit: {limit})\n'


async def until(predicate, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


def config_head(tmp: Path, gw: FakeGateway, reconcile: str = "30s") -> str:
    """What every fake-Gateway daemon's riskc.yaml has: the state and log in ``tmp``, the broker
    at the fake Gateway, how often it reconciles."""
    return textwrap.dedent(f"""\
        state: {tmp / "state.db"}
        log: {tmp / "log.jsonl"}
        broker:
          kind: projectx
          timeout: 5s
          retries: 2
          api_url: {gw.api_url}
          user_hub_url: {gw.user_hub_url}
          market_hub_url: {gw.market_hub_url}
        reconcile_every: {reconcile}
    """)


def config(tmp: Path, gw: FakeGateway, policy: Path) -> Path:
    path = tmp / "riskc.yaml"
    path.write_text(config_head(tmp, gw) + f"accounts:\n  - policies: [{policy}]\nalerts: {{console: false}}\n")
    return path


def audit_kinds(tmp: Path) -> list[str]:
    store = Store.open_readonly(tmp / "state.db")
    try:
        return [r.kind for r in store.audit_records()]
    finally:
        store.close()


@bounded(60)
async def test_daemon_enforces_reloads_and_reconciles_after_a_reconnect(gw: FakeGateway, tmp_path: Path) -> None:
    gw.set_price(MNQ, 26250.0)
    gw.set_position(MNQ, 3, 26246.0)
    policy = tmp_path / "p.risk"
    policy.write_text(POLICY.format(limit=2))
    daemon = Daemon(load_config(config(tmp_path, gw, policy)), live_view=False)
    credentials = Credentials(gw.username, gw.api_key)
    task = asyncio.create_task(daemon.run(lambda d: build_loops(d, credentials), (watch_and_reload,)))
    try:
        # 1. the position over the limit, found by the start-up reconciliation, is cut to 2
        requests = await gw.wait_for_request("/Position/partialCloseContract", timeout=20)
        assert requests[0].json == {"accountId": gw.account_id, "contractId": MNQ, "size": 1}
        await until(lambda: gw.signed_size(MNQ) == 2)
        from riskc.engine.daemon.board.status import status_json  # what the board shows of a live broker

        health = status_json(daemon)["accounts"][0]["health"]
        assert health["hubs"] == {"user": True, "market": True} and health["last_reconcile"] is not None
        assert health["calls_last_minute"] >= 1 and health["stale"] is False
        # 2. an edit mid-run takes effect: limit 1 cuts one more
        await asyncio.sleep(0.3)
        policy.write_text(POLICY.format(limit=1))
        requests = await gw.wait_for_request("/Position/partialCloseContract", count=2, timeout=20)
        assert requests[1].json["size"] == 1
        await until(lambda: gw.signed_size(MNQ) == 1)
        # 3. the sockets drop; the SDK reconnects; the daemon reconciles before acting again
        before = audit_kinds(tmp_path).count("drift")
        gw.set_position(MNQ, 4, 26246.0)  # changed while the feed was down: only REST knows
        await gw.drop_connections()
        try:
            await until(lambda: audit_kinds(tmp_path).count("drift") > before, timeout=30)
        except AssertionError:
            raise AssertionError(f"{before} {audit_kinds(tmp_path)}") from None
        requests = await gw.wait_for_request("/Position/partialCloseContract", count=3, timeout=20)
        assert requests[2].json["size"] == 3
    finally:
        daemon.stop()
        await asyncio.wait_for(task, 30)
    with Store.open(tmp_path / "state.db") as store:
        assert store.verify_audit().ok
        drift = [
            json.loads(r.payload) if isinstance(r.payload, str) else r.payload
            for r in store.audit_records()
            if r.kind == "drift"
        ]
        assert any("broker 4" in d for payload in drift for d in payload["drift"])
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["outcome"] for r in log if r.get("kind") == "reload"] == ["swapped"]
