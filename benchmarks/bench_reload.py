"""Hot reload latency: from writing a policy file to the new policy being active in a running
daemon (watchfiles notices the change → parse, check, compile, run the policy's fixtures → the
account's loop swaps it in between two events). Target: p95 ≤ 300 ms.

The daemon runs on the simulated broker, playing a quiet recording slowly so events keep flowing
while the file is edited. Each round alternates between two valid versions of the policy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import statistics
import tempfile
import textwrap
import time
from pathlib import Path

ROUNDS = 25
POLICY = 'policy "bench"\n  timezone America/Chicago\n\nuse daily_loss(limit: ${limit})\nuse max_contracts(limit: 5)\nuse stop_required(grace: 30s)\n'  # noqa: E501
MNQ = "CON.F.US.MNQ.Z25"


def run() -> list[tuple[str, str]]:
    latencies = asyncio.run(_measure())
    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    return [
        ("rounds", str(len(latencies))),
        ("write → active, median (ms)", f"{statistics.median(latencies):.0f}"),
        ("write → active, p95 (ms)", f"{p95:.0f}"),
        ("write → active, max (ms)", f"{latencies[-1]:.0f}"),
    ]


async def _measure() -> list[float]:
    from riskc.engine.daemon.config import load_config
    from riskc.engine.daemon.daemon import Daemon
    from riskc.engine.daemon.loops import build_loops

    with tempfile.TemporaryDirectory(prefix="riskc-bench-reload-") as tmp:
        root = Path(tmp)
        policy = root / "policy.risk"
        policy.write_text(POLICY.format(limit="1,000"))
        config = _config(root, _recording(root / "quiet.jsonl"), policy)
        daemon = Daemon(load_config(config), live_view=False)
        task = asyncio.create_task(daemon.run(lambda d: build_loops(d, None)))
        while not daemon.loops or daemon.loops[0].activity.messages < 3:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the watcher is up
        loop = daemon.loops[0]
        latencies = []
        for n in range(ROUNDS):
            before = loop.engine.policies.digest
            started = time.perf_counter()
            policy.write_text(POLICY.format(limit=f"{1000 + n + 1:,}"))
            while loop.engine.policies.digest == before:
                await asyncio.sleep(0.002)
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.1)
        daemon.stop()
        await task
        return latencies


def _recording(path: Path) -> Path:
    start = dt.datetime(2026, 3, 10, 15, 0, tzinfo=dt.UTC)
    lines = [
        json.dumps(
            {
                "ts": start.isoformat(),
                "hub": "user",
                "target": "GatewayUserAccount",
                "args": [{"action": 1, "data": {"id": 1, "name": "BENCH", "balance": 50000.0, "canTrade": True}}],
            }
        )
    ]
    for s in range(3600):
        ts = start + dt.timedelta(seconds=s)
        lines.append(
            json.dumps(
                {
                    "ts": ts.isoformat(),
                    "hub": "market",
                    "target": "GatewayQuote",
                    "args": [MNQ, {"lastPrice": 21000.0, "bestBid": 20999.75, "bestAsk": 21000.0}],
                }
            )
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def _config(root: Path, recording: Path, policy: Path) -> Path:
    path = root / "riskc.yaml"
    path.write_text(
        textwrap.dedent(f"""\
        state: {root / "state.db"}
        log: {root / "log.jsonl"}
        broker: {{kind: sim, recording: {recording}, speed: 20}}
        accounts:
          - policies: [{policy}]
        alerts: {{console: false}}
    """)
    )
    return path
