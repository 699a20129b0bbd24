"""The account's trading state (PRODUCT.md §9; NautilusTrader's ``TradingState``): ``active``,
``reducing`` (exits only: a symbol is blocked) or ``halted`` (locked out: kept flat).

``Trading`` owns the lockouts and blocks in force. It reads them from the store only when one
may have changed (one was set, one expires, another process wrote the store, a restart), lifts a
``while`` lockout once its condition no longer holds, says whether a position or order is exposed
to a lockout (and so is kept flat: new positions closed, new working orders cancelled; exits
always allowed), and turns every change of state into a §6.2 ``trading_state`` record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from riskc.engine.core.instruments import symbol_of

if TYPE_CHECKING:
    from riskc.engine.core.book import Book
    from riskc.engine.store import Lockout, Store

Holds = Callable[[str, Any], bool]  # (rule, snapshot) -> whether a `while` lockout's condition still holds


class TradingState(StrEnum):
    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


class Trading:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.state = TradingState.ACTIVE
        self.reason = "no lockout or block in force"
        self.lockouts: list[Lockout] = []
        self.checked: dt.datetime | None = None  # when the store was last read; None: read again
        self.expires: dt.datetime | None = None  # the first of their ends
        self.has_while = False  # one of them is a `while` lockout (checked on every evaluation)
        self.version = 0  # counts reads of the lockouts, releases and invalidations
        self._exposure_key: tuple[int, int] | None = None
        self._exposure = False
        self._rule = ""

    # -- the lockouts in force ---------------------------------------------------------------

    def invalidate(self) -> None:
        """A lockout may have changed (one was set, another process wrote the store): read again."""
        self.checked = None
        self.version += 1  # an engine settled on the lockouts it read evaluates again (Engine._settle)

    def fresh(self, now: dt.datetime) -> bool:
        """Whether ``lockouts`` is current without reading anything (the usual case)."""
        expires = self.expires
        return self.checked is not None and not self.has_while and (expires is None or now < expires)

    def current(self, account_id: int, now: dt.datetime, snapshot: Any, holds: Holds) -> list[Lockout]:
        """The lockouts in force at ``now``; ``while`` lockouts whose condition cleared are released."""
        if self.checked is None or (self.expires is not None and now >= self.expires):
            self.lockouts = self.store.active_lockouts(account_id, now)
            self.version += 1
            self.checked = now
            ends = [lo.until for lo in self.lockouts if lo.until is not None]
            self.expires = min(ends) if ends else None
            self.has_while = any(_is_while(lo) for lo in self.lockouts)
        if self.has_while:
            self._release_cleared(now, snapshot, holds)
        return self.lockouts

    def at(self, now: dt.datetime) -> list[Lockout]:
        """The lockouts in force as last read (for the live view and the board: no store I/O)."""
        return [lo for lo in self.lockouts if lo.is_active(now)]

    def _release_cleared(self, now: dt.datetime, snapshot: Any, holds: Holds) -> None:
        for lockout in list(self.lockouts):
            if not _is_while(lockout):
                continue
            rule = lockout.condition.removeprefix("while:")  # type: ignore[union-attr]
            if holds(rule, snapshot):
                continue
            self.store.release_lockout(
                lockout.id, now, by="engine", reason=f"`while` condition of {rule} no longer holds"
            )
            self.lockouts.remove(lockout)
            self.version += 1

    # -- what a position or an order gets ----------------------------------------------------

    def exposed(self, book: Book) -> bool:
        """Whether a lockout has a position or order to keep flat (a CL block has nothing to do
        with an MNQ position), asked again only when the book or the lockouts changed."""
        key = (book.version, self.version)
        if key != self._exposure_key:
            self._exposure_key, self._exposure = key, _exposed(self.lockouts, book)
        return self._exposure

    # -- the state ---------------------------------------------------------------------------

    def transition(self, lockouts: list[Lockout], now: dt.datetime) -> dict[str, Any] | None:
        """The §6.2 ``trading_state`` record when ``lockouts`` change the state, else None."""
        state, rule, reason, until = _state_of(lockouts)
        if state == self.state:
            return None
        if state is TradingState.ACTIVE:
            rule, reason = self._rule or "engine", f"{self.state} ended: no lockout or block in force"
        self.state, self.reason, self._rule = state, reason, rule
        record: dict[str, Any] = {"ts": now.isoformat(), "rule": rule, "action": "trading_state", "state": str(state)}
        if until is not None:
            record["until"] = until.astimezone(dt.UTC).isoformat()
        record["reason"] = reason
        return record


def state_of(lockouts: list[Lockout]) -> tuple[TradingState, str]:
    """The trading state the lockouts in force make, and why (for `riskc status`)."""
    state, _, reason, _ = _state_of(lockouts)
    return state, reason or "no lockout or block in force"


def _state_of(lockouts: list[Lockout]) -> tuple[TradingState, str, str, dt.datetime | None]:
    """(state, rule, reason, until) the lockouts in force make: an account lockout halts, a
    symbol block leaves exits only. The longest-lasting lockout names the state."""
    account = [lo for lo in lockouts if lo.symbol is None]
    if account:
        lockout = max(account, key=_ends)
        return TradingState.HALTED, lockout.rule, f"account locked by {lockout.rule}: {lockout.reason}", lockout.until
    if lockouts:
        lockout = max(lockouts, key=_ends)
        symbols = ", ".join(sorted({lo.symbol for lo in lockouts if lo.symbol}))
        return TradingState.REDUCING, lockout.rule, f"{symbols} blocked (exits only): {lockout.reason}", None
    return TradingState.ACTIVE, "", "", None


def _ends(lockout: Lockout) -> tuple[int, dt.datetime]:
    if lockout.until is None:
        return (1, lockout.since)  # manual or `while`: no known end, the strongest
    return (0, lockout.until)


def _is_while(lockout: Lockout) -> bool:
    return bool(lockout.condition and lockout.condition.startswith("while:"))


def _exposed(lockouts: list[Lockout], book: Book) -> bool:
    if not (book.positions or book.orders):
        return False
    symbols = set()
    for lockout in lockouts:
        if lockout.symbol is None:
            return True
        symbols.add(lockout.symbol)
    return any(symbol_of(c) in symbols for c in book.positions) or any(
        e.order.symbol in symbols for e in book.orders.values()
    )
