"""Leases by group on a desk (engine/store/desk.py units): the accounts of a group are taken, shed
and moved whole, so one worker holds all of a group or none of it and the group is guarded as a
group; an account in no group is leased exactly as before."""

from __future__ import annotations

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskc.engine.store import Store
from riskc.engine.store.desk import Desk

ACCOUNTS = [1, 2, 3, 4]


@pytest.fixture
def desk_url(pg_url: str) -> str:
    Store.open(pg_url).close()  # the schema, as the first worker's start makes it
    return pg_url


def split(desk: Desk, unit: set[int]) -> bool:
    return 0 < len(unit & set(desk.held)) < len(unit)


def test_units_are_the_connected_groups_and_every_other_account_alone(desk_url: str) -> None:
    desk = Desk(desk_url, [1, 2, 3, 4, 5, 6], groups=[[1, 2], [2, 5], [9, 6]], worker="a")
    try:  # 9 is not on this desk: 6 stays alone
        assert desk.units() == [(1, 2, 5), (3,), (4,), (6,)]
    finally:
        desk.close()


def test_two_workers_never_hold_one_account_of_a_group_alone(desk_url: str) -> None:
    a = Desk(desk_url, ACCOUNTS, groups=[[2, 3]], worker="a")
    b = None
    try:
        a.poll()
        assert sorted(a.held) == ACCOUNTS  # alone: everything
        b = Desk(desk_url, ACCOUNTS, groups=[[2, 3]], worker="b")
        for worker in [b, a, b, a, a, b, b, a] * 3:
            worker.poll()
            assert not split(a, {2, 3}) and not split(b, {2, 3})
            assert not set(a.held) & set(b.held)
        assert sorted([*a.held, *b.held]) == ACCOUNTS and len(a.held) == len(b.held) == 2
    finally:
        a.close()
        if b is not None:
            b.close()


def test_a_group_bigger_than_the_share_goes_to_one_worker(desk_url: str) -> None:
    a = Desk(desk_url, ACCOUNTS, groups=[[1, 2, 3]], worker="a")
    b = Desk(desk_url, ACCOUNTS, groups=[[1, 2, 3]], worker="b")
    try:
        a.poll(), b.poll(), a.poll(), b.poll()
        holder, other = (a, b) if 1 in a.held else (b, a)
        assert sorted(holder.held) == [1, 2, 3] and sorted(other.held) == [4]
        a.poll(), b.poll()  # steady: nothing is passed around
        assert sorted(holder.held) == [1, 2, 3] and sorted(other.held) == [4]
    finally:
        a.close(), b.close()


def test_a_dead_holders_group_is_taken_whole_at_the_next_poll(desk_url: str) -> None:
    a = Desk(desk_url, ACCOUNTS, groups=[[1, 2]], worker="a")
    b = Desk(desk_url, ACCOUNTS, groups=[[1, 2]], worker="b")
    try:
        a.poll(), b.poll()
        holder, other = (a, b) if 1 in a.held else (b, a)
        assert {1, 2} <= set(holder.held)
        holder.db.close()  # the session ends as with kill -9: no release
        gained, lost = other.poll()
        assert {1, 2} <= set(gained) and lost == [] and sorted(other.held) == ACCOUNTS
    finally:
        a.close(), b.close()


def test_a_shed_group_moves_whole(desk_url: str) -> None:
    a = Desk(desk_url, ACCOUNTS, groups=[[3, 4]], worker="a")
    a.poll()
    b = Desk(desk_url, ACCOUNTS, groups=[[3, 4]], worker="b")
    try:
        _, shed = a.poll()  # b joined: the share is two; the group (highest ids) is shed whole
        assert sorted(shed) == [3, 4] and sorted(a.held) == [1, 2]
        gained, _ = b.poll()
        assert sorted(gained) == [3, 4]
    finally:
        a.close(), b.close()


def test_a_refused_member_gives_back_the_ones_got_in_that_attempt(desk_url: str) -> None:
    old = Desk(desk_url, [2], worker="old")  # a worker that leases account 2 alone (an older config)
    a = Desk(desk_url, ACCOUNTS, groups=[[1, 2]], worker="a")
    try:
        old.poll()
        a.poll()
        assert sorted(a.held) == [3, 4] and a.try_acquire_unit((1, 2)) is None
        with psycopg.connect(desk_url, autocommit=True) as admin:  # account 1's lock was given back
            assert admin.execute("SELECT count(*) FROM leases WHERE account_id = 1").fetchone()[0] == 0
        b = Desk(desk_url, [1], worker="b")
        try:
            assert b.poll()[0] == [1]
        finally:
            b.close()
    finally:
        a.close(), old.close()


def test_a_unit_partly_lost_is_let_go_whole(desk_url: str) -> None:
    a = Desk(desk_url, ACCOUNTS, groups=[[1, 2]], worker="a")
    try:
        a.poll()
        epoch = a.held[2]
        with psycopg.connect(desk_url, autocommit=True) as admin:  # another worker took account 2's lease
            admin.execute("UPDATE leases SET worker = 'b', epoch = epoch + 1 WHERE account_id = 2")
        gained, lost = a.poll(let_go=False)
        assert sorted(lost) == [1, 2] and a.split == [(1, 2)] and gained == []
        assert a.shedding == {1}  # stopped by the caller before its lock goes
        a.let_go_of([1])
        b = Desk(desk_url, [1], worker="b")
        try:
            assert b.poll()[0] == [1]  # free: the unit can be taken whole by one worker
        finally:
            b.close()
        assert a.held.get(2) != epoch
    finally:
        a.close()


def components(accounts: list[int], groups: list[list[int]]) -> list[set[int]]:
    """The units, worked out here independently: merge groups that share an account."""
    units = [{a} for a in accounts]
    for group in groups:
        members = {a for a in group if a in accounts}
        touching = [unit for unit in units if unit & members]
        units = [unit for unit in units if not unit & members] + [set().union(*touching)] if touching else units
    return units


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    workers=st.integers(2, 4),
    groups=st.lists(st.lists(st.integers(1, 6), min_size=1, max_size=3), max_size=3),
    steps=st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["poll", "poll", "poll", "die"])), max_size=25),
)
def test_no_worker_ever_holds_part_of_a_unit(pg_server, workers: int, groups, steps) -> None:
    url = pg_server.new_desk()
    Store.open(url).close()
    accounts = [1, 2, 3, 4, 5, 6]
    live = [Desk(url, accounts, groups=groups, worker=f"w{i}") for i in range(workers)]
    units = components(accounts, groups)
    try:

        def check() -> None:
            for desk in live:
                assert not any(split(desk, unit) for unit in units)
            held = [a for desk in live for a in desk.held]
            assert len(held) == len(set(held))

        for index, action in steps:
            desk = live[index % len(live)]
            if action == "die" and len(live) > 1:
                desk.db.close()  # as kill -9
                live.remove(desk)
            else:
                desk.poll()
            check()
        for _ in range(4):  # then everyone polls: every account is held, by one worker
            for desk in live:
                desk.poll()
                check()
        assert sorted(a for desk in live for a in desk.held) == accounts
    finally:
        for desk in live:
            desk.close()


def test_the_daemon_leases_its_configs_groups_and_alerts_a_split_unit(pg_url: str, tmp_path) -> None:
    """`riskc run` on a desk: the groups of the config are the units; when one account of a held
    group is taken by another worker, the rest is stopped and let go, and that is alerted."""
    import asyncio
    import shutil
    from pathlib import Path

    from riskc.engine.daemon.config import load_config
    from riskc.engine.daemon.daemon import Daemon
    from riskc.engine.daemon.loops import build_loops

    examples = Path(__file__).resolve().parents[2] / "examples" / "groups"
    for name in ("copy-account.risk", "copy-desk.risk"):
        shutil.copy(examples / name, tmp_path / name)
    (tmp_path / "rec.jsonl").write_text("")
    config = tmp_path / "riskc.yaml"
    config.write_text(
        f"state: {pg_url}\nbroker: {{kind: sim, recording: rec.jsonl, speed: 0}}\n"
        "accounts:\n  - {id: 1001, policies: copy-account.risk}\n  - {id: 1002, policies: copy-account.risk}\n"
        "  - {id: 1003, policies: copy-account.risk}\n"
        "groups:\n  - {name: copiers, accounts: [1001, 1002], policies: copy-desk.risk}\n"
        "alerts: {console: false}\nweb: false\n"
    )
    daemon = Daemon(load_config(config), live_view=False)
    alerts: list[tuple[str, str]] = []
    daemon.alerts.alert = lambda severity, text, **_: alerts.append((severity, text))  # type: ignore[method-assign]

    async def scenario() -> None:
        daemon.loops = await build_loops(daemon, None)
        assert daemon.desk is not None and daemon.desk.units() == [(1001, 1002), (1003,)]
        await daemon.lease_cycle()
        assert all(lp.active for lp in daemon.loops)
        with psycopg.connect(pg_url, autocommit=True) as admin:  # another worker took 1002's lease
            admin.execute("UPDATE leases SET worker = 'other', epoch = epoch + 1 WHERE account_id = 1002")
        await daemon.lease_cycle()
        active = {lp.account_id: lp.active for lp in daemon.loops}
        assert active == {1001: False, 1002: False, 1003: True} and sorted(daemon.desk.held) == [1003]
        assert not daemon.desk.shedding  # stopped, then let go
        assert any(severity == "high" and "1001, 1002" in text for severity, text in alerts), alerts
        await daemon._shutdown([], [])

    asyncio.run(scenario())
