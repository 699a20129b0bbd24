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
- **Units.** The accounts of a group (and of groups that share an account) are one *unit*: a
  worker takes all of a unit or none (each lock is tried; if one is refused, those got in that
  attempt are given back), sheds whole units, and a unit larger than the share still goes to one
  worker (the share counts accounts, units are handed out whole: a unit is taken while the worker
  holds less than its share, shed only while it would still hold its share without it). A worker
  that loses one account of a unit (another took it after expiry) lets go of the rest at once, so
  one worker can take the unit whole (``split`` names it for the caller to alert). An account in
  no group is a unit of one: it behaves exactly as before.

Each change of owner is audited (an ``event`` record ``lease_acquired`` with the worker and
epoch), in the same transaction that bumps the epoch.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
from collections.abc import Iterable
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
        groups: Iterable[Iterable[int]] = (),
        worker: str | None = None,
        ttl_s: float = DEFAULT_TTL_S,
        poll_s: float = DEFAULT_POLL_S,
    ) -> None:
        self.url = url
        self.accounts = sorted(set(accounts))
        self.groups = [frozenset(group) for group in groups]  # the config's groups, as member ids
        self.worker = worker or worker_name()
        self.ttl_s = ttl_s
        self.poll_s = poll_s
        self.held: dict[int, int] = {}  # account -> epoch
        self.shedding: set[int] = set()  # shed but still locked (poll(let_go=False))
        self.split: list[tuple[int, ...]] = []  # units partly lost at the last poll, the rest let go
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
        """Renew the leases held, take free (or expired) units up to the fair share. Returns
        (gained, lost): the caller starts enforcing the gained accounts (recovering them from the
        store, as after a restart) and stops the lost ones at once. ``let_go=False``: accounts
        shed beyond the fair share, or the rest of a unit partly lost, stay locked (in
        ``shedding``) until ``let_go_of`` is called, so a caller that polls while its accounts run
        stops them before another worker can take them."""
        lost = self.renew()
        units = self.units()
        lost += self._let_go_of_split(units, unlock=let_go)
        gained: list[int] = []
        share = self.fair_share()
        lost += self._shed(units, share, unlock=let_go)
        for unit in self._candidates(units):
            if len(self.held) >= share:
                break
            epochs = self.try_acquire_unit(unit)
            if epochs is not None:
                gained += epochs
        return gained, lost

    def units(self) -> list[tuple[int, ...]]:
        """The desk's accounts in lease units: the connected groups' members together (only those
        on this desk), every other account alone; sorted."""
        parent = {account_id: account_id for account_id in self.accounts}

        def root(account_id: int) -> int:
            while parent[account_id] != account_id:
                parent[account_id] = parent[parent[account_id]]
                account_id = parent[account_id]
            return account_id

        for group in self.groups:
            members = sorted(a for a in group if a in parent)
            for other in members[1:]:
                parent[root(other)] = root(members[0])
        together: dict[int, list[int]] = {}
        for account_id in self.accounts:
            together.setdefault(root(account_id), []).append(account_id)
        return sorted(tuple(members) for members in together.values())

    def _let_go_of_split(self, units: list[tuple[int, ...]], *, unlock: bool) -> list[int]:
        """A unit of which this worker holds only part (one member lost at renewal: another worker
        took it after expiry) is let go whole, so that one worker can take it whole."""
        self.split = [unit for unit in units if 0 < sum(a in self.held for a in unit) < len(unit)]
        rest: list[int] = []
        for unit in self.split:
            rest += self._release([a for a in unit if a in self.held], unlock=unlock)
        return rest

    def _shed(self, units: list[tuple[int, ...]], share: int, *, unlock: bool = True) -> list[int]:
        """More than the fair share (this worker started first, or another one joined): let whole
        units go, highest ids first, while what is left is still the share (so a unit given up is
        never taken back by the same worker, nor a lone big unit passed around), for the newcomers
        to take at their next poll. Unlocked here when the caller polls between items (nothing of
        these accounts is in flight), else by ``let_go_of`` once the caller has stopped them."""
        shed: list[int] = []
        for unit in sorted((u for u in units if u[0] in self.held), key=lambda u: u[-1], reverse=True):
            if len(self.held) - len(unit) >= share:
                shed += self._release(list(unit), unlock=unlock)
        return shed

    def _release(self, accounts: list[int], *, unlock: bool) -> list[int]:
        for account_id in accounts:
            del self.held[account_id]
            if unlock:
                self._unlock(account_id)
            else:
                self.shedding.add(account_id)
        return accounts

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

    def _candidates(self, units: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
        """Units none of whose accounts this worker holds or is still letting go of (its session's
        lock would be taken twice), nor one it let go of as split at this poll: those with an
        unleased or long-unrenewed account first, then the rest."""
        rows = self.db.execute(
            "SELECT account_id, EXTRACT(EPOCH FROM clock_timestamp() - renewed_at::timestamptz)"
            " FROM leases WHERE account_id = ANY(%s)",
            [self.accounts],
        ).fetchall()
        age = {account_id: float(seconds) for account_id, seconds in rows}
        busy = {*self.held, *self.shedding, *(a for unit in self.split for a in unit)}
        free = [unit for unit in units if not busy.intersection(unit)]
        return sorted(free, key=lambda unit: -max(age.get(a, math.inf) for a in unit))

    def try_acquire(self, account_id: int) -> int | None:
        """Take the account if nobody holds it, or if its holder stopped renewing ``ttl`` ago
        (its lease session is ended first). Returns the new epoch, or None."""
        epochs = self.try_acquire_unit((account_id,))
        return None if epochs is None else epochs[account_id]

    def try_acquire_unit(self, unit: Iterable[int]) -> dict[int, int] | None:
        """Take every account of ``unit`` or none: each lock is tried (an expired holder's session
        ended first); if one is refused, the locks got in this attempt are given back before any
        epoch moves. Returns the new epochs, or None."""
        got: list[int] = []
        for account_id in unit:
            if not self._lock(account_id):
                for taken in got:
                    self._unlock(taken)
                return None
            got.append(account_id)
        epochs: dict[int, int] = {}
        for account_id in got:
            try:
                epochs[account_id] = self.held[account_id] = self._bump(account_id)
            except BaseException:
                for rest in got[len(epochs) + 1 :]:  # _bump unlocked its own
                    self._unlock(rest)
                for taken in epochs:  # none kept: the unit is held whole or not at all
                    del self.held[taken]
                    self._unlock(taken)
                raise
        return epochs

    def _lock(self, account_id: int) -> bool:
        got = self.db.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [self._key(account_id)]).fetchone()[0]
        if not got and self._end_expired_holder(account_id):
            got = self._wait_for_lock(account_id)
        return bool(got)

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
