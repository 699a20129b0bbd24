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

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Self

from sqlite_utils import Database

from riskc.engine.store import audit, derived, files, postgres
from riskc.engine.store.migrations import apply_migrations
from riskc.engine.store.models import AuditRecord, AuditVerification, StateFileError, StoreError

Synchronous = Literal["NORMAL", "FULL", "OFF"]
log = logging.getLogger("riskc.store")


class StoreBase:
    """The connection, the write transaction and the audit log; see the module docstring."""

    def __init__(
        self, db: Database, path: Path | str, synchronous: Synchronous, busy_ms: int = files.BUSY_TIMEOUT_MS
    ) -> None:
        self.db = db
        self.path = path  # the file, or a PostgreSQL URL shown without its password
        self.is_pg = getattr(db, "dialect", "sqlite") == postgres.DIALECT
        self._synchronous = synchronous
        self.busy_ms = busy_ms

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "NORMAL",
        new: bool = False,
        busy_ms: int = files.BUSY_TIMEOUT_MS,
    ) -> Self:
        """Open the state file, creating it when there is none, and bring its schema up to date.
        An existing file that is empty, truncated, foreign or corrupt is a ``StateFileError``
        naming it; with ``new`` it is moved aside (``<name>.unusable-<time>``) and a fresh file
        started. ``busy_ms`` is how long a write waits for another process's lock."""
        if synchronous not in ("NORMAL", "FULL", "OFF"):
            raise ValueError(f"synchronous must be NORMAL, FULL or OFF, not {synchronous!r}")
        if postgres.is_url(path):
            return cls._open_pg(str(path), synchronous)
        path = Path(path)
        if path.exists():
            problem = files.file_problem(path)
            if problem is not None and not new:
                raise files.refusal(path, problem)
            if problem is not None:
                log.warning("%s %s: moved aside to %s; a new state file starts", path, problem, files.move_aside(path))
        if not path.exists():
            files.create_fresh(path)
        try:
            db = Database(files.connect(path, busy_ms=busy_ms), execute_plugins=False)
            db.enable_wal()
            db.execute(f"PRAGMA synchronous = {synchronous}")
            apply_migrations(db)
        except sqlite3.DatabaseError as error:
            raise StateFileError(f"{path} cannot be opened as a state file: {error}") from None
        files.tighten(path)
        return cls(db, path, synchronous, busy_ms)

    @classmethod
    def _open_pg(cls, url: str, synchronous: Synchronous) -> Self:
        """A PostgreSQL desk: connect, bring the schema up to date (once, whoever starts first).
        A server that cannot be reached, or refuses the login, is a ``StoreError`` naming it."""
        import psycopg

        try:
            db = postgres.PgDatabase.connect(url)
        except psycopg.Error as error:
            raise StoreError(f"cannot connect to {postgres.display(url)}: {first_line(error)}") from None
        try:
            apply_migrations(db)  # type: ignore[arg-type]
        except psycopg.Error as error:
            db.close()
            raise StateFileError(
                f"{postgres.display(url)} cannot be used as a riskc desk: {first_line(error)}"
            ) from None
        return cls(db, postgres.display(url), synchronous)  # type: ignore[arg-type]

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
        if self.is_pg:
            with self._batch_pg():
                yield
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
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        finally:
            self._batch = None
            if begun[0] and self._synchronous == "NORMAL":
                conn.execute(f"PRAGMA synchronous = {self._synchronous}")

    @contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[Database]:
        """One write transaction. ``durable`` commits with synchronous=FULL (see module doc).
        Inside ``batch()`` it is part of the batch's transaction, which is durable."""
        if self.is_pg:
            with self._write_pg(durable) as db:
                yield db
            return
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

    @contextmanager
    def _batch_pg(self) -> Iterator[None]:
        db: Any = self.db
        self._batch = begun = [False]
        try:
            yield
        except BaseException:
            if begun[0] and db.in_transaction:
                db.rollback()
            raise
        else:
            if begun[0]:
                try:
                    db.commit()
                except BaseException:
                    if db.in_transaction:
                        db.rollback()
                    raise
        finally:
            self._batch = None

    @contextmanager
    def _write_pg(self, durable: bool) -> Iterator[Database]:
        db: Any = self.db
        batch = self._batch
        if batch is not None:  # inside batch(): the first write begins its (durable) transaction
            if not batch[0]:
                db.reconnect_if_lost()
                db.begin_write(True)
                batch[0] = True
            yield self.db
            return
        db.reconnect_if_lost()
        if db.in_transaction:
            raise StoreError("internal error: store writes do not nest")
        db.begin_write(durable or self._synchronous == "FULL")
        try:
            yield self.db
            db.commit()
        except BaseException:
            if db.in_transaction:
                db.rollback()
            raise

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

    def state_problems(self) -> list[str]:
        """How the lockouts, timers and admin passphrase differ from what the audit chain says
        (``derived``); empty when they agree. Reads in one snapshot."""
        with self.db.atomic():
            return derived.compare(self.db)

    def repair_state(self, problems: list[str], now: datetime) -> None:
        """Put the lockouts, timers and passphrase back as the chain says, and audit that."""
        with self._write(durable=True):
            derived.repair(self.db, lambda kind, payload, account: self._audit(kind, payload, now, account))
            self._audit("error", {"event": "state_repaired_from_audit_log", "problems": problems}, now)

    def journal_mode(self) -> str:
        return self.db.journal_mode


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
