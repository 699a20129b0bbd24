"""The store's read-only side for `riskc status`: it never creates or migrates a file, reads
while a writer holds its lock, and cannot write; and the accounts a file knows."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from riskc.engine.store import StateFileError, Store, StoreError

T0 = datetime(2025, 10, 29, 15, 0, tzinfo=UTC)


def test_missing_file_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no state file at"):
        Store.open_readonly(tmp_path / "absent.db")
    assert not (tmp_path / "absent.db").exists()


def test_empty_and_foreign_files(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    with pytest.raises(StateFileError, match=r"empty\.db is empty \(0 bytes\)"):
        Store.open_readonly(tmp_path / "empty.db")
    (tmp_path / "notes.txt").write_text("not a database at all, just some text " * 20)
    with pytest.raises(StateFileError, match="is not an SQLite database"):
        Store.open_readonly(tmp_path / "notes.txt")


def test_an_older_schema_is_reported_not_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Store.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = '0002_audit_log'")
    with pytest.raises(StoreError, match="older riskc"):
        Store.open_readonly(path)


def test_reads_while_a_writer_holds_the_lock_and_cannot_write(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with Store.open(path) as daemon:
        daemon.add_lockout(1, "daily_loss", "loss", T0, until=T0 + timedelta(hours=2))
        daemon.db.conn.execute("BEGIN IMMEDIATE")  # the daemon mid-transaction
        with Store.open_readonly(path) as status:
            assert [lock.rule for lock in status.active_lockouts(None, T0)] == ["daily_loss"]
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                status.append_audit("event", {}, T0)
        daemon.db.conn.execute("ROLLBACK")


def test_account_ids_cover_every_kind_of_state(tmp_path: Path) -> None:
    with Store.open(tmp_path / "state.db") as store:
        assert store.account_ids() == []
        store.add_lockout(30, "daily_loss", "loss", T0, until=T0 + timedelta(hours=1))
        store.set_timer(10, "stop_required:X", T0)
        store.record_trade(20, 1, "2025-10-29", "CON.F.US.MNQ.Z25", T0, 0, 1, 21000, None, "0.37")
        store.save_book(10, "[]", "[]", T0)
        assert store.account_ids() == [10, 20, 30]


def test_audit_head(tmp_path: Path) -> None:
    with Store.open(tmp_path / "state.db") as store:
        assert store.audit_head() is None
        store.append_audit("event", {"n": 1}, T0)
        record = store.append_audit("event", {"n": 2}, T0)
        assert store.audit_head() == (2, record.hash)


def test_data_version_moves_only_for_other_connections(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with Store.open(path) as daemon, Store.open(path) as cli:
        seen = daemon.data_version()
        daemon.append_audit("event", {}, T0)
        assert daemon.data_version() == seen  # its own write
        cli.add_lockout(1, "personal", "tilted", T0, until=T0 + timedelta(hours=1), origin="personal")
        assert daemon.data_version() != seen
