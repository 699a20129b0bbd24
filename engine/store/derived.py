"""Lockouts, timers and the admin passphrase as the audit chain says they are.

Those three tables decide whether a trader may trade, so each is covered by the hash chain:
every change to them is an audit record written in the same transaction (``lockout``,
``unlock``, ``admin``, and ``event`` records ``timer_set`` / ``timer_cleared``), and a file upgraded
from before that starts with one ``state_baseline`` record holding the tables as they were. So
the tables can be *derived* from the chain; ``compare`` reports every row that differs (an edited
``released_at``, a deleted lockout, a forged passphrase hash), and ``repair`` rewrites the tables
from the chain, which the daemon does (alerting) when it finds them edited.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database

from riskc.engine.store.codec import canonical_json

_LOCKOUT_FIELDS = (
    "scope",
    "account_id",
    "symbol",
    "rule",
    "reason",
    "since",
    "until",
    "condition",
    "origin",
    "released_at",
    "released_by",
    "release_reason",
)
_COVERING = (
    "SELECT ts, kind, account_id, payload FROM audit WHERE kind IN ('lockout', 'unlock', 'admin')"
    " OR (kind = 'event' AND json_valid(payload)"
    " AND json_extract(payload, '$.event') IN ('timer_set', 'timer_cleared', 'state_baseline')) ORDER BY seq"
)


@dataclass(slots=True)
class DerivedState:
    lockouts: dict[int, dict[str, Any]] = field(default_factory=dict)
    timers: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    admin_hash: str | None = None
    admin_known: bool = True  # False when a passphrase was set by a riskc that did not audit its hash


def derive(db: Database) -> DerivedState:
    state = DerivedState()
    for ts, kind, account_id, text in db.execute(_COVERING):
        try:
            payload = json.loads(text)
        except ValueError:
            continue  # a damaged record: the chain check reports it
        if not isinstance(payload, dict):
            continue
        _apply(state, kind, ts, account_id, payload)
    return state


def _apply(state: DerivedState, kind: str, ts: str, account_id: int | None, payload: dict[str, Any]) -> None:
    if kind == "lockout":
        lockout_id = payload.get("id")
        known = state.lockouts.get(lockout_id)
        since = payload.get("since", ts)  # an adopted lockout keeps the time it was inserted with
        row = (
            dict(known) if known else {"since": since, "released_at": None, "released_by": None, "release_reason": None}
        )
        row |= {k: payload.get(k) for k in ("scope", "symbol", "rule", "reason", "until", "condition", "origin")}
        state.lockouts[lockout_id] = row | {"account_id": account_id}
    elif kind == "unlock" and payload.get("outcome") == "released":
        lockout_id = (payload.get("lockout") or {}).get("id")
        if lockout_id in state.lockouts:
            state.lockouts[lockout_id] |= {
                "released_at": ts,
                "released_by": payload.get("by"),
                "release_reason": payload.get("reason"),
            }
    elif kind == "admin" and payload.get("outcome") == "set":
        state.admin_hash = payload.get("passphrase_hash")
        state.admin_known = "passphrase_hash" in payload
    elif kind == "event":
        _apply_event(state, account_id, payload)


def _apply_event(state: DerivedState, account_id: int | None, payload: dict[str, Any]) -> None:
    event = payload.get("event")
    if event == "timer_set":
        state.timers[(account_id, payload.get("key"))] = {
            "started_at": payload.get("started_at"),
            "expires_at": payload.get("expires_at"),
            "payload": canonical_json(payload.get("payload") or {}),
        }
    elif event == "timer_cleared":
        state.timers.pop((account_id, payload.get("key")), None)
    elif event == "state_baseline":
        state.lockouts = {row["id"]: {k: row.get(k) for k in _LOCKOUT_FIELDS} for row in payload.get("lockouts", [])}
        state.timers = {
            (row["account_id"], row["key"]): {k: row.get(k) for k in ("started_at", "expires_at", "payload")}
            for row in payload.get("timers", [])
        }
        state.admin_hash, state.admin_known = payload.get("admin"), True


# -- the tables as they are -----------------------------------------------------------------


def table_lockouts(db: Database) -> dict[int, dict[str, Any]]:
    columns = ", ".join(("id", *_LOCKOUT_FIELDS))
    return {
        row[0]: dict(zip(_LOCKOUT_FIELDS, row[1:], strict=True))
        for row in db.execute(f"SELECT {columns} FROM lockouts")
    }


def table_timers(db: Database) -> dict[tuple[int, str], dict[str, Any]]:
    rows = db.execute("SELECT account_id, key, started_at, expires_at, payload FROM timers")
    return {(r[0], r[1]): {"started_at": r[2], "expires_at": r[3], "payload": r[4]} for r in rows}


def table_admin(db: Database) -> str | None:
    row = db.execute("SELECT passphrase_hash FROM admin WHERE id = 1").fetchone()
    return None if row is None else row[0]


def baseline(db: Database) -> dict[str, Any] | None:
    """The tables as they are, for the first record of a file upgraded from an older riskc;
    None when there is nothing to cover yet."""
    lockouts = [{"id": i} | row for i, row in sorted(table_lockouts(db).items())]
    timers = [{"account_id": a, "key": k} | row for (a, k), row in sorted(table_timers(db).items())]
    admin = table_admin(db)
    if not lockouts and not timers and admin is None:
        return None
    return {"event": "state_baseline", "lockouts": lockouts, "timers": timers, "admin": admin}


# -- comparing and repairing ----------------------------------------------------------------


def _inserted_active(db: Database) -> dict[int, dict[str, Any]]:
    known = derive(db).lockouts
    return {i: row for i, row in table_lockouts(db).items() if i not in known and row["released_at"] is None}


def compare(db: Database) -> list[str]:
    """Every difference between the tables and the chain, as sentences; empty when they agree."""
    derived = derive(db)
    problems = _compare_rows("lockout", derived.lockouts, table_lockouts(db))
    problems += _compare_rows("timer", derived.timers, table_timers(db))
    admin = table_admin(db)
    if derived.admin_known and admin != derived.admin_hash:
        problems.append(
            "the admin passphrase was changed outside riskc"
            if admin and derived.admin_hash
            else "the admin passphrase was " + ("added" if admin else "removed") + " outside riskc"
        )
    return problems


def _compare_rows(what: str, chain: dict, table: dict) -> list[str]:
    problems = []
    for key in sorted(set(chain) | set(table), key=str):
        name = f"{what} {key if not isinstance(key, tuple) else key[1]}"
        if key not in table:
            problems.append(f"{name} is in the audit log but missing from its table (deleted)")
        elif key not in chain:
            problems.append(f"{name} is in its table but not in the audit log (inserted outside riskc)")
        elif chain[key] != table[key]:
            changed = sorted(k for k in chain[key] if chain[key][k] != table[key].get(k))
            problems.append(f"{name} was edited outside riskc ({', '.join(changed)})")
    return problems


def repair(db: Database, append: Callable[[str, dict[str, Any], int | None], Any]) -> None:
    """Rewrite the three tables as the chain says they are. Must run inside a write transaction.

    One exception, to fail closed: an active lockout inserted outside riskc only restricts
    trading, so it is *adopted* (audited as a ``lockout`` record with ``adopted``) rather than
    removed. ``append(kind, payload, account_id)`` appends an audit record."""
    for lockout_id, row in sorted(_inserted_active(db).items()):
        payload = {"id": lockout_id, "adopted": True, "merged": False} | {
            k: row[k] for k in ("scope", "symbol", "rule", "reason", "since", "until", "condition", "origin")
        }
        append("lockout", payload, row["account_id"])
    derived = derive(db)
    db.execute("DELETE FROM lockouts")
    for lockout_id, row in sorted(derived.lockouts.items()):
        columns = ("id", *_LOCKOUT_FIELDS)
        db.execute(
            f"INSERT INTO lockouts ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            [lockout_id, *(row.get(k) for k in _LOCKOUT_FIELDS)],
        )
    db.execute("DELETE FROM timers")
    for (account_id, key), row in sorted(derived.timers.items(), key=str):
        db.execute(
            "INSERT INTO timers (account_id, key, started_at, expires_at, payload) VALUES (?, ?, ?, ?, ?)",
            [account_id, key, row["started_at"], row["expires_at"], row["payload"]],
        )
    if derived.admin_known:
        db.execute("DELETE FROM admin")
        if derived.admin_hash is not None:
            db.execute(
                "INSERT INTO admin (id, passphrase_hash, set_at) VALUES (1, ?, datetime('now'))", [derived.admin_hash]
            )
