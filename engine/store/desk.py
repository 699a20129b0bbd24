"""Accounts leased to workers on a PostgreSQL desk (PRODUCT.md §10).

Several workers share one desk; each account is owned by exactly one of them at a time:

- **The lock.** A worker owns an account while its *lease session* (one connection per worker,
  ``application_name`` ``riskc-desk:<schema>``) holds the session advisory lock ``riskc:<schema>:account:<id>``.
  PostgreSQL drops it the moment that session ends: a worker killed with ``kill -9``, or whose
  machine dies, loses its accounts as soon as the server sees the connection close.
- **The lease row** (``leases``): owner, the lease session's backend pid, ``renewed_at`` (the
  server's clock, so the workers' clocks do not matter) and the **epoch**, bumped at every change
  of owner. Every planned broker call carries the epoch it was planned under, and ``plan_action``
  and ``mark_sent`` refuse a stale one in the same transaction (``LeaseLost``): that is fencing.
- **A worker that hangs** (stopped, swapped out, partitioned with its connection still open)
  stops renewing. Once its lease is older than ``ttl``, another worker ends its lease session
  (``pg_terminate_backend``), which frees the lock, and takes the account with the next epoch.
  When the stuck worker resumes, its next ``mark_sent`` names the old epoch and is refused.
- **The bound.** A dead worker's accounts are taken within one ``poll`` (the lock is free at
  once); a stuck worker's within ``ttl + poll``. The defaults (1 s, 5 s) keep both under 10 s.
- **Sharing.** A worker takes free accounts up to its fair share, ``ceil(accounts / workers)``,
  counting the live lease sessions, and lets go of what it holds beyond it (the first worker to
  start holds everything until the others appear); so 3 workers on 30 accounts hold 10 each, and
  when one dies the other two's share becomes 15 and they take its 10 at their next poll.

Each change of owner is audited (an ``event`` record ``lease_acquired`` with the worker and
epoch), in the same transaction that bumps the epoch.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from riskc.engine.store import audit
from riskc.engine.store.postgres import PgDatabase

APPLICATION = "riskc-desk"
DEFAULT_TTL_S = 5.0
DEFAULT_POLL_S = 1.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class LeaseRow:
    account_id: int
    worker: str
    epoch: int
    backend_pid: int | None
    acquired_at: str
    renewed_at: str
    age_s: float
    held: bool  # the advisory lock is held by a live session (not only a row left behind)


class Desk:
    """One worker's leases. Use from one thread at a time (the daemon calls it from its one
    lease thread, off the event loop); ``poll()`` once per ``poll_s`` renews what is held and
    takes what is free."""

    def __init__(
        self,
        url: str,
        accounts: list[int],
        *,
        worker: str | None = None,
        ttl_s: float = DEFAULT_TTL_S,
        poll_s: float = DEFAULT_POLL_S,
    ) -> None:
        self.url = url
        self.accounts = sorted(set(accounts))
        self.worker = worker or worker_name()
        self.ttl_s = ttl_s
        self.poll_s = poll_s
        self.held: dict[int, int] = {}  # account -> epoch
        self.shedding: set[int] = set()  # shed but still locked (poll(let_go=False))
        self.db = self._connect()

    def _connect(self) -> PgDatabase:
        db = PgDatabase.connect(self.url)
        self.application = f"{APPLICATION}:{db.schema}"[:63]
        db.execute(f"SET application_name = '{self.application}'")
        return db

    def _key(self, account_id: int) -> str:
        return self.db.lock_key(f"account:{account_id}")

    # -- the cycle ------------------------------------------------------------------------------

    def poll(self, *, let_go: bool = True) -> tuple[list[int], list[int]]:
        """Renew the leases held, take free (or expired) accounts up to the fair share. Returns
        (gained, lost): the caller starts enforcing the gained accounts (recovering them from the
        store, as after a restart) and stops the lost ones at once. ``let_go=False``: accounts
        shed beyond the fair share stay locked (in ``shedding``) until ``let_go_of`` is called,
        so a caller that polls while its accounts run stops them before another worker can take
        them."""
        lost = self.renew()
        gained: list[int] = []
        share = self.fair_share()
        lost += self._shed(len(self.held) - share, unlock=let_go)
        for account_id in self._candidates():
            if len(self.held) >= share:
                break
            epoch = self.try_acquire(account_id)
            if epoch is not None:
                gained.append(account_id)
        return gained, lost

    def _shed(self, surplus: int, *, unlock: bool = True) -> list[int]:
        """More than the fair share (this worker started first, or another one joined): let the
        surplus go, highest ids first, for the newcomers to take at their next poll. Unlocked
        here when the caller polls between items (nothing of these accounts is in flight), else
        by ``let_go_of`` once the caller has stopped them."""
        if surplus <= 0:
            return []
        shed = sorted(self.held, reverse=True)[:surplus]
        for account_id in shed:
            del self.held[account_id]
            if unlock:
                self._unlock(account_id)
            else:
                self.shedding.add(account_id)
        return shed

    def let_go_of(self, accounts: list[int]) -> None:
        """Unlock accounts ``poll(let_go=False)`` shed, now that they are stopped."""
        for account_id in accounts:
            if account_id in self.shedding and account_id not in self.held:
                self.shedding.discard(account_id)
                self._unlock(account_id)

    def renew(self) -> list[int]:
        """Move ``renewed_at`` on; any account whose row names another owner or epoch, or every
        account when the lease session is gone (terminated, the server restarted), is lost."""
        import psycopg

        if not self.held:
            return []
        try:
            rows = self.db.execute(
                "UPDATE leases SET renewed_at = clock_timestamp()::text"
                " WHERE worker = %s AND account_id = ANY(%s) RETURNING account_id, epoch",
                [self.worker, list(self.held)],
            ).fetchall()
        except psycopg.Error:
            lost = sorted(self.held)
            self.held.clear()
            self.reconnect()
            return lost
        current = dict(rows)
        lost = [a for a, epoch in self.held.items() if current.get(a) != epoch]
        for account_id in lost:
            del self.held[account_id]
            self._unlock(account_id)
        return lost

    def reconnect(self) -> None:
        import psycopg

        with contextlib.suppress(psycopg.Error):
            self.db.close()
        with contextlib.suppress(psycopg.Error):  # else the next poll tries again; nothing is held meanwhile
            self.db = self._connect()

    def fair_share(self) -> int:
        live = self.db.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND datname = current_database()",
            [self.application],
        ).fetchone()[0]
        return math.ceil(len(self.accounts) / max(1, live))

    def _candidates(self) -> list[int]:
        """Accounts not held by this worker: unleased or long-unrenewed first, then the rest."""
        rows = self.db.execute(
            "SELECT account_id, EXTRACT(EPOCH FROM clock_timestamp() - renewed_at::timestamptz)"
            " FROM leases WHERE account_id = ANY(%s)",
            [self.accounts],
        ).fetchall()
        age = {account_id: float(seconds) for account_id, seconds in rows}
        free = [a for a in self.accounts if a not in self.held]
        return sorted(free, key=lambda a: -age.get(a, math.inf))

    def try_acquire(self, account_id: int) -> int | None:
        """Take the account if nobody holds it, or if its holder stopped renewing ``ttl`` ago
        (its lease session is ended first). Returns the new epoch, or None."""
        got = self.db.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [self._key(account_id)]).fetchone()[0]
        if not got and self._end_expired_holder(account_id):
            got = self._wait_for_lock(account_id)
        if not got:
            return None
        epoch = self._bump(account_id)
        self.held[account_id] = epoch
        return epoch

    def _end_expired_holder(self, account_id: int) -> bool:
        row = self.db.execute(
            "SELECT backend_pid FROM leases WHERE account_id = %s"
            " AND renewed_at::timestamptz < clock_timestamp() - make_interval(secs => %s)",
            [account_id, self.ttl_s],
        ).fetchone()
        if row is None or row[0] is None or row[0] == self.db.conn.info.backend_pid:
            return False
        self.db.execute("SELECT pg_terminate_backend(%s)", [row[0]])
        return True

    def _wait_for_lock(self, account_id: int, within_s: float = 2.0) -> bool:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.db.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [self._key(account_id)]).fetchone()[0]:
                return True
            time.sleep(0.05)
        return False

    def _bump(self, account_id: int) -> int:
        """The next epoch and this worker's name, under the store's writer lock (the one every
        ``plan_action`` and ``mark_sent`` takes), audited in the same transaction."""
        self.db.begin_write(durable=True)
        try:
            epoch = self.db.execute(
                "INSERT INTO leases (account_id, worker, epoch, backend_pid, acquired_at, renewed_at)"
                " VALUES (%s, %s, 1, pg_backend_pid(), clock_timestamp()::text, clock_timestamp()::text)"
                " ON CONFLICT (account_id) DO UPDATE SET worker = excluded.worker, epoch = leases.epoch + 1,"
                " backend_pid = excluded.backend_pid, acquired_at = excluded.acquired_at,"
                " renewed_at = excluded.renewed_at RETURNING epoch",
                [account_id, self.worker],
            ).fetchone()[0]
            payload = {"event": "lease_acquired", "worker": self.worker, "epoch": epoch}
            audit.append(self.db, "event", payload, datetime.now(UTC), account_id)  # type: ignore[arg-type]
            self.db.commit()
        except BaseException:
            if self.db.in_transaction:
                self.db.rollback()
            self._unlock(account_id)
            raise
        return epoch

    def _unlock(self, account_id: int) -> None:
        import psycopg

        with contextlib.suppress(psycopg.Error):
            self.db.execute("SELECT pg_advisory_unlock(hashtext(%s))", [self._key(account_id)])

    def release_all(self) -> None:
        """A clean stop: the locks go at once, so the others take the accounts at their next poll."""
        for account_id in [*self.held, *self.shedding]:
            self._unlock(account_id)
        self.held.clear()
        self.shedding.clear()

    def close(self) -> None:
        import psycopg

        self.release_all()
        with contextlib.suppress(psycopg.Error):
            self.db.close()


class FencedStore:
    """One account's view of the store in a worker: every ``plan_action`` and ``mark_sent``
    carries the account's lease epoch; ``epoch`` is set when the lease is taken and made invalid
    (-1) when it is lost, so a call the engine still tries afterwards is refused (``LeaseLost``)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.epoch = -1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def plan_action(self, *args: Any, **kwargs: Any) -> Any:
        return self.store.plan_action(*args, **kwargs, lease_epoch=self.epoch)

    def mark_sent(self, key: str, now: datetime) -> Any:
        return self.store.mark_sent(key, now, lease_epoch=self.epoch)


def leases(db: Any) -> list[LeaseRow]:
    """Every lease row with its age and whether a live session holds its lock (`status --desk`)."""
    rows = db.execute(
        "SELECT l.account_id, l.worker, l.epoch, l.backend_pid, l.acquired_at, l.renewed_at,"
        " EXTRACT(EPOCH FROM clock_timestamp() - l.renewed_at::timestamptz),"
        " EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = l.backend_pid AND a.application_name LIKE %s)"
        " FROM leases l ORDER BY l.account_id",
        [APPLICATION + ":%"],
    ).fetchall()
    return [LeaseRow(r[0], r[1], r[2], r[3], r[4], r[5], float(r[6]), bool(r[7])) for r in rows]
