"""Several accounts on one login (issue 21): what `riskc run` costs the Gateway with N accounts
under one login (`accounts: all`), against the fake Gateway on 127.0.0.1 through the real SDK
(tests/fakegateway): logins, hub connections, the requests of the start and of one reconciliation
rate afterwards (all counted against the login's one rate limit: riskc stretches the
reconciliation period of a login's accounts to keep within it), and the time from start until
every account has reconciled. Before issue 21's logins work each account had its own connection: N
logins, N user hubs, N market hubs, N account-list reads per round."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SIZES = (1, 10, 40)
WINDOW = 60.0  # seconds of steady state measured (the rate limit is a sliding minute)
POLICY = 'policy "bench"\n  timezone America/Chicago\n\nuse max_contracts(limit: 2)\n'


async def _one(n: int, scratch: Path) -> list[tuple[str, str]]:
    sys.path.insert(0, str(REPO / "tests"))
    from fakegateway import FakeGateway
    from fakegateway.sdk import quiet_sdk_logging

    from riskc.engine.daemon.config import Credentials, load_config
    from riskc.engine.daemon.daemon import Daemon
    from riskc.engine.daemon.loops import build_loops

    quiet_sdk_logging()
    async with FakeGateway() as gw:
        for i in range(1, n):
            gw.add_account(gw.account_id + i, f"50KTC-V2-{i}")
        policy = scratch / "p.risk"
        policy.write_text(POLICY)
        path = scratch / f"riskc-{n}.yaml"
        path.write_text(
            textwrap.dedent(f"""\
            state: {scratch / f"state-{n}.db"}
            log: null
            broker: {{kind: projectx, api_url: {gw.api_url}, user_hub_url: {gw.user_hub_url},
                      market_hub_url: {gw.market_hub_url}}}
            reconcile_every: 5s
            accounts: {{all: true, policies: [{policy}]}}
            alerts: {{console: false}}
            web: false
        """)
        )
        daemon = Daemon(load_config(path), live_view=False)
        started = time.perf_counter()
        task = asyncio.create_task(daemon.run(lambda d: build_loops(d, Credentials(gw.username, gw.api_key)), ()))
        while len(daemon.loops) < n or not all(lp.activity.last_reconcile for lp in daemon.loops):
            await asyncio.sleep(0.01)
        ready = time.perf_counter() - started
        at_start = len(gw.requests)
        await asyncio.sleep(WINDOW)
        per_minute = (len(gw.requests) - at_start) * 60 / WINDOW
        lists = len(gw.requests_to("/Account/search"))
        daemon.stop()
        await asyncio.wait_for(task, 30)
        prefix = f"{n} account(s), one login"
        return [
            (f"{prefix}: logins, user hubs, market hubs", f"{len(gw.requests_to('/Auth/loginKey'))}, 1, 1"),
            (f"{prefix}: requests until all reconciled", f"{at_start} in {ready * 1000:.0f} ms"),
            (f"{prefix}: requests in the minute after that", f"{per_minute:.0f}"),
            (f"{prefix}: account-list reads in all", str(lists)),
        ]


def run() -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="riskc-bench-logins-") as scratch:
        for n in SIZES:
            rows += asyncio.run(_one(n, Path(scratch)))
    return rows
