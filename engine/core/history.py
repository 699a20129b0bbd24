"""What rules see of the days before today: the trading week so far and the recent fills
(`week.*`, `day.fills_within` across days; PRODUCT.md §3.6).

The book knows only today's fills. The days before come from the state store's ledger, which
records every fill as it happens, so they survive a restart. They are read once per trading day
(and again when the account becomes known), not per evaluation: the past does not change while
the day goes on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from riskc.engine.core.snapshot import ZERO

WINDOW_DAYS = 7  # how far back `day.fills_within` can see (a `7d` window spans the week)


@dataclass(frozen=True, slots=True)
class Earlier:
    """The trading week before today, and the fill times of the last days before today."""

    realized: Decimal = ZERO  # trade P&L minus fees, voided trades excluded
    trades: int = 0
    losing: int = 0
    fill_times: tuple[dt.datetime, ...] = ()  # oldest first


NOTHING_EARLIER = Earlier()

# (account id, today's trading day, the week's first trading day) -> the days before today
HistorySource = Callable[[int, dt.date, dt.date], Earlier]


def store_history(store) -> HistorySource:
    """The days before today from the store's ledger (``Store.trades_between``)."""

    def earlier(account_id: int, today: dt.date, week_start: dt.date) -> Earlier:
        first = min(week_start, today - dt.timedelta(days=WINDOW_DAYS + 3))  # + a weekend's slack
        trades = [t for t in store.trades_between(account_id, first, today) if not t.voided]
        week = [t for t in trades if t.trading_day >= week_start]
        realized = sum(((t.pnl or ZERO) - t.fees for t in week), ZERO)
        losing = sum(1 for t in week if t.pnl is not None and t.pnl < 0)
        times = tuple(sorted(t.ts.astimezone(dt.UTC) for t in trades))
        return Earlier(realized, len(week), losing, times)

    return earlier
