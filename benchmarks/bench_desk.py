"""Capacity of a desk (issue 21): how many accounts one worker process guards.

N simulated accounts (N = 10, 100, 1,000; ``RISKC_BENCH_DESK_N`` changes the list) each replay the
demo session (engine/sim/demo.jsonl: ~1,000 messages of a morning with a daily-loss breach, a
position without a stop, crude oil...) with its own account id, through its own engine
(topstep-50k) and simulated broker, all in one process and one store, interleaved message by
message as a worker's event loop would see them. Measured:

- aggregate messages/s (every account's messages over the wall time);
- breach → call latency: from entering ``on_event``/``on_tick`` to the call reaching the broker
  adapter (evaluation, the durable plan, the audit, the `sent` mark), p50/p99/max; and a *round*:
  the time to hand one message to each of the N accounts, which is how long the last of N
  simultaneous breaches can wait behind the others in one worker;
- memory per account: RSS growth over the N engines divided by N.

Both stores: a SQLite file (``synchronous=NORMAL``, as the daemon runs it) and a PostgreSQL desk.
Then the curve with 1, 2 and 4 worker processes sharing one PostgreSQL desk, the accounts split
between them. PostgreSQL is ``$RISKC_BENCH_PG`` (a URL) or a throwaway server started as the
test suite starts one (tests/pgserver.py).
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import time
from pathlib import Path

from riskc.engine.adapters.projectx.intake import read_recording
from riskc.engine.runner import PolicySet
from riskc.engine.sim.replay import Replay
from riskc.engine.store import Store

REPO = Path(__file__).resolve().parents[1]
POLICY = REPO / "policies" / "topstep-50k.risk"
DEMO = REPO / "engine" / "sim" / "demo.jsonl"
DEMO_ACCOUNT = "13298777"
SIZES = [int(n) for n in os.environ.get("RISKC_BENCH_DESK_N", "10,100,1000").split(",")]
WORKER_ACCOUNTS = int(os.environ.get("RISKC_BENCH_DESK_WORKER_N", "100"))


def _policies() -> PolicySet:
    policies, _, _ = PolicySet.from_paths([POLICY])
    assert policies is not None
    return policies


def _sessions(first: int, count: int, scratch: Path) -> list[list]:
    text = DEMO.read_text()
    sessions = []
    for account_id in range(first, first + count):
        path = scratch / f"{account_id}.jsonl"
        path.write_text(text.replace(DEMO_ACCOUNT, str(account_id)))
        sessions.append(list(read_recording(str(path))))
    return sessions


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def guard(location: str, first: int, count: int) -> dict:
    """One worker: ``count`` accounts from ``first``, interleaved, on the store at ``location``."""
    policies = _policies()
    latencies: list[float] = []
    rounds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="riskc-bench-desk-") as scratch:
        sessions = _sessions(first, count, Path(scratch))
        with Store.open(location) as store:
            before = _rss_mb()
            replays = [Replay(policies, store, account_id=first + i) for i in range(count)]
            for replay in replays:
                _time_calls(replay, latencies)
            grown = _rss_mb() - before
            messages = sum(len(s) for s in sessions)
            wall_start = time.time()
            start = time.perf_counter()
            for step in range(max(len(s) for s in sessions)):
                began = time.perf_counter()
                for replay, session in zip(replays, sessions, strict=True):
                    if step < len(session):
                        replay.feed(session[step])
                rounds.append(time.perf_counter() - began)
            elapsed = time.perf_counter() - start
            grown = max(grown, _rss_mb() - before)
    return {
        "messages": messages,
        "elapsed": elapsed,
        "span": (wall_start, wall_start + elapsed),
        "latencies": latencies,
        "rounds": rounds,
        "rss_mb": grown,
    }


def _time_calls(replay: Replay, samples: list[float]) -> None:
    engine, sim = replay.engine, replay.sim
    on_event, on_tick, submit = engine.on_event, engine.on_tick, sim.submit
    started: list = [None]

    def timed_event(update):
        started[0] = time.perf_counter()
        return on_event(update)

    def timed_tick(now):
        started[0] = time.perf_counter()
        return on_tick(now)

    def timed_submit(call, now=None):
        if started[0] is not None:
            samples.append((time.perf_counter() - started[0]) * 1e3)
            started[0] = None
        return submit(call, now)

    engine.on_event, engine.on_tick, sim.submit = timed_event, timed_tick, timed_submit


def _pct(values: list[float], p: int) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _pg_url() -> tuple[str, object | None]:
    url = os.environ.get("RISKC_BENCH_PG")
    if url:
        return url, None
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from pgserver import PgServer

    server = PgServer().start()
    return server.url, server


def _desk(base: str, name: str) -> str:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        conn.execute(f"CREATE SCHEMA {name}")
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}options=-csearch_path%3D{name}"


def _row(label: str, result: dict, count: int) -> tuple[str, str]:
    rate = result["messages"] / result["elapsed"]
    lat = result["latencies"]
    return (
        label,
        f"{rate:,.0f} msgs/s; breach→call p50 {_pct(lat, 50):.2f} ms p99 {_pct(lat, 99):.2f} ms "
        f"max {max(lat, default=float('nan')):.2f} ms ({len(lat)} calls); round of {count} "
        f"p50 {statistics.median(result['rounds']) * 1e3:.1f} ms max {max(result['rounds']) * 1e3:.1f} ms; "
        f"{result['rss_mb'] / count * 1e3:,.0f} kB/account",
    )


def _workers(url: str, workers: int, total: int) -> float:
    """``workers`` processes, ``total`` accounts split between them, one desk: aggregate msgs/s."""
    desk = _desk(url, f"bench_w{workers}")
    Store.open(desk).close()
    share = total // workers
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers) as pool:
        results = pool.starmap(guard, [(desk, 1 + i * share, share) for i in range(workers)])
    # From the first worker's first message to the last one's last: start-up (compiling the policy,
    # generating the sessions) is not counted, and workers that did not overlap are not flattered.
    wall = max(r["span"][1] for r in results) - min(r["span"][0] for r in results)
    return sum(r["messages"] for r in results) / wall


def run() -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="riskc-bench-desk-") as scratch:
        for n in SIZES:
            rows.append(_row(f"SQLite, {n} accounts, 1 process", guard(str(Path(scratch) / f"{n}.db"), 1, n), n))
    url, server = _pg_url()
    try:
        for n in SIZES:
            rows.append(_row(f"PostgreSQL, {n} accounts, 1 process", guard(_desk(url, f"bench_n{n}"), 1, n), n))
        for workers in (1, 2, 4):
            rate = _workers(url, workers, WORKER_ACCOUNTS)
            rows.append((f"PostgreSQL, {WORKER_ACCOUNTS} accounts, {workers} worker(s)", f"{rate:,.0f} msgs/s"))
    finally:
        if server is not None:
            server.stop()
    return rows
