"""One rate limit per broker login, enforcement first (PRODUCT.md §8).

The Gateway allows about 200 requests a minute per login, whatever the account. Every account a
login serves shares one ``Admission``: a sliding 60 s window of ``per_minute`` requests, of which
reads (reconciliation, verification, contract lookups) may use all but ``reserve``, so a close is
never queued behind a burst of reads; an urgent request (a broker call, a login) also goes before
any read that is waiting. A ``429`` stops everything until its ``Retry-After`` has passed.
No SDK here: the ProjectX adapter asks before each request it makes.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any


class Admission:
    def __init__(
        self,
        per_minute: int = 180,
        reserve: int = 30,
        *,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.per_minute = max(1, per_minute)
        self.reserve = min(max(0, reserve), self.per_minute - 1)
        self.window, self.clock, self.sleep = window, clock, sleep
        self.blocked_until = 0.0
        self.waited = 0.0  # seconds requests spent waiting for admission (for the status line)
        self._sent: deque[float] = deque()
        self._urgent = 0

    def used(self) -> int:
        """Requests in the current window."""
        self._forget(self.clock())
        return len(self._sent)

    async def acquire(self, cost: int = 1, *, urgent: bool = False) -> None:
        """Wait until ``cost`` more requests fit in the window, then count them."""
        limit = self.per_minute if urgent else self.per_minute - self.reserve
        cost = min(max(1, cost), limit)
        if urgent:
            self._urgent += 1
        try:
            while True:
                now = self.clock()
                self._forget(now)
                if now >= self.blocked_until and len(self._sent) + cost <= limit and (urgent or not self._urgent):
                    self._sent.extend([now] * cost)
                    return
                wait = max(self.blocked_until - now, self._sent[0] + self.window - now if self._sent else 0.0, 0.05)
                wait = min(wait, 1.0)  # look again soon: an urgent request may have come and gone
                self.waited += wait
                await self.sleep(wait)
        finally:
            if urgent:
                self._urgent -= 1

    def refund(self, cost: int = 1) -> None:
        """``cost`` requests counted by the last ``acquire`` were not sent after all (a read
        shared with another account's)."""
        for _ in range(min(cost, len(self._sent))):
            self._sent.pop()

    def retry_after(self, seconds: float) -> None:
        """The Gateway answered ``429``: nothing goes out for ``seconds``."""
        self.blocked_until = max(self.blocked_until, self.clock() + max(0.0, seconds))

    def _forget(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - self.window:
            self._sent.popleft()


_LOGINS: dict[tuple[str, str], Admission] = {}


def for_login(api_url: str, username: str, per_minute: int = 180, reserve: int = 30) -> Admission:
    """The one ``Admission`` of a login (shared by every account it serves in this process)."""
    key = (api_url, username)
    if key not in _LOGINS:
        _LOGINS[key] = Admission(per_minute, reserve)
    return _LOGINS[key]
