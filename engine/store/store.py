"""``Store``: the daemon's state file, assembled from one mixin per kind of state."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Self

from sqlite_utils import Database

from riskc.engine.store import files
from riskc.engine.store.actions import ActionsMixin
from riskc.engine.store.book import BookMixin
from riskc.engine.store.ledger import LedgerMixin
from riskc.engine.store.lockouts import LockoutsMixin
from riskc.engine.store.migrations import MIGRATIONS
from riskc.engine.store.models import StateFileError, StoreError

# Every table that names an account: the accounts a state file knows are the union of them.
_ACCOUNT_TABLES = ("lockouts", "timers", "trades", "balances", "book", "actions")


class Store(LockoutsMixin, LedgerMixin, BookMixin, ActionsMixin):
    """Open with ``Store.open(path)``; see ``base`` for durability and threading, and each mixin
    for its part of the state. All times passed in are tz-aware (the store never reads the clock:
    replay and tests drive it with their own)."""

    @classmethod
    def open_readonly(cls, path: str | os.PathLike[str]) -> Self:
        """Open an existing state file for reading only (`riskc status`, `riskc audit verify`):
        never creates it, never migrates it, and cannot take a write lock, so it neither blocks
        nor disturbs a running daemon, nor changes the evidence it is asked to check. A missing
        file is a ``StoreError``; an empty, foreign, corrupt or outdated one a ``StateFileError``
        saying which."""
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"no state file at {path}")
        problem = files.file_problem(path)
        if problem is not None:
            raise StateFileError(f"{path} {problem}")
        try:
            conn = files.connect(path, readonly=True)
            db = Database(conn, execute_plugins=False)
            pending = [m.name for m in MIGRATIONS.pending(db)]
        except sqlite3.DatabaseError as error:
            raise StateFileError(f"{path} cannot be read as a state file ({error})") from None
        if pending:
            conn.close()
            raise StateFileError(f"{path} was written by an older riskc; the daemon upgrades it when it next starts")
        return cls(db, path, "NORMAL")

    def account_ids(self) -> list[int]:
        """Every account the file holds state for, in id order (to pick "the only account")."""
        union = " UNION ".join(f"SELECT account_id FROM {table}" for table in _ACCOUNT_TABLES)
        return [row[0] for row in self.db.execute(f"SELECT account_id FROM ({union}) ORDER BY account_id")]

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: it changes when *another* connection commits to the
        file (never for this one's own writes). A daemon that caches lockouts can compare it on
        each tick, for the price of one pragma, to notice a `riskc lock` or `unlock` at once."""
        return self.db.execute("PRAGMA data_version").fetchone()[0]

    def audit_head(self) -> tuple[int, str] | None:
        """The last audit record's seq and hash. `riskc status` shows it so that it can be noted
        outside the file, which is what makes a rewrite of the whole chain detectable."""
        row = self.db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        return None if row is None else (row[0], row[1])
