"""What an account loop's queue carries besides broker messages: the clock, a reconciliation
and a policy swap. Their own module, so the feeds, the reload and the daemon share them without
importing one another."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from riskc.engine.adapters.port import BrokerState
from riskc.engine.runner import PolicySet


@dataclass(frozen=True, slots=True)
class Tick:
    now: dt.datetime


@dataclass(frozen=True, slots=True)
class Reconcile:
    """The broker's state read at ``now`` (when the read started). ``gone``: the orders the book
    held that the broker no longer lists, confirmed by a second read; None: every order missing
    from ``state`` is gone (a caller that did not confirm)."""

    state: BrokerState
    now: dt.datetime
    gone: frozenset | None = None


@dataclass(frozen=True, slots=True)
class Learned:
    """Instrument specs learned from the broker: position views are rebuilt with them."""

    symbols: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Swap:
    policies: PolicySet
    sources: tuple[tuple[str, str], ...]
