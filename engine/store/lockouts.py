"""Lockouts, timers and the admin passphrase: state that is evaluated against a clock, not
threads that sleep. A restart reads the same rows and so restores every lockout and timer exactly.

Who may lift a lockout before it ends:

- a ``while:`` lockout placed by a rule is released by the engine, without a passphrase, once its
  condition no longer holds (that is what ``while`` means);
- everything else, a trader's personal lockout included, only through an admin unlock with the
  passphrase. The trader cannot lift their own lockout ("cannot be undone before it ends"); the
  admin can, because an admin unlock is the escape hatch for mistakes (locked for 3 days instead
  of 3 hours), and it is always audited with who and why. A refused or wrong-passphrase attempt
  is audited as well.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from riskc.engine.store.base import StoreBase
from riskc.engine.store.codec import canonical_json, parse_time, time_text
from riskc.engine.store.models import Lockout, LockoutStillActive, Origin, StoreError, Timer, UnlockDenied
from riskc.engine.store.passphrase import check_passphrase, hash_passphrase

_LOCKOUT_COLUMNS = (
    "id, scope, account_id, symbol, rule, reason, since, until, condition, origin,"
    " released_at, released_by, release_reason"
)
_ACTIVE = "released_at IS NULL AND (until IS NULL OR until > ?)"


def _lockout(row: tuple) -> Lockout:
    (
        id_,
        scope,
        account_id,
        symbol,
        rule,
        reason,
        since,
        until,
        condition,
        origin,
        released_at,
        released_by,
        release_reason,
    ) = row
    return Lockout(
        id_,
        scope,
        account_id,
        symbol,
        rule,
        reason,
        parse_time(since),
        parse_time(until),
        condition,
        origin,
        parse_time(released_at),
        released_by,
        release_reason,
    )


def _strength(until: datetime | None, condition: str | None) -> tuple[int, datetime | None]:
    """Order used by "longest lockout wins": manual > while > timed, later until > earlier."""
    if condition == "manual":
        return (2, None)
    if condition is not None:
        return (1, None)
    return (0, until)


def _is_longer(new: tuple[int, datetime | None], old: tuple[int, datetime | None]) -> bool:
    if new[0] != old[0]:
        return new[0] > old[0]
    return new[0] == 0 and new[1] > old[1]  # type: ignore[operator]


def _validate(until: datetime | None, condition: str | None, origin: str, now: datetime) -> None:
    if (until is None) == (condition is None):
        raise ValueError("a lockout has either an `until` time or a condition, not both or neither")
    if condition is not None and condition != "manual" and not condition.startswith("while:"):
        raise ValueError(f"unknown lockout condition {condition!r}: expected `manual` or `while:<expr>`")
    if until is not None and until <= now:
        raise ValueError(f"a lockout until {time_text(until)} would already be over")
    if origin == "personal" and until is None:
        raise ValueError("a personal lockout needs an end time")


def _lockout_payload(lockout: Lockout) -> dict[str, Any]:
    return {
        "id": lockout.id,
        "scope": lockout.scope,
        "symbol": lockout.symbol,
        "rule": lockout.rule,
        "reason": lockout.reason,
        "until": lockout.until,
        "condition": lockout.condition,
        "origin": lockout.origin,
    }


def timer_payload(timer: Timer) -> dict[str, Any]:
    """The audit record of a timer as set (``derived`` rebuilds the table from these)."""
    return {
        "event": "timer_set",
        "key": timer.key,
        "started_at": timer.started_at,
        "expires_at": timer.expires_at,
        "payload": dict(timer.payload),
    }


def _timer(row: tuple) -> Timer:
    account_id, key, started_at, expires_at, payload = row
    return Timer(account_id, key, parse_time(started_at), parse_time(expires_at), json.loads(payload))


class LockoutsMixin(StoreBase):
    # -- lockouts ---------------------------------------------------------------------------

    def add_lockout(
        self,
        account_id: int,
        rule: str,
        reason: str,
        now: datetime,
        *,
        until: datetime | None = None,
        condition: str | None = None,
        symbol: str | None = None,
        origin: Origin = "rule",
    ) -> Lockout:
        """Lock an account (``symbol`` None) or one symbol. An active lockout for the same
        account, symbol and rule is merged: the longer one wins, a shorter one changes nothing."""
        _validate(until, condition, origin, now)
        with self._write(durable=True):
            existing = self._active_same(account_id, symbol, rule, now)
            if existing is None:
                lockout = self._insert_lockout(account_id, symbol, rule, reason, now, until, condition, origin)
            elif _is_longer(_strength(until, condition), _strength(existing.until, existing.condition)):
                lockout = self._extend_lockout(existing, reason, until, condition)
            else:
                return existing
            self._audit("lockout", _lockout_payload(lockout) | {"merged": existing is not None}, now, account_id)
            return lockout

    def _active_same(self, account_id: int, symbol: str | None, rule: str, now: datetime) -> Lockout | None:
        row = self.db.execute(
            f"SELECT {_LOCKOUT_COLUMNS} FROM lockouts WHERE account_id = ? AND symbol IS ? AND rule = ?"
            f" AND {_ACTIVE} ORDER BY id LIMIT 1",
            [account_id, symbol, rule, time_text(now)],
        ).fetchone()
        return None if row is None else _lockout(row)

    def _insert_lockout(
        self,
        account_id: int,
        symbol: str | None,
        rule: str,
        reason: str,
        now: datetime,
        until: datetime | None,
        condition: str | None,
        origin: str,
    ) -> Lockout:
        scope = "account" if symbol is None else "symbol"
        cursor = self.db.execute(
            "INSERT INTO lockouts (scope, account_id, symbol, rule, reason, since, until, condition, origin)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                scope,
                account_id,
                symbol,
                rule,
                reason,
                time_text(now),
                None if until is None else time_text(until),
                condition,
                origin,
            ],
        )
        return self._lockout_by_id(cursor.lastrowid)

    def _extend_lockout(self, existing: Lockout, reason: str, until: datetime | None, condition: str | None) -> Lockout:
        self.db.execute(
            "UPDATE lockouts SET reason = ?, until = ?, condition = ? WHERE id = ?",
            [reason, None if until is None else time_text(until), condition, existing.id],
        )
        return self._lockout_by_id(existing.id)

    def _lockout_by_id(self, lockout_id: int | None) -> Lockout:
        row = self.db.execute(f"SELECT {_LOCKOUT_COLUMNS} FROM lockouts WHERE id = ?", [lockout_id]).fetchone()
        if row is None:
            raise StoreError(f"no lockout with id {lockout_id}")
        return _lockout(row)

    def get_lockout(self, lockout_id: int) -> Lockout:
        return self._lockout_by_id(lockout_id)

    def active_lockouts(self, account_id: int | None, now: datetime) -> list[Lockout]:
        """Lockouts in force at ``now``: not released, and timed ones not yet over. ``account_id``
        None lists every account (for `riskc status`)."""
        sql = f"SELECT {_LOCKOUT_COLUMNS} FROM lockouts WHERE {_ACTIVE}"
        params: list[Any] = [time_text(now)]
        if account_id is not None:
            sql, params = sql + " AND account_id = ?", params + [account_id]
        return [_lockout(row) for row in self.db.execute(sql + " ORDER BY id", params)]

    def lockouts_set_between(self, account_id: int, start: datetime, end: datetime) -> list[Lockout]:
        """Lockouts set in [start, end), in force or not (`riskc status` of a past trading day)."""
        rows = self.db.execute(
            f"SELECT {_LOCKOUT_COLUMNS} FROM lockouts WHERE account_id = ? AND since >= ? AND since < ? ORDER BY id",
            [account_id, time_text(start), time_text(end)],
        )
        return [_lockout(row) for row in rows]

    def release_lockout(
        self, lockout_id: int, now: datetime, by: str, reason: str, passphrase: str | None = None
    ) -> Lockout:
        """Lift an active lockout early; see the module docstring for who may. Every attempt is
        audited, including refused ones (a refusal is committed before the error is raised)."""
        with self._write(durable=True):
            lockout = self._lockout_by_id(lockout_id)
            if not lockout.is_active(now):
                raise StoreError(f"lockout {lockout_id} is no longer active")
            refusal = self._release_refusal(lockout, passphrase)
            outcome = "released" if refusal is None else ("denied" if passphrase is not None else "refused")
            payload = {
                "lockout": _lockout_payload(lockout),
                "by": by,
                "reason": reason,
                "admin": passphrase is not None,
                "outcome": outcome,
            }
            self._audit("unlock", payload, now, lockout.account_id)
            if refusal is None:
                self.db.execute(
                    "UPDATE lockouts SET released_at = ?, released_by = ?, release_reason = ? WHERE id = ?",
                    [time_text(now), by, reason, lockout_id],
                )
                released = self._lockout_by_id(lockout_id)
        if refusal is not None:
            raise refusal
        return released

    def _release_refusal(self, lockout: Lockout, passphrase: str | None) -> StoreError | None:
        if passphrase is not None:
            return (
                None
                if self.check_admin_passphrase(passphrase)
                else UnlockDenied("admin unlock refused: wrong passphrase, or no admin passphrase is set")
            )
        if lockout.origin == "rule" and lockout.condition and lockout.condition.startswith("while:"):
            return None
        if lockout.origin == "personal":
            ends = time_text(lockout.until)  # type: ignore[arg-type]
            return LockoutStillActive(f"a personal lockout cannot be lifted before it ends ({ends})")
        return LockoutStillActive(f"lockout {lockout.id} ({lockout.rule}) can only be lifted by an admin unlock")

    # -- the admin passphrase ---------------------------------------------------------------

    def passphrase_denials(self, since: datetime) -> list[datetime]:
        """When a wrong admin passphrase was given (unlocks and passphrase changes), oldest
        first: what throttles the next attempt, across processes, because it is in the file."""
        rows = self.db.execute(
            "SELECT ts FROM audit WHERE kind IN ('unlock', 'admin') AND ts >= ?"
            " AND json_valid(payload) AND json_extract(payload, '$.outcome') = 'denied' ORDER BY seq",
            [time_text(since)],
        )
        return [parse_time(row[0]) for row in rows]  # type: ignore[misc]

    def has_admin_passphrase(self) -> bool:
        return self.db.execute("SELECT 1 FROM admin WHERE id = 1").fetchone() is not None

    def check_admin_passphrase(self, passphrase: str) -> bool:
        """False when no passphrase is set: no passphrase means no admin unlocks, not any."""
        row = self.db.execute("SELECT passphrase_hash FROM admin WHERE id = 1").fetchone()
        return row is not None and check_passphrase(passphrase, row[0])

    def set_admin_passphrase(
        self, passphrase: str, now: datetime, *, current: str | None = None, by: str = "admin"
    ) -> None:
        """Set the admin passphrase; replacing one needs the ``current`` one, otherwise a
        locked-out trader could set a new passphrase and unlock themselves."""
        stored = hash_passphrase(passphrase)
        with self._write(durable=True):
            allowed = not self.has_admin_passphrase() or (current is not None and self.check_admin_passphrase(current))
            record = {"event": "passphrase_set", "by": by, "outcome": "set" if allowed else "denied"}
            if allowed:  # the hash (salted scrypt, the same as the admin table) ties the table to the chain
                record["passphrase_hash"] = stored
            self._audit("admin", record, now)
            if allowed:
                self.db.execute(
                    "INSERT INTO admin (id, passphrase_hash, set_at) VALUES (1, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET"
                    " passphrase_hash = excluded.passphrase_hash, set_at = excluded.set_at",
                    [stored, time_text(now)],
                )
        if not allowed:
            raise UnlockDenied("changing the admin passphrase needs the current one")

    # -- timers -----------------------------------------------------------------------------

    def set_timer(
        self,
        account_id: int,
        key: str,
        started_at: datetime,
        expires_at: datetime | None = None,
        payload: Mapping[str, Any] | None = None,
        *,
        replace: bool = False,
    ) -> Timer:
        """Start a timer (e.g. ``stop_required:CON.F.US.MNQ.Z25``) and return the one in force.
        By default a running timer is kept: re-seeing the same condition after a restart or on
        the next event must not restart a grace period. ``replace`` restarts it."""
        verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
        row = [
            account_id,
            key,
            time_text(started_at),
            None if expires_at is None else time_text(expires_at),
            canonical_json(dict(payload or {})),
        ]
        with self._write():
            before = self.get_timer(account_id, key)
            self.db.execute(
                f"{verb} INTO timers (account_id, key, started_at, expires_at, payload) VALUES (?, ?, ?, ?, ?)", row
            )
            timer = self.get_timer(account_id, key)
            if timer != before:  # a timer is covered by the audit chain (see derived.py)
                self._audit("event", timer_payload(timer), started_at, account_id)  # type: ignore[arg-type]
            return timer  # type: ignore[return-value]

    def get_timer(self, account_id: int, key: str) -> Timer | None:
        row = self.db.execute(
            "SELECT account_id, key, started_at, expires_at, payload FROM timers WHERE account_id = ? AND key = ?",
            [account_id, key],
        ).fetchone()
        return None if row is None else _timer(row)

    def clear_timer(self, account_id: int, key: str, now: datetime | None = None) -> bool:
        """Remove a timer; True when there was one. ``now`` stamps the audit record (the
        timer's start when not given)."""
        with self._write():
            timer = self.get_timer(account_id, key)
            if timer is None:
                return False
            self.db.execute("DELETE FROM timers WHERE account_id = ? AND key = ?", [account_id, key])
            self._audit("event", {"event": "timer_cleared", "key": key}, now or timer.started_at, account_id)
            return True

    def timers(self, account_id: int | None = None) -> list[Timer]:
        sql = "SELECT account_id, key, started_at, expires_at, payload FROM timers"
        params: list[Any] = []
        if account_id is not None:
            sql, params = sql + " WHERE account_id = ?", [account_id]
        return [_timer(row) for row in self.db.execute(sql + " ORDER BY account_id, key", params)]
