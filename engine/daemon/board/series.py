"""The day's net P&L over time, for the board's chart: at most ``limit`` evenly spaced samples
however long the day, so memory and the page stay small."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any


class PnlSeries:
    """Samples ``(time, net P&L)`` of one trading day. When full, every other sample is dropped
    and the spacing doubles; a new trading day starts a new series."""

    def __init__(self, limit: int = 720, step: dt.timedelta = dt.timedelta(seconds=1)) -> None:
        self.limit = limit
        self.first_step = step
        self.step = step
        self.day: dt.date | None = None
        self.points: list[tuple[dt.datetime, Decimal]] = []

    def add(
        self, day: dt.date, when: dt.datetime, net: Decimal, history: Callable[[], Iterable[Any]] | None = None
    ) -> None:
        """Sample ``net`` at ``when``. On a new trading day, ``history`` (the day's trades from
        the state file) draws the realized P&L up to now first, so a restart keeps the morning."""
        if day != self.day:
            self.day, self.points, self.step = day, [], self.first_step
            if history is not None:
                self._seed(history(), when)
        self._add(when, net)

    def _seed(self, trades: Iterable[Any], until: dt.datetime) -> None:
        realized = Decimal(0)
        for trade in sorted(trades, key=lambda t: t.ts):
            if trade.ts >= until:
                break
            if not trade.voided:
                realized += (trade.pnl or 0) - trade.fees
                self._add(trade.ts, realized)

    def _add(self, when: dt.datetime, net: Decimal) -> None:
        points = self.points
        if len(points) >= 2 and points[-1][0] - points[-2][0] < self.step:
            points[-1] = (when, net)  # the last sample stands in for "now" until a step has passed
        else:
            points.append((when, net))
        if len(points) > self.limit:
            self.points = points[::2] if len(points) % 2 else points[::2] + [points[-1]]
            self.step *= 2
