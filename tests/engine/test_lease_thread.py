"""The daemon's lease cycle on a PostgreSQL desk runs its queries on one lease thread, off the
event loop: a slow lease server does not stall the accounts' loops, every desk call runs on that
one thread, and an account shed beyond the fair share is stopped before its lock is let go."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from riskc.engine.daemon.config import load_config
from riskc.engine.daemon.daemon import Daemon
from riskc.engine.store.desk import Desk

POLICY = 'policy "t"\n  timezone America/Chicago\n\nuse daily_loss(limit: $1,000)\n'


def config(tmp_path: Path, url: str, ids: list[int]) -> Path:
    policy = tmp_path / "p.risk"
    policy.write_text(POLICY)
    recording = tmp_path / "rec.jsonl"
    recording.write_text("")
    path = tmp_path / "riskc.yaml"
    accounts = "".join(f"  - {{id: {i}, policies: [{policy}]}}\n" for i in ids)
    path.write_text(
        f"state: {url}\nbroker: {{kind: sim, recording: {recording}, speed: 0}}\n"
        f"accounts:\n{accounts}alerts: {{console: false}}\nweb: false\n"
    )
    return path


async def build(daemon: Daemon) -> list:
    from riskc.engine.daemon.loops import build_loops

    return await build_loops(daemon, None)


def test_the_lease_cycle_runs_on_one_thread_off_the_event_loop(pg_url: str, tmp_path: Path) -> None:
    daemon = Daemon(load_config(config(tmp_path, pg_url, [101, 102])), live_view=False)
    threads: set[int] = set()
    release = threading.Event()
    polls = 0

    def slow_poll(original):
        def poll(**kwargs):
            nonlocal polls
            threads.add(threading.get_ident())
            polls += 1
            if polls == 1:
                release.wait(5)  # a slow server: the event loop must go on meanwhile
            return original(**kwargs)

        return poll

    async def scenario() -> None:
        daemon.loops = await build(daemon)
        daemon.desk.accounts = [101, 102]
        daemon.desk.poll = slow_poll(daemon.desk.poll)
        cycle = asyncio.create_task(daemon.lease_cycle())
        ticks = 0
        while ticks < 5:  # the loop runs while the poll is blocked in the lease thread
            await asyncio.sleep(0.01)
            ticks += 1
        assert not cycle.done()
        release.set()
        await asyncio.wait_for(cycle, 10)
        await asyncio.wait_for(daemon.lease_cycle(), 10)
        assert all(lp.active for lp in daemon.loops) and sorted(daemon.desk.held) == [101, 102]
        await daemon._shutdown([], [])

    asyncio.run(scenario())
    assert len(threads) == 1 and threading.main_thread().ident not in threads


def test_a_shed_account_is_stopped_before_its_lock_is_let_go(pg_url: str, tmp_path: Path) -> None:
    daemon = Daemon(load_config(config(tmp_path, pg_url, [101, 102])), live_view=False)
    other = None

    async def scenario() -> None:
        nonlocal other
        daemon.loops = await build(daemon)
        daemon.desk.accounts = [101, 102]
        await daemon.lease_cycle()
        assert all(lp.active for lp in daemon.loops)
        other = Desk(pg_url, [101, 102], worker="other")  # a second worker: the share is one each
        seen: list[tuple[int, bool]] = []
        let_go = daemon.desk.let_go_of

        def watched(accounts):
            seen.extend((a, next(lp for lp in daemon.loops if lp.account_id == a).active) for a in accounts)
            return let_go(accounts)

        daemon.desk.let_go_of = watched
        await daemon.lease_cycle()
        assert seen == [(102, False)]  # stopped first, then unlocked
        assert other.poll() == ([102], [])
        await daemon._shutdown([], [])

    try:
        asyncio.run(scenario())
    finally:
        if other is not None:
            other.close()
