"""What the store hands back: frozen values, so a caller cannot change state except through the
store (where the change is transactional and, when it matters, audited)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

Scope = Literal["account", "symbol"]
Origin = Literal["rule", "personal", "admin"]
ActionState = Literal["planned", "sent", "confirmed", "failed"]
AuditKind = Literal[
    "event",
    "decision",
    "action_planned",
    "broker_call",
    "outcome",
    "policy_loaded",
    "lockout",
    "unlock",
    "drift",
    "reconcile",
    "day_roll",
    "error",
    "admin",
]
# "admin" (passphrase changes) is the one kind beyond the list: it is neither a lockout
# nor an unlock, and hiding it under either would make the log lie.
AUDIT_KINDS: tuple[str, ...] = AuditKind.__args__  # type: ignore[attr-defined]


class StoreError(Exception):
    """Base for refusals by the store; the message is a sentence a trader can read."""


class StateFileError(StoreError):
    """The state file cannot be used: empty, truncated, foreign, corrupt, unreadable, or held by
    another daemon. The message names the file; the CLI exits 2 with it."""


class LockoutStillActive(StoreError):
    """A lockout that only time (or an admin) may end was asked to end early."""


class UnlockDenied(StoreError):
    """An admin unlock or passphrase change with a missing or wrong passphrase."""


class ActionStateError(StoreError):
    """A transition the planned → sent → confirmed|failed machine does not allow."""


@dataclass(frozen=True, slots=True)
class Lockout:
    """An account or symbol lockout. Exactly one of ``until`` (timed) and ``condition``
    (``manual`` or ``while:<expression>``) is set. ``released_at`` is set once it was lifted
    early (engine for a ``while`` lockout whose condition cleared, or an admin)."""

    id: int
    scope: Scope
    account_id: int
    symbol: str | None
    rule: str
    reason: str
    since: datetime
    until: datetime | None
    condition: str | None
    origin: Origin
    released_at: datetime | None = None
    released_by: str | None = None
    release_reason: str | None = None

    def is_active(self, now: datetime) -> bool:
        if self.released_at is not None:
            return False
        return self.until is None or self.until > now


@dataclass(frozen=True, slots=True)
class Timer:
    """A grace period or cooldown as data: it exists from ``started_at`` and, when it has one,
    ends at ``expires_at``. Nothing ticks; callers compare against their clock."""

    account_id: int
    key: str
    started_at: datetime
    expires_at: datetime | None
    payload: Mapping[str, Any]

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True, slots=True)
class Trade:
    account_id: int
    trade_id: str
    trading_day: date
    contract_id: str
    ts: datetime
    side: int
    size: int
    price: Decimal
    pnl: Decimal | None
    fees: Decimal
    voided: bool


@dataclass(frozen=True, slots=True)
class DayTotals:
    """``realized_pnl`` = Σ pnl − Σ fees over the day's non-voided trades. An opening fill has no
    P&L (the broker sends null) and counts as 0 P&L, but its fees are still paid, so they count.
    ``trade_count`` counts every non-voided fill, opening ones included."""

    realized_pnl: Decimal
    gross_pnl: Decimal
    fees: Decimal
    trade_count: int


@dataclass(frozen=True, slots=True)
class DayBalance:
    """One trading day's balances: the last seen, the intraday high-water, and (once the day is
    closed) the end-of-day balance and the end-of-day high-water mark as of that close."""

    account_id: int
    trading_day: date
    last_balance: Decimal
    last_ts: datetime | None
    high_water: Decimal
    eod_balance: Decimal | None
    eod_high_water: Decimal | None


@dataclass(frozen=True, slots=True)
class Book:
    """The last known positions and working orders, as the JSON text they were saved as."""

    account_id: int
    positions_json: str
    orders_json: str
    ts: datetime


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    path: str
    content_hash: str
    loaded_at: datetime


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One planned broker action and how far it got. ``key`` is the idempotency key
    (``rule|target|trading_day|episode``); ``attempts`` counts how often it was (re)planned."""

    key: str
    account_id: int
    rule: str
    action: Mapping[str, Any]
    state: ActionState
    planned_at: datetime
    sent_at: datetime | None
    finished_at: datetime | None
    result: Mapping[str, Any] | None
    error: str | None
    retryable: bool | None
    attempts: int


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    ts: datetime
    kind: str
    account_id: int | None
    policy_hash: str | None
    payload: str
    prev_hash: str
    hash: str


@dataclass(frozen=True, slots=True)
class AuditVerification:
    """``ok`` with ``count`` records, or the first bad ``seq`` and what is wrong with it."""

    ok: bool
    count: int
    first_bad_seq: int | None = None
    problem: str | None = None
