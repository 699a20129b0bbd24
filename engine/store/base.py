"""Opening the state file, transactions, and the audit log: what every part of the store shares.

Durability. The file runs in WAL mode with ``synchronous=NORMAL``, and the writes that gate an
effect outside the process (planning and sending a broker action, adding or lifting a lockout,
changing the admin passphrase) raise it to ``FULL`` for their own commit.

- ``kill -9`` loses nothing that was committed, under either setting: a commit in WAL mode has
  written its frames to the WAL file through ``write()`` before ``COMMIT`` returns, and the
  kernel keeps those pages when the process dies. The next open replays the WAL.
- Power loss or a kernel crash is different: under NORMAL the WAL is only fsynced at checkpoints,
  so the last few commits can vanish (the file stays consistent, it just goes back in time).
  For an event or decision record that is acceptable: after a restart the book is reconciled
  from the broker and the rules re-evaluate. It is not acceptable for a planned broker call (we
  would no longer know that a call may have gone out, and might send it again unchecked) or for a
  lockout the trader was promised. Those commits run with ``FULL``, which fsyncs the WAL before
  ``COMMIT`` returns; the fsync covers every earlier frame in the file too, so everything before
  them is durable as well. The engine writes what one decision plans, sets and audits in one
  ``batch()``: one fsync per breach. The `sent` mark that follows, just before the call leaves,
  is not fsynced on its own: after a power loss that took it, the action is `planned`, and
  recovery verifies a planned action against the broker exactly as a sent one.
- Why not ``FULL`` for all: the engine may audit every market event, and an fsync per
  transaction caps it at the disk's flush rate (see ``benchmarks/bench_store.py``).
- ``OFF`` is for scratch stores only (`riskc replay` without ``--state``): nothing is fsynced,
  durable writes included, because the file is thrown away at the end.

Threads. One ``Store`` owns one connection and must be used from the thread that opened it
(sqlite3's default check). Other processes (`riskc status`, `riskc lock`) open their own Store
on the same file: WAL lets them read while the daemon writes, and every write transaction starts
with ``BEGIN IMMEDIATE`` plus a busy timeout, so two writers queue instead of failing half-way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Self

from sqlite_utils import Database

from riskc.engine.store import audit
from riskc.engine.store.migrations import apply_migrations
from riskc.engine.store.models import AuditRecord, AuditVerification, StoreError

Synchronous = Literal["NORMAL", "FULL", "OFF"]
_BUSY_TIMEOUT_MS = 5000


def _create_private(path: Path) -> None:
    """Create the file 0600 before SQLite opens it, so it is never readable by others, not even
    for the instant between creation and a chmod. An existing file is tightened too."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)


def _tighten_sidecars(path: Path) -> None:
    for suffix in ("-wal", "-shm"):
        sidecar = path.with_name(path.name + suffix)
        if sidecar.exists():
            os.chmod(sidecar, 0o600)


class StoreBase:
    """The connection, the write transaction and the audit log; see the module docstring."""

    def __init__(self, db: Database, path: Path, synchronous: Synchronous) -> None:
        self.db = db
        self.path = path
        self._synchronous = synchronous

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, synchronous: Synchronous = "NORMAL") -> Self:
        """Open (creating if needed) the state file and bring its schema up to date."""
        if synchronous not in ("NORMAL", "FULL", "OFF"):
            raise ValueError(f"synchronous must be NORMAL, FULL or OFF, not {synchronous!r}")
        path = Path(path)
        _create_private(path)
        db = Database(path, execute_plugins=False)
        db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        db.enable_wal()
        db.execute(f"PRAGMA synchronous = {synchronous}")
        apply_migrations(db)
        _tighten_sidecars(path)
        return cls(db, path, synchronous)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    _batch: list[bool] | None = None  # inside ``batch()``: [whether its transaction has begun]

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The writes made inside join one transaction, begun at the first of them and committed
        durably (synchronous=FULL) at the end: what one decision writes (the calls it plans, the
        lockouts it sets, its audit record) costs one fsync, not one each. Nothing is written
        for a batch without writes; an exception rolls all of it back."""
        if self._batch is not None:
            yield  # already in one: the writes join it
            return
        conn = self.db.conn
        self._batch = begun = [False]
        try:
            yield
        except BaseException:
            if begun[0] and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        else:
            if begun[0]:
                conn.execute("COMMIT")
        finally:
            self._batch = None
            if begun[0] and self._synchronous == "NORMAL":
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")

    @contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[Database]:
        """One write transaction. ``durable`` commits with synchronous=FULL (see module doc).
        Inside ``batch()`` it is part of the batch's transaction, which is durable."""
        conn = self.db.conn
        batch = self._batch
        if batch is not None:
            if not batch[0]:
                if self._synchronous == "NORMAL":
                    conn.execute("PRAGMA synchronous = FULL")
                conn.execute("BEGIN IMMEDIATE")
                batch[0] = True
            yield self.db
            return
        if conn.in_transaction:
            raise StoreError("internal error: store writes do not nest")
        raise_sync = durable and self._synchronous == "NORMAL"
        if raise_sync:
            conn.execute("PRAGMA synchronous = FULL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        finally:
            if raise_sync:
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")

    def _audit(
        self, kind: str, payload: Any, now: datetime, account_id: int | None = None, policy_hash: str | None = None
    ) -> AuditRecord:
        """Append inside the current write transaction."""
        return audit.append(self.db, kind, payload, now, account_id, policy_hash)

    # -- the audit log, public side ---------------------------------------------------------

    def append_audit(
        self, kind: str, payload: Any, now: datetime, *, account_id: int | None = None, policy_hash: str | None = None
    ) -> AuditRecord:
        """Append one record in its own transaction (events, decisions, drift, errors)."""
        with self._write():
            return self._audit(kind, payload, now, account_id, policy_hash)

    def audit_records(self, after_seq: int = 0, limit: int | None = None) -> list[AuditRecord]:
        return list(audit.records(self.db, after_seq, limit))

    def verify_audit(self) -> AuditVerification:
        return audit.verify(self.db)

    def journal_mode(self) -> str:
        return self.db.journal_mode
