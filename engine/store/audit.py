"""The audit log's hash chain: appending a record and verifying the whole log.

Each record's ``hash`` is sha256 over the previous record's hash and the record's own canonical
JSON (seq, ts, kind, account_id, policy_hash, payload). Editing any record breaks its hash;
deleting or reordering one breaks the chain or the seq run; cutting off the tail is caught by the
separate ``audit_head`` row, written in the same transaction as every append.

This is tamper-*evident* against edits made with ordinary tools. Someone with write access who
drops the triggers and recomputes every hash and the head can rewrite history undetected;
anchoring the head hash outside the file (in alerts, in `riskc status`) is what closes that gap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlite_utils import Database

from riskc.engine.store.codec import canonical_json, parse_time, time_text
from riskc.engine.store.models import AUDIT_KINDS, AuditRecord, AuditVerification

GENESIS_HASH = "0" * 64


def record_hash(
    prev_hash: str, seq: int, ts: str, kind: str, account_id: int | None, policy_hash: str | None, payload: str
) -> str:
    body = canonical_json(
        {"seq": seq, "ts": ts, "kind": kind, "account_id": account_id, "policy_hash": policy_hash, "payload": payload}
    )
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def _head(db: Database) -> tuple[int, str]:
    row = db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    return (0, GENESIS_HASH) if row is None else (row[0], row[1])


def _advance_head(db: Database, seq: int, digest: str) -> None:
    if seq == 1:
        db.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?)", [seq, digest])
    else:
        db.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", [seq, digest])


def append(
    db: Database, kind: str, payload: Any, now: datetime, account_id: int | None = None, policy_hash: str | None = None
) -> AuditRecord:
    """Append one record. Must run inside the caller's write transaction (BEGIN IMMEDIATE), so
    the head read and the insert cannot interleave with another writer."""
    if kind not in AUDIT_KINDS:
        raise ValueError(f"unknown audit kind {kind!r}; expected one of {', '.join(AUDIT_KINDS)}")
    if kind == "decision" and not policy_hash:
        raise ValueError("a decision is audited with the hash of the policy that made it")
    last_seq, prev_hash = _head(db)
    seq, ts, text = last_seq + 1, time_text(now), canonical_json(payload)
    digest = record_hash(prev_hash, seq, ts, kind, account_id, policy_hash, text)
    db.execute(
        "INSERT INTO audit (seq, ts, kind, account_id, policy_hash, payload, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [seq, ts, kind, account_id, policy_hash, text, prev_hash, digest],
    )
    _advance_head(db, seq, digest)
    return AuditRecord(seq, parse_time(ts), kind, account_id, policy_hash, text, prev_hash, digest)


_COLUMNS = "seq, ts, kind, account_id, policy_hash, payload, prev_hash, hash"


def records(db: Database, after_seq: int = 0, limit: int | None = None) -> Iterator[AuditRecord]:
    sql = f"SELECT {_COLUMNS} FROM audit WHERE seq > ? ORDER BY seq"
    params: list[Any] = [after_seq]
    if limit is not None:
        sql, params = sql + " LIMIT ?", [after_seq, limit]
    for row in db.execute(sql, params):
        yield AuditRecord(row[0], parse_time(row[1]), *row[2:])


def _check_row(row: tuple, expected_seq: int, prev_hash: str) -> str | None:
    """What is wrong with one row given what the chain expects, or None."""
    seq, ts, kind, account_id, policy_hash, payload, stored_prev, stored_hash = row
    if seq != expected_seq:
        return f"expected record {expected_seq}, found {seq}: records are missing"
    if stored_prev != prev_hash:
        return "its prev_hash does not match the previous record: the chain is broken"
    if record_hash(prev_hash, seq, ts, kind, account_id, policy_hash, payload) != stored_hash:
        return "its content does not match its hash: the record was modified"
    return None


def verify(db: Database) -> AuditVerification:
    """Walk the chain from the first record; report the first bad seq. Reads in one snapshot so
    that a daemon appending meanwhile cannot cause a false alarm."""
    with db.atomic():
        rows = db.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq")
        expected, prev_hash, count = 1, GENESIS_HASH, 0
        for row in rows:
            problem = _check_row(row, expected, prev_hash)
            if problem:
                return AuditVerification(False, count, expected, problem)
            expected, prev_hash, count = expected + 1, row[7], count + 1
        return _check_tail(db, count, prev_hash)


def _check_tail(db: Database, count: int, last_hash: str) -> AuditVerification:
    head = db.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    if head is None:
        if count == 0:
            return AuditVerification(True, 0)
        return AuditVerification(False, count, 1, "the audit head is missing")
    head_seq, head_hash = head
    if head_seq > count:
        return AuditVerification(
            False, count, count + 1, f"the log ends at record {count} but the head says {head_seq}: truncated"
        )
    if head_seq < count or head_hash != last_hash:
        return AuditVerification(False, count, head_seq, "the audit head does not match the last record")
    return AuditVerification(True, count)
