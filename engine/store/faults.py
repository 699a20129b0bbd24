"""The daemon's store when the disk fails it: enforce from memory, lose nothing, fail closed.

``FailSafeStore`` wraps a ``Store`` with the same interface. A write that fails for a storage
reason (disk full, I/O error, read-only file, a lock held past the busy timeout) does not raise
into the engine, where it would drop the event's effect:

- the write is kept, in order, in a *backlog*, and every later write queues behind it (so the
  file's history keeps its order, and a locked file costs one busy timeout, not one per event);
- what planning needs is answered from memory meanwhile: a planned broker call is known by its
  idempotency key (exactly once within the process), a lockout that could not be written is held
  in memory and enforced;
- a write that gates an effect outside the process (a planned call and its transitions, a
  lockout) is *critical*: while one is only in memory the account is held flat (a synthetic
  ``state_store`` lockout, so the engine's keep-flat closes positions and cancels entries) -
  after a crash nothing would remember the lockout or that the call went out, so trading on
  cannot be allowed;
- ``retry`` (each clock tick) replays the backlog with a short busy timeout; once it is empty
  the hold lifts and the stored state is read again;
- ``on_change`` is told when the fault starts, when the hold starts and when the store recovers,
  so the daemon alerts on every sink that still works; and when the store, writable again,
  refuses a buffered critical write (``unreplayed``): a refused lockout stays in force from
  memory until a restart, and the recovery's audit record lists what was not replayed.

A while-lockout whose release cannot be written stays in force (fail closed): the release is
asked again once the store is read back.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from riskc.engine.store.models import ActionRecord, LeaseLost, Lockout, StoreError
from riskc.engine.store.store import Store

log = logging.getLogger("riskc.store")

HOLD_RULE = "state_store"  # the rule name of the hold, as keep-flat and the audit log show it
RETRY_BUSY_MS = 50  # a retry must not stall the event loop behind another process's lock
MAX_BACKLOG = 200_000  # beyond this the oldest non-critical writes (audit of events) are dropped, counted
_DEFERRABLE = (
    "record_trade",
    "record_balance",
    "close_day",
    "save_book",
    "set_timer",
    "clear_timer",
    "append_audit",
    "record_policy",
)
_TRANSITIONS = ("mark_sent", "mark_confirmed", "mark_failed")


def is_fault(error: BaseException) -> bool:
    """A failure of the storage, as opposed to a refusal or a bug (an IntegrityError, an
    ActionStateError): those still raise."""
    if isinstance(error, (sqlite3.OperationalError, OSError)) or type(error) is sqlite3.DatabaseError:
        return True
    return _is_pg_fault(error)


def _is_pg_fault(error: BaseException) -> bool:
    """On a PostgreSQL desk: the server unreachable, restarting or failing over, the connection
    lost (``OperationalError``; the store reconnects at its next write)."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a dependency
        return False
    return isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError))


def describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


class FailSafeStore:
    def __init__(self, store: Store, on_change: Callable[[str, str], None] | None = None) -> None:
        self.store = store
        self.on_change = on_change or (lambda kind, text: None)
        self.backlog: deque[tuple[str, tuple, dict, bool]] = deque()
        self.critical = 0  # backlog entries that gate an effect: while > 0 the accounts are held flat
        self.fault: str | None = None
        self.faults = 0  # fault episodes so far
        self.dropped = 0
        self.replayed = 0
        self._actions: dict[str, ActionRecord] = {}
        self._lockouts: list[Lockout] = []
        # Lockouts buffered during a fault whose replay the store refused: kept in force from
        # memory (fail closed) until a restart, and alerted; they never just vanish.
        self._kept: list[Lockout] = []
        self.unreplayed: list[dict[str, str]] = []  # this episode's refused replays, for the audit
        self._last_lockouts: dict[int | None, list[Lockout]] = {}
        self._next_id = -1
        self._since: datetime | None = None
        self._generation = 0
        self._last_version = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    @property
    def holding(self) -> bool:
        return self.critical > 0

    # -- entering and leaving a fault -------------------------------------------------------

    def _failed(self, name: str, error: BaseException, now: datetime | None) -> None:
        first = self.fault is None
        self.fault = describe(error)
        if first:
            self.faults += 1
            self._since = now or datetime.now(UTC)
            log.error("state file write failed (%s: %s): buffering", name, self.fault)
            self.on_change(
                "fault",
                f"the state file {self.store.path} cannot be written ({self.fault}): riskc keeps enforcing "
                "from memory and buffers every write until it can",
            )

    def _defer(self, name: str, args: tuple, kwargs: dict, critical: bool) -> None:
        was_holding = self.holding
        self.backlog.append((name, args, kwargs, critical))
        if critical:
            self.critical += 1
        if len(self.backlog) > MAX_BACKLOG:
            self._drop_oldest()
        if critical and not was_holding:
            self._generation += 1  # the engine re-reads its lockouts: the hold is one of them
            self.on_change(
                "hold",
                f"a lockout or a broker call could not be written to {self.store.path} ({self.fault}): every "
                "account is held flat (positions closed, entries cancelled) until the state file can be written",
            )

    def _drop_oldest(self) -> None:
        for index, entry in enumerate(self.backlog):
            if not entry[3]:
                del self.backlog[index]
                self.dropped += 1
                return

    def retry(self) -> bool:
        """Replay the backlog in order; True when it is empty (the store is healthy)."""
        if not self.backlog:
            return True
        sqlite = not getattr(self.store, "is_pg", False)
        conn = self.store.db.conn
        if sqlite:
            conn.execute(f"PRAGMA busy_timeout = {RETRY_BUSY_MS}")
        try:
            while self.backlog:
                name, args, kwargs, critical = self.backlog[0]
                try:
                    getattr(self.store, name)(*args, **kwargs)
                except Exception as error:
                    if is_fault(error):
                        self.fault = describe(error)
                        return False
                    self._refused(name, args, error, critical)
                self.backlog.popleft()
                self.replayed += 1
                if critical:
                    self.critical -= 1
        finally:
            if sqlite:
                conn.execute(f"PRAGMA busy_timeout = {self.store.busy_ms}")
        self._recovered()
        return True

    def _refused(self, name: str, args: tuple, error: Exception, critical: bool) -> None:
        """The store took the connection back but refused a buffered write (not a storage fault).
        A lease that moved on is expected on a desk: the new holder recovers the account. Any
        other refusal of a write that gates an effect is alerted at once, and a refused lockout
        stays in force from memory: what the rules decided is never silently undone."""
        if isinstance(error, LeaseLost):
            log.info("buffered %s not replayed: %s (nothing was sent; the new holder recovers it)", name, error)
            return
        self.unreplayed.append({"write": name, "error": describe(error)})  # listed in the recovery's audit record
        if not critical:
            log.warning("buffered %s not replayed: %s", name, error)  # e.g. a state it already has
            return
        text = f"a buffered {name} could not be written to {self.store.path} ({describe(error)})"
        if name == "add_lockout":
            kept = self._buffered_lockout(args)
            if kept is not None:
                self._kept.append(kept)
            text += (
                ": the lockout stays in force from memory until riskc restarts; make it durable by hand "
                "(`riskc lock`) or check `riskc status`"
            )
        else:
            text += ": the broker call it records is verified against the broker at the next reconciliation"
        log.error("%s", text)
        self.on_change("unreplayed", text)

    def _buffered_lockout(self, args: tuple) -> Lockout | None:
        account_id, rule, reason, created = args[:4]
        return next(
            (
                lo
                for lo in self._lockouts
                if (lo.account_id, lo.rule, lo.reason, lo.since) == (account_id, rule, reason, created)
            ),
            None,
        )

    def _recovered(self) -> None:
        text = f"the state file {self.store.path} is writable again: {self.replayed} buffered write(s) replayed"
        if self.dropped:
            text += f", {self.dropped} audit record(s) of events dropped (the buffer was full)"
        try:
            self.store.append_audit(
                "error",
                {
                    "event": "state_store_fault",
                    "error": self.fault,
                    "replayed": self.replayed,
                    "dropped": self.dropped,
                    **({"not_replayed": self.unreplayed} if self.unreplayed else {}),
                },
                self._since or datetime.now(UTC),
            )
        except Exception as error:  # it failed again at once: the next retry starts a new episode
            log.error("cannot audit the storage fault: %s", error)
        self.fault, self.replayed, self.dropped, self.unreplayed = None, 0, 0, []
        self._actions.clear()
        self._lockouts.clear()
        self._generation += 1
        log.warning("%s", text)
        self.on_change("recovered", text + "; the hold, if any, is lifted")

    # -- writes that can wait ---------------------------------------------------------------

    def _deferrable(self, name: str, args: tuple, kwargs: dict) -> Any:
        if not self.backlog:
            try:
                return getattr(self.store, name)(*args, **kwargs)
            except Exception as error:
                if not is_fault(error):
                    raise
                self._failed(name, error, None)
        self._defer(name, args, kwargs, critical=False)
        return None

    def record_trade(self, *args: Any, **kwargs: Any) -> Any:
        return self._deferrable("record_trade", args, kwargs)

    def record_balance(self, *args: Any, **kwargs: Any) -> Any:
        return self._deferrable("record_balance", args, kwargs)

    def close_day(self, *args: Any, **kwargs: Any) -> Any:
        return self._deferrable("close_day", args, kwargs)

    def save_book(self, *args: Any, **kwargs: Any) -> Any:
        return self._deferrable("save_book", args, kwargs)

    def set_timer(self, *args: Any, **kwargs: Any) -> Any:
        return self._deferrable("set_timer", args, kwargs)

    def clear_timer(self, *args: Any, **kwargs: Any) -> Any:
        return self._deferrable("clear_timer", args, kwargs)

    def append_audit(self, *args: Any, **kwargs: Any) -> Any:
        return self._deferrable("append_audit", args, kwargs)

    def record_policy(self, *args: Any, **kwargs: Any) -> Any:
        return self._deferrable("record_policy", args, kwargs)

    # -- broker actions ---------------------------------------------------------------------

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
        args, kwargs = (key, account_id, rule, action, now), {"policy_hash": policy_hash}
        if lease_epoch is not None:  # a worker on a desk (fencing, desk.py)
            kwargs["lease_epoch"] = lease_epoch
        if not self.backlog:
            try:
                return self.store.plan_action(*args, **kwargs)
            except Exception as error:
                if not is_fault(error):
                    raise
                self._failed("plan_action", error, now)
        existing = self._actions.get(key) or self._read_action(key)
        if existing is not None and not (existing.state == "failed" and existing.retryable):
            return existing, False
        attempts = 1 if existing is None else existing.attempts + 1
        record = ActionRecord(
            key, account_id, rule, dict(action), "planned", now, None, None, None, None, None, attempts
        )
        self._actions[key] = record
        self._defer("plan_action", args, kwargs, critical=True)
        return record, True

    def _read_action(self, key: str) -> ActionRecord | None:
        try:
            return self.store.get_action(key)
        except Exception as error:
            if not is_fault(error):
                raise
            return None

    def _transition(self, name: str, key: str, now: datetime, args: tuple, kwargs: dict, **changes: Any) -> Any:
        if not self.backlog:
            try:
                return getattr(self.store, name)(key, now, *args, **kwargs)
            except Exception as error:
                if not is_fault(error):
                    raise
                self._failed(name, error, now)
        record = self._actions.get(key) or self._read_action(key)
        if record is not None:
            self._actions[key] = record = dataclasses.replace(record, **changes)
        self._defer(name, (key, now, *args), kwargs, critical=True)
        return record

    def mark_sent(self, key: str, now: datetime, *, lease_epoch: int | None = None) -> Any:
        kwargs = {} if lease_epoch is None else {"lease_epoch": lease_epoch}
        return self._transition("mark_sent", key, now, (), kwargs, state="sent", sent_at=now)

    def mark_confirmed(self, key: str, now: datetime, result: Mapping[str, Any] | None = None) -> Any:
        return self._transition(
            "mark_confirmed", key, now, (result,), {}, state="confirmed", finished_at=now, result=dict(result or {})
        )

    def mark_failed(self, key: str, now: datetime, error: str, retryable: bool) -> Any:
        return self._transition(
            "mark_failed",
            key,
            now,
            (error, retryable),
            {},
            state="failed",
            finished_at=now,
            error=error,
            retryable=retryable,
        )

    # -- lockouts ---------------------------------------------------------------------------

    def add_lockout(self, account_id: int, rule: str, reason: str, now: datetime, **kwargs: Any) -> Lockout:
        if not self.backlog:
            try:
                return self.store.add_lockout(account_id, rule, reason, now, **kwargs)
            except Exception as error:
                if not is_fault(error):
                    raise
                self._failed("add_lockout", error, now)
        until, condition, symbol = kwargs.get("until"), kwargs.get("condition"), kwargs.get("symbol")
        lockout = Lockout(
            self._next_id,
            "account" if symbol is None else "symbol",
            account_id,
            symbol,
            rule,
            reason,
            now,
            until,
            condition,
            kwargs.get("origin", "rule"),
        )
        self._next_id -= 1
        self._lockouts.append(lockout)
        self._defer("add_lockout", (account_id, rule, reason, now), kwargs, critical=True)
        return lockout

    def release_lockout(self, lockout_id: int, now: datetime, by: str, reason: str, passphrase: str | None = None):
        """A release that cannot be written is not made: the lockout stays in force."""
        if lockout_id < 0 or lockout_id == 0:
            return self._memory_lockout(lockout_id)
        if not self.backlog:
            try:
                return self.store.release_lockout(lockout_id, now, by, reason, passphrase)
            except StoreError:
                raise
            except Exception as error:
                if not is_fault(error):
                    raise
                self._failed("release_lockout", error, now)
        cached = [lo for lockouts in self._last_lockouts.values() for lo in lockouts]
        return next((lo for lo in cached if lo.id == lockout_id), None)

    def _memory_lockout(self, lockout_id: int) -> Lockout | None:
        return next((lo for lo in self._lockouts + self._kept if lo.id == lockout_id), None)

    def active_lockouts(self, account_id: int | None, now: datetime) -> list[Lockout]:
        try:
            stored = self.store.active_lockouts(account_id, now)
            self._last_lockouts[account_id] = stored
        except Exception as error:
            if not is_fault(error):
                raise
            stored = self._last_lockouts.get(account_id, [])
        extra = [lo for lo in self._lockouts + self._kept if lo.is_active(now) and account_id in (None, lo.account_id)]
        if self.holding and account_id is not None:
            extra.append(self._hold(account_id))
        return stored + extra

    def _hold(self, account_id: int) -> Lockout:
        return Lockout(
            0,
            "account",
            account_id,
            None,
            HOLD_RULE,
            f"the state file cannot be written ({self.fault}); held flat until it can",
            self._since or datetime.now(UTC),
            None,
            "manual",
            "rule",
        )

    def data_version(self) -> int:
        """Another process's commit changes it, and so does a change of the hold (the engine
        re-reads its lockouts when it changes)."""
        try:
            self._last_version = self.store.data_version()
        except Exception as error:
            if not is_fault(error):
                raise
        return self._last_version + (self._generation << 32)
