"""Accounts leased to workers on a PostgreSQL desk (engine/store/desk.py): one owner per account,
the fair share, takeover when a worker's session ends or its lease expires, and fencing: a call
planned or marked sent under a stale epoch is refused in the same transaction."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from riskc.engine.store import LeaseLost, Store, idempotency_key
from riskc.engine.store.desk import Desk, leases

T0 = datetime(2025, 10, 29, 15, 0, tzinfo=UTC)
ACCOUNTS = [101, 102, 103, 104]


@pytest.fixture
def desk_url(pg_url: str) -> str:
    Store.open(pg_url).close()  # the schema, as the first worker's start makes it
    return pg_url


def test_two_workers_share_the_accounts_and_never_hold_one_twice(desk_url: str) -> None:
    a = Desk(desk_url, ACCOUNTS, worker="a")
    b = Desk(desk_url, ACCOUNTS, worker="b")
    try:
        a.poll()
        b.poll()
        assert len(a.held) == len(b.held) == 2 and not set(a.held) & set(b.held)
        a.poll(), b.poll()  # steady: nothing moves
        assert sorted([*a.held, *b.held]) == ACCOUNTS
    finally:
        a.close(), b.close()


def test_a_dead_workers_accounts_are_taken_at_the_next_poll(desk_url: str) -> None:
    a = Desk(desk_url, ACCOUNTS, worker="a")
    b = Desk(desk_url, ACCOUNTS, worker="b")
    try:
        a.poll(), b.poll()
        old = dict(a.held)
        a.db.close()  # the session ends as with kill -9: no release
        gained, lost = b.poll()
        assert sorted(gained) == sorted(old) and lost == [] and sorted(b.held) == ACCOUNTS
        assert all(b.held[account] == epoch + 1 for account, epoch in old.items())
        with Store.open(desk_url) as store:
            rows = {row.account_id: row for row in leases(store.db)}
            assert {row.worker for row in rows.values()} == {"b"} and all(row.held for row in rows.values())
            assert store.verify_audit().ok
    finally:
        b.close()


def test_a_stuck_workers_lease_expires_its_session_is_ended_and_its_call_refused(desk_url: str) -> None:
    a = Desk(desk_url, [101], worker="a", ttl_s=0.5)
    a.poll()
    epoch = a.held[101]
    with Store.open(desk_url) as a_store:
        key = idempotency_key("daily_loss", "account:101", "2025-10-29", 1)
        a_store.plan_action(key, 101, "daily_loss", {"action": "flatten"}, T0, lease_epoch=epoch)
        # a stops renewing (as if SIGSTOPped); b sees the lease expire and takes the account
        b = Desk(desk_url, [101], worker="b", ttl_s=0.5)
        try:
            assert b.poll() == ([], [])  # fresh: a's lock is held and its lease is young
            time.sleep(0.7)
            gained, _ = b.poll()
            assert gained == [101] and b.held[101] == epoch + 1
            with pytest.raises(LeaseLost, match="stale"):
                a_store.mark_sent(key, T0, lease_epoch=epoch)
            assert a_store.get_action(key).state == "planned"  # refused: nothing was recorded as sent
            assert a.renew() == [101] and a.held == {}  # a's session was ended: it knows it lost
            a_store.mark_sent(key, T0, lease_epoch=b.held[101])  # the owner's recovery may
        finally:
            a.close(), b.close()


def test_planning_under_a_stale_epoch_is_refused(desk_url: str) -> None:
    with Store.open(desk_url) as store:
        with pytest.raises(LeaseLost, match="held by nobody"):
            store.plan_action("k|t|2025-10-29|1", 5, "r", {"action": "flatten"}, T0, lease_epoch=1)
        assert store.get_action("k|t|2025-10-29|1") is None


def test_status_desk_shows_holders_ages_and_unheld_accounts(desk_url: str) -> None:
    from click.testing import CliRunner

    from riskc.engine.cli.main import main

    a = Desk(desk_url, [101, 102], worker="host:1")
    b = Desk(desk_url, [101, 102], worker="host:2")
    try:
        a.poll(), b.poll()
        b.db.close()  # b dies; nobody has polled since: its account is unheld
        result = CliRunner().invoke(main, ["status", "--desk", "--state", desk_url])
        assert result.exit_code == 0, result.output
        assert "1 worker(s), 1 account(s) held" in result.output and "host:1" in result.output
        assert "UNHELD (lease lapsed)" in result.output
        as_json = CliRunner().invoke(main, ["status", "--desk", "--json", "--state", desk_url])
        import json

        document = json.loads(as_json.stdout)
        assert len(document["unheld"]) == 1 and {row["worker"] for row in document["leases"]} == {"host:1", "host:2"}
    finally:
        a.close()


def test_status_desk_of_a_state_file_says_it_is_not_a_desk(tmp_path) -> None:
    from click.testing import CliRunner

    from riskc.engine.cli.main import main

    Store.open(tmp_path / "s.db").close()
    result = CliRunner().invoke(main, ["status", "--desk", "--state", str(tmp_path / "s.db")])
    assert result.exit_code == 2 and "not a PostgreSQL desk" in result.output


def test_a_lost_connection_is_a_storage_fault_buffered_then_replayed_on_reconnect(desk_url: str) -> None:
    import psycopg

    from riskc.engine.store.faults import FailSafeStore

    changes: list[str] = []
    safe = FailSafeStore(Store.open(desk_url), on_change=lambda kind, text: changes.append(kind))
    with psycopg.connect(desk_url, autocommit=True) as admin:  # the server ends the store's session
        admin.execute("SELECT pg_terminate_backend(%s)", [safe.store.db.conn.info.backend_pid])
    lock = safe.add_lockout(101, "daily_loss", "loss", T0, until=T0.replace(hour=20))
    assert safe.backlog and lock.rule == "daily_loss"  # enforced from memory meanwhile
    held = sorted(lo.rule for lo in safe.active_lockouts(101, T0))
    assert held == ["daily_loss", "state_store"]  # and the account held flat until the write lands
    assert safe.retry()  # reconnects, replays
    with Store.open(desk_url) as store:
        assert [lo.rule for lo in store.active_lockouts(101, T0)] == ["daily_loss"] and store.verify_audit().ok
    assert changes and changes[-1] == "recovered"


def test_the_data_version_moves_with_locks_not_with_every_write(desk_url: str) -> None:
    with Store.open(desk_url) as worker, Store.open(desk_url) as cli:
        before = worker.data_version()
        worker.append_audit("event", {"n": 1}, T0)
        assert worker.data_version() == before  # events: nothing to reload
        cli.add_lockout(101, "personal", "done for the day", T0, until=T0.replace(hour=20), origin="personal")
        assert worker.data_version() != before  # `riskc lock` from another process: reload


def test_heartbeat_staged_policies_and_instruments_work_on_a_desk(desk_url: str) -> None:
    from datetime import timedelta

    from riskc.engine.store import heartbeat, policy_sets

    with Store.open(desk_url) as store:
        heartbeat.start(store, T0, pid=42, host="w1", every=timedelta(seconds=1))
        heartbeat.beat(store, T0 + timedelta(seconds=1))
        assert heartbeat.read(store).pid == 42
        policy_sets.put(store, "main", "staged", "d1", (("p.risk", "x"),), T0, T0 + timedelta(hours=2))
        policy_sets.put(store, "main", "staged", "d2", (("p.risk", "y"),), T0, T0 + timedelta(hours=2))
        assert policy_sets.get(store, "main", "staged").digest == "d2"
        from decimal import Decimal

        from riskc.engine.store.instruments import CachedInstrument

        for value in ("0.50", "0.25"):  # saved twice: the upsert replaces
            store.save_instrument(
                CachedInstrument("MNQ", "CON.F.US.MNQ.Z25", Decimal(value), Decimal("0.5"), "MNQ", "broker", T0)
            )
        assert [i.tick_size for i in store.cached_instruments()] == [Decimal("0.25")]
        assert store.verify_audit().ok


def test_a_batch_on_a_desk_is_one_transaction(desk_url: str) -> None:
    with Store.open(desk_url) as store:
        with pytest.raises(RuntimeError), store.batch():
            store.add_lockout(101, "daily_loss", "loss", T0, until=T0.replace(hour=20))
            raise RuntimeError("the decision failed half-way")
        assert store.active_lockouts(101, T0) == [] and store.audit_records() == []
        with store.batch():
            store.add_lockout(101, "daily_loss", "loss", T0, until=T0.replace(hour=20))
            store.plan_action("close|101:X|2025-10-29|1", 101, "daily_loss", {"action": "flatten"}, T0)
        assert [lo.rule for lo in store.active_lockouts(101, T0)] == ["daily_loss"]
        assert store.get_action("close|101:X|2025-10-29|1").state == "planned" and store.verify_audit().ok
