"""Committed and staged policy sets (PRODUCT.md §9, ``edits: next_trading_day``).

Per config account (its label), the set in force (``active``) and at most one edit waiting for
the next trading-day start (``staged``), each with the sources that were checked, so that what
becomes active is exactly what was checked, and a restart neither forgets the wait nor skips it
(a daemon restarted on an edited file still runs the committed set until the boundary).

``riskc reload --now`` sets ``apply_now`` on a staged row, with the admin passphrase, in the same
transaction as its audit record; the daemon sees it on its next tick.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from riskc.engine.store.codec import parse_time, time_text
from riskc.engine.store.models import UnlockDenied


@dataclass(frozen=True, slots=True)
class PolicySetRow:
    account: str
    role: str  # 'active' | 'staged'
    digest: str
    sources: tuple[tuple[str, str], ...]
    since: dt.datetime
    activates_at: dt.datetime | None
    apply_now: bool


_COLUMNS = "account, role, digest, sources, since, activates_at, apply_now"


def _row(row: tuple) -> PolicySetRow:
    sources = tuple((str(path), str(text)) for path, text in json.loads(row[3]))
    return PolicySetRow(row[0], row[1], row[2], sources, parse_time(row[4]), parse_time(row[5]), bool(row[6]))  # type: ignore[arg-type]


def get(store: Any, account: str, role: str) -> PolicySetRow | None:
    row = store.db.execute(f"SELECT {_COLUMNS} FROM policy_sets WHERE account = ? AND role = ?", [account, role])
    found = row.fetchone()
    return None if found is None else _row(found)


def staged(store: Any) -> list[PolicySetRow]:
    rows = store.db.execute(f"SELECT {_COLUMNS} FROM policy_sets WHERE role = 'staged' ORDER BY account")
    return [_row(r) for r in rows]


def put(
    store: Any,
    account: str,
    role: str,
    digest: str,
    sources: tuple[tuple[str, str], ...],
    now: dt.datetime,
    activates_at: dt.datetime | None = None,
) -> None:
    """Write the ``role`` row (replacing it); staging an edit is audited as an admin record."""
    with store._write():
        store.db.execute(
            f"INSERT OR REPLACE INTO policy_sets ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 0)",
            [account, role, digest, json.dumps(sources), time_text(now), _opt(activates_at)],
        )
        if role == "staged":
            payload = {
                "event": "policy_staged",
                "account": account,
                "digest": digest,
                "activates_at": _opt(activates_at),
            }
            store._audit("admin", payload, now)


def drop_staged(store: Any, account: str) -> None:
    with store._write():
        store.db.execute("DELETE FROM policy_sets WHERE account = ? AND role = 'staged'", [account])


def activate(store: Any, account: str, now: dt.datetime) -> PolicySetRow | None:
    """The staged row becomes the active one (one transaction); the row, or None if none."""
    with store._write():
        found = store.db.execute(
            f"SELECT {_COLUMNS} FROM policy_sets WHERE account = ? AND role = 'staged'", [account]
        ).fetchone()
        if found is None:
            return None
        store.db.execute("DELETE FROM policy_sets WHERE account = ? AND role = 'active'", [account])
        store.db.execute(
            "UPDATE policy_sets SET role = 'active', since = ?, activates_at = NULL, apply_now = 0"
            " WHERE account = ? AND role = 'staged'",
            [time_text(now), account],
        )
        row = _row(found)
        store._audit("admin", {"event": "policy_activated", "account": account, "digest": row.digest}, now)
        return row


def apply_now(store: Any, accounts: list[str], now: dt.datetime, *, passphrase: str, by: str, reason: str) -> None:
    """`riskc reload --now`: mark the staged edits of ``accounts`` to be applied at once. The
    attempt is audited whatever its outcome; a wrong passphrase changes nothing."""
    allowed = store.check_admin_passphrase(passphrase)
    with store._write():
        payload = {"event": "reload_now", "accounts": accounts, "by": by, "reason": reason}
        store._audit("admin", payload | {"outcome": "applied" if allowed else "denied"}, now)
        if allowed:
            for account in accounts:
                store.db.execute(
                    "UPDATE policy_sets SET apply_now = 1 WHERE account = ? AND role = 'staged'", [account]
                )
    if not allowed:
        raise UnlockDenied("reload --now refused: wrong passphrase, or no admin passphrase is set")


def _opt(moment: dt.datetime | None) -> str | None:
    return None if moment is None else time_text(moment)
