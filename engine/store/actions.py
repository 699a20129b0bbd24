"""Exactly-once broker actions: each planned action has an idempotency key and a state,
planned → sent → confirmed | failed, and every transition is audited in the same transaction.

The protocol the enforcer follows:

1. ``plan_action(key, ...)``. If it returns ``is_new=False`` the action is already in flight or
   done (or failed for good): do not send it.
2. ``mark_sent`` *before* the broker call. The plan before it was committed durably (in the
   engine, in one ``batch`` with the decision that made it), so after any crash, power loss
   included, an action that might have reached the broker is at least ``planned``, and recovery
   verifies a planned action exactly as a sent one; ``sent`` itself needs no fsync of its own
   (a kill -9 keeps it: it is committed before the call leaves).
3. ``mark_confirmed`` or ``mark_failed`` with the broker's answer.

After a crash, ``unconfirmed_actions()`` lists what is planned or sent. Each is verified against
the broker's state (has the position been closed? the order cancelled?) before anything is sent:
if the effect is there it is ``mark_confirmed``; if not, ``mark_failed(retryable=True)`` and
``plan_action`` with the same key plans it again. A failure marked not retryable stays final for
that key: the next breach episode gets a new key.

Key format: ``rule|target|trading_day|episode`` (see ``idempotency_key``). The trading day makes
tomorrow's breach a different action; the episode counts separate breaches of one rule within a
day (breach, recovery, breach again).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from riskc.engine.store.base import StoreBase
from riskc.engine.store.codec import canonical_json, day_text, parse_time, time_text
from riskc.engine.store.models import ActionRecord, ActionStateError, LeaseLost, StoreError

_COLUMNS = "key, account_id, rule, action, state, planned_at, sent_at, finished_at, result, error, retryable, attempts"


def idempotency_key(rule: str, target: str, trading_day: date | str, episode: int | str) -> str:
    """``rule|target|trading_day|episode``, e.g. ``daily_loss|account:13298777|2025-10-29|1`` or
    ``position_loss|CON.F.US.MNQ.Z25|2025-10-29|2``. A part containing ``|`` is refused so that
    two different actions can never share a key."""
    parts = (rule, target, day_text(trading_day), str(episode))
    if any(not part or "|" in part for part in parts):
        raise ValueError(f"idempotency key parts must be non-empty and free of '|': {parts!r}")
    return "|".join(parts)


def _record(row: tuple) -> ActionRecord:
    key, account_id, rule, action, state, planned, sent, finished, result, error, retryable, attempts = row
    return ActionRecord(
        key,
        account_id,
        rule,
        json.loads(action),
        state,  # type: ignore[arg-type]
        parse_time(planned),
        parse_time(sent),  # type: ignore[arg-type]
        parse_time(finished),
        None if result is None else json.loads(result),
        error,
        None if retryable is None else bool(retryable),
        attempts,
    )


class ActionsMixin(StoreBase):
    def get_action(self, key: str) -> ActionRecord | None:
        row = self.db.execute(f"SELECT {_COLUMNS} FROM actions WHERE key = ?", [key]).fetchone()
        return None if row is None else _record(row)

    def plan_action(
        self,
        key: str,
        account_id: int,
        rule: str,
        action: Mapping[str, Any],
        now: datetime,
        *,
        policy_hash: str | None = None,
        lease_epoch: int | None = None,
    ) -> tuple[ActionRecord, bool]:
        """Plan an action under ``key``; ``is_new`` False means: do not send (see module doc).
        ``lease_epoch`` (a worker on a desk) is checked against the account's lease in the same
        transaction: a stale one raises ``LeaseLost`` and nothing is planned."""
        with self._write(durable=True):
            self._fence(account_id, lease_epoch)
            existing = self.get_action(key)
            if existing is not None and not (existing.state == "failed" and existing.retryable):
                return existing, False
            if existing is None:
                self.db.execute(
                    "INSERT INTO actions (key, account_id, rule, policy_hash, action, state, planned_at, lease_epoch)"
                    " VALUES (?, ?, ?, ?, ?, 'planned', ?, ?)",
                    [key, account_id, rule, policy_hash, canonical_json(dict(action)), time_text(now), lease_epoch],
                )
            else:
                # A retry carries the current decision's action (a `reduce to N` may have changed).
                self.db.execute(
                    "UPDATE actions SET state = 'planned', action = ?, planned_at = ?, sent_at = NULL,"
                    " finished_at = NULL, result = NULL, error = NULL, retryable = NULL, attempts = attempts + 1,"
                    " lease_epoch = ? WHERE key = ?",
                    [canonical_json(dict(action)), time_text(now), lease_epoch, key],
                )
            record = self.get_action(key)
            self._audit_action("action_planned", record, now, {})  # type: ignore[arg-type]
            return record, True  # type: ignore[return-value]

    def mark_sent(self, key: str, now: datetime, *, lease_epoch: int | None = None) -> ActionRecord:
        """Record that the broker call is about to go out. Call it *before* sending. With a
        ``lease_epoch`` the account's lease is checked in the same transaction (``LeaseLost``)."""
        return self._transition(
            key,
            now,
            ("planned",),
            "sent",
            "broker_call",
            "sent_at = ?",
            [time_text(now)],
            {},
            lease_epoch,
            durable=False,
        )

    def _fence(self, account_id: int, lease_epoch: int | None) -> None:
        """Inside the write transaction: the lease epoch is the account's current one. Lease
        changes take the same writer lock, so no older epoch can commit after a newer one."""
        if lease_epoch is None:
            return
        row = self.db.execute("SELECT epoch, worker FROM leases WHERE account_id = ?", [account_id]).fetchone()
        if row is None or row[0] != lease_epoch:
            holder = "nobody" if row is None else f"worker {row[1]} at epoch {row[0]}"
            raise LeaseLost(
                f"account {account_id}: lease epoch {lease_epoch} is stale (held by {holder}); the call is refused"
            )

    def mark_confirmed(self, key: str, now: datetime, result: Mapping[str, Any] | None = None) -> ActionRecord:
        """The broker confirmed it, or recovery found its effect in the broker's state."""
        result_json = canonical_json(dict(result or {}))
        return self._transition(
            key,
            now,
            ("planned", "sent"),
            "confirmed",
            "outcome",
            "finished_at = ?, result = ?",
            [time_text(now), result_json],
            {"outcome": "confirmed", "result": dict(result or {})},
        )

    def mark_failed(self, key: str, now: datetime, error: str, retryable: bool) -> ActionRecord:
        """It did not take effect. ``retryable`` lets ``plan_action`` plan the same key again."""
        return self._transition(
            key,
            now,
            ("planned", "sent"),
            "failed",
            "outcome",
            "finished_at = ?, error = ?, retryable = ?",
            [time_text(now), error, int(retryable)],
            {"outcome": "failed", "error": error, "retryable": retryable},
        )

    def _transition(
        self,
        key: str,
        now: datetime,
        allowed_from: tuple[str, ...],
        to: str,
        kind: str,
        assignments: str,
        params: list[Any],
        details: dict[str, Any],
        lease_epoch: int | None = None,
        *,
        durable: bool = True,
    ) -> ActionRecord:
        with self._write(durable=durable):
            current = self.get_action(key)
            if current is None:
                raise StoreError(f"no planned action with key {key!r}")
            self._fence(current.account_id, lease_epoch)
            if current.state not in allowed_from:
                raise ActionStateError(f"action {key!r} is {current.state}; it cannot become {to}")
            self.db.execute(f"UPDATE actions SET state = ?, {assignments} WHERE key = ?", [to, *params, key])
            record = self.get_action(key)
            self._audit_action(kind, record, now, details)  # type: ignore[arg-type]
            return record  # type: ignore[return-value]

    def _audit_action(self, kind: str, record: ActionRecord, now: datetime, details: dict[str, Any]) -> None:
        policy_hash = self.db.execute("SELECT policy_hash FROM actions WHERE key = ?", [record.key]).fetchone()[0]
        payload = {
            "key": record.key,
            "rule": record.rule,
            "state": record.state,
            "attempt": record.attempts,
            "action": record.action,
        } | details
        self._audit(kind, payload, now, record.account_id, policy_hash)

    def unconfirmed_actions(self, account_id: int | None = None) -> list[ActionRecord]:
        """Planned or sent, oldest first: what crash recovery must verify before sending anything."""
        sql = f"SELECT {_COLUMNS} FROM actions WHERE state IN ('planned', 'sent')"
        params: list[Any] = []
        if account_id is not None:
            sql, params = sql + " AND account_id = ?", [account_id]
        return [_record(row) for row in self.db.execute(sql + " ORDER BY planned_at, key", params)]

    def recent_actions(self, account_id: int | None = None, limit: int = 20) -> list[ActionRecord]:
        """Newest first, for `riskc status`."""
        sql = f"SELECT {_COLUMNS} FROM actions"
        params: list[Any] = []
        if account_id is not None:
            sql, params = sql + " WHERE account_id = ?", [account_id]
        return [_record(row) for row in self.db.execute(sql + " ORDER BY planned_at DESC LIMIT ?", [*params, limit])]
