"""The last known book and the policy versions in force.

The book is a cache for `riskc status` and for a warm start; after a restart the daemon still
reconciles it from the broker before any rule acts (PRODUCT.md §8), so only the last copy is kept.
"""

from __future__ import annotations

import json
from datetime import datetime

from riskc.engine.store.base import StoreBase
from riskc.engine.store.codec import parse_time, time_text
from riskc.engine.store.models import Book, PolicyVersion


class BookMixin(StoreBase):
    def save_book(self, account_id: int, positions_json: str, orders_json: str, ts: datetime) -> None:
        """Replace the account's last known book. The JSON is checked to parse, so a bad
        snapshot fails here rather than when `status` reads it."""
        json.loads(positions_json)
        json.loads(orders_json)
        with self._write():
            self.db.execute(
                "INSERT INTO book (account_id, positions, orders, ts) VALUES (?, ?, ?, ?) ON CONFLICT (account_id)"
                " DO UPDATE SET positions = excluded.positions, orders = excluded.orders, ts = excluded.ts",
                [account_id, positions_json, orders_json, time_text(ts)],
            )

    def load_book(self, account_id: int) -> Book | None:
        row = self.db.execute(
            "SELECT account_id, positions, orders, ts FROM book WHERE account_id = ?", [account_id]
        ).fetchone()
        return None if row is None else Book(row[0], row[1], row[2], parse_time(row[3]))

    def record_policy(self, path: str, content_hash: str, now: datetime) -> PolicyVersion:
        """Note that a policy file was loaded. Loading the same content again (a restart, a
        touch without an edit) adds nothing; a new hash is a new version, audited."""
        with self._write():
            current = self._current_policy(path)
            if current is not None and current.content_hash == content_hash:
                return current
            self.db.execute(
                "INSERT INTO policies (path, content_hash, loaded_at) VALUES (?, ?, ?)",
                [path, content_hash, time_text(now)],
            )
            self._audit(
                "policy_loaded",
                {"path": path, "previous_hash": current and current.content_hash},
                now,
                policy_hash=content_hash,
            )
            return PolicyVersion(path, content_hash, parse_time(time_text(now)))  # type: ignore[arg-type]

    def _current_policy(self, path: str) -> PolicyVersion | None:
        row = self.db.execute(
            "SELECT path, content_hash, loaded_at FROM policies WHERE path = ? ORDER BY id DESC LIMIT 1", [path]
        ).fetchone()
        return None if row is None else PolicyVersion(row[0], row[1], parse_time(row[2]))  # type: ignore[arg-type]

    def current_policies(self) -> list[PolicyVersion]:
        """The latest version of every policy path ever loaded, by path."""
        rows = self.db.execute(
            "SELECT path, content_hash, loaded_at FROM policies"
            " WHERE id IN (SELECT MAX(id) FROM policies GROUP BY path)"
            " ORDER BY path"
        )
        return [PolicyVersion(row[0], row[1], parse_time(row[2])) for row in rows]  # type: ignore[arg-type]
