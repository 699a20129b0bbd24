"""What the board shows from before the daemon (re)started: the last action records of an
account, read back from the audit log's decisions (each holds its §6.2 records). Without it a
daemon restarted by systemd mid-day would show an empty "last actions" list."""

from __future__ import annotations

import json
from typing import Any

SCAN = 20_000  # audit records looked at, newest first: bounded however long the log is


def recent_actions(store: Any, account_id: int, limit: int = 12) -> list[dict[str, Any]]:
    """The latest ``limit`` action records of ``account_id``, newest first."""
    rows = store.db.execute(
        "SELECT payload FROM audit WHERE kind = 'decision' AND account_id = ?"
        " AND seq > (SELECT COALESCE(MAX(seq), 0) FROM audit) - ? ORDER BY seq DESC LIMIT ?",
        [account_id, SCAN, limit],
    )
    found: list[dict[str, Any]] = []
    for (payload,) in rows:
        try:
            records = json.loads(payload).get("actions") or []
        except (ValueError, AttributeError):
            continue
        found.extend(r for r in reversed(records) if isinstance(r, dict) and r.get("reason") is not None)
        if len(found) >= limit:
            break
    return found[:limit]
