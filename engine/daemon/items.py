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
    state: BrokerState
    now: dt.datetime


@dataclass(frozen=True, slots=True)
class Learned:
    """Instrument specs learned from the broker: position views are rebuilt with them."""

    symbols: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Swap:
    policies: PolicySet
    sources: tuple[tuple[str, str], ...]
