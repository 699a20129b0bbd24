"""``Store``: the daemon's state file, assembled from one mixin per kind of state."""

from __future__ import annotations

from .actions import ActionsMixin
from .book import BookMixin
from .ledger import LedgerMixin
from .lockouts import LockoutsMixin


class Store(LockoutsMixin, LedgerMixin, BookMixin, ActionsMixin):
    """Open with ``Store.open(path)``; see ``base`` for durability and threading, and each mixin
    for its part of the state. All times passed in are tz-aware (the store never reads the clock:
    replay and tests drive it with their own)."""
