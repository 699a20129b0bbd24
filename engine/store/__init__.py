"""The state store (PRODUCT.md §7): lockouts, timers, the day ledger, balances, the last known
book, policy versions, exactly-once broker actions and the hash-chained audit log, in one SQLite
file (WAL, 0600) that survives ``kill -9``."""

from __future__ import annotations

from riskc.engine.store.actions import idempotency_key
from riskc.engine.store.models import (
    ActionRecord,
    ActionStateError,
    AuditRecord,
    AuditVerification,
    Book,
    DayBalance,
    DayTotals,
    Lockout,
    LockoutStillActive,
    PolicyVersion,
    StateFileError,
    StoreError,
    Timer,
    Trade,
    UnlockDenied,
)
from riskc.engine.store.store import Store

__all__ = [
    "ActionRecord",
    "ActionStateError",
    "AuditRecord",
    "AuditVerification",
    "Book",
    "DayBalance",
    "DayTotals",
    "Lockout",
    "LockoutStillActive",
    "PolicyVersion",
    "StateFileError",
    "Store",
    "StoreError",
    "Timer",
    "Trade",
    "UnlockDenied",
    "idempotency_key",
]
