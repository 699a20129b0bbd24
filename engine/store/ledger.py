"""The day ledger (trades with fees and P&L) and balances with their high-water marks.

Trades are keyed on the broker's trade id, so replaying the same messages after a reconnect or a
restart cannot count a fill twice. Totals are summed in Python with Decimal: exact, and a day
has at most a few hundred fills.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from riskc.engine.store.base import StoreBase
from riskc.engine.store.codec import day_text, money_text, parse_money, parse_time, time_text, to_decimal
from riskc.engine.store.models import DayBalance, DayTotals, Trade

TradeOutcome = Literal["recorded", "duplicate", "voided", "unvoided"]

_TRADE_COLUMNS = "account_id, trade_id, trading_day, contract_id, ts, side, size, price, pnl, fees, voided"
_BALANCE_COLUMNS = "account_id, trading_day, last_balance, last_ts, high_water, eod_balance, eod_high_water"


def _trade(row: tuple) -> Trade:
    account_id, trade_id, day, contract_id, ts, side, size, price, pnl, fees, voided = row
    return Trade(
        account_id,
        trade_id,
        date.fromisoformat(day),
        contract_id,
        parse_time(ts),
        side,
        size,
        Decimal(price),
        parse_money(pnl),
        Decimal(fees),
        bool(voided),
    )


def _balance(row: tuple) -> DayBalance:
    account_id, day, last, last_ts, high, eod, eod_high = row
    return DayBalance(
        account_id,
        date.fromisoformat(day),
        Decimal(last),
        parse_time(last_ts),
        Decimal(high),
        parse_money(eod),
        parse_money(eod_high),
    )


def totals_of(trades: list[Trade]) -> DayTotals:
    """See ``DayTotals``: voided trades are skipped, a null P&L counts as 0 but its fees count."""
    live = [t for t in trades if not t.voided]
    gross = sum((t.pnl for t in live if t.pnl is not None), Decimal(0))
    fees = sum((t.fees for t in live), Decimal(0))
    return DayTotals(gross - fees, gross, fees, len(live))


class LedgerMixin(StoreBase):
    # -- trades -----------------------------------------------------------------------------

    def record_trade(
        self,
        account_id: int,
        trade_id: int | str,
        trading_day: date | str,
        contract_id: str,
        ts: datetime,
        side: int,
        size: int,
        price: Decimal | int | str | float,
        pnl: Decimal | int | str | float | None,
        fees: Decimal | int | str | float,
        voided: bool = False,
    ) -> TradeOutcome:
        """Record a fill once. A duplicate is ignored, except that a change of ``voided`` (the
        broker voids a trade after the fact) is applied: that is the only field a repeat may
        change, because it is the only one the broker changes."""
        row = [
            account_id,
            str(trade_id),
            day_text(trading_day),
            contract_id,
            time_text(ts),
            side,
            size,
            money_text(price),
            None if pnl is None else money_text(pnl),
            money_text(fees),
            int(voided),
        ]
        with self._write():
            cursor = self.db.execute(
                f"INSERT INTO trades ({_TRADE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (account_id, trade_id) DO NOTHING",
                row,
            )
            if cursor.rowcount:
                return "recorded"
            cursor = self.db.execute(
                "UPDATE trades SET voided = ? WHERE account_id = ? AND trade_id = ? AND voided <> ?",
                [int(voided), account_id, str(trade_id), int(voided)],
            )
            if not cursor.rowcount:
                return "duplicate"
            return "voided" if voided else "unvoided"

    def day_trades(self, account_id: int, trading_day: date | str) -> list[Trade]:
        """All of the day's trades, voided ones included (``Trade.voided``), oldest first."""
        rows = self.db.execute(
            f"SELECT {_TRADE_COLUMNS} FROM trades WHERE account_id = ? AND trading_day = ? ORDER BY ts, trade_id",
            [account_id, day_text(trading_day)],
        )
        return [_trade(row) for row in rows]

    def latest_trading_day(self, account_id: int) -> date | None:
        """The latest trading day with activity (a trade or a balance), None for none."""
        row = self.db.execute(
            "SELECT MAX(day) FROM (SELECT MAX(trading_day) AS day FROM trades WHERE account_id = ?"
            " UNION ALL SELECT MAX(trading_day) FROM balances WHERE account_id = ?)",
            [account_id, account_id],
        ).fetchone()
        return None if row is None or row[0] is None else date.fromisoformat(row[0])

    def trades_between(self, account_id: int, first_day: date | str, last_day: date | str) -> list[Trade]:
        """The trades of the trading days from ``first_day`` up to, not including, ``last_day``
        (voided ones included), oldest first: the week before today, the days a window spans."""
        rows = self.db.execute(
            f"SELECT {_TRADE_COLUMNS} FROM trades WHERE account_id = ? AND trading_day >= ? AND trading_day < ?"
            " ORDER BY ts, trade_id",
            [account_id, day_text(first_day), day_text(last_day)],
        )
        return [_trade(row) for row in rows]

    def day_totals(self, account_id: int, trading_day: date | str) -> DayTotals:
        return totals_of(self.day_trades(account_id, trading_day))

    # -- balances and high-water marks ------------------------------------------------------

    def day_balance(self, account_id: int, trading_day: date | str) -> DayBalance | None:
        row = self.db.execute(
            f"SELECT {_BALANCE_COLUMNS} FROM balances WHERE account_id = ? AND trading_day = ?",
            [account_id, day_text(trading_day)],
        ).fetchone()
        return None if row is None else _balance(row)

    def record_balance(
        self, account_id: int, ts: datetime, trading_day: date | str, balance: Decimal | int | str | float
    ) -> DayBalance:
        """Note a balance update; the day's intraday high-water only goes up. A message older
        than the last one seen (replayed late) still counts for the high-water but does not
        become the last balance."""
        amount = to_decimal(balance)
        with self._write():
            current = self.day_balance(account_id, trading_day)
            if current is None:
                self._upsert_balance(account_id, trading_day, amount, ts, amount)
            else:
                newer = current.last_ts is None or ts >= current.last_ts
                self._upsert_balance(
                    account_id,
                    trading_day,
                    amount if newer else current.last_balance,
                    ts if newer else current.last_ts,
                    max(current.high_water, amount),
                )
            return self.day_balance(account_id, trading_day)  # type: ignore[return-value]

    def _upsert_balance(
        self, account_id: int, trading_day: date | str, last: Decimal, last_ts: datetime | None, high: Decimal
    ) -> None:
        self.db.execute(
            "INSERT INTO balances (account_id, trading_day, last_balance, last_ts, high_water) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (account_id, trading_day) DO UPDATE SET last_balance = excluded.last_balance,"
            " last_ts = excluded.last_ts, high_water = excluded.high_water",
            [
                account_id,
                day_text(trading_day),
                money_text(last),
                None if last_ts is None else time_text(last_ts),
                money_text(high),
            ],
        )

    def close_day(self, account_id: int, trading_day: date | str, balance: Decimal | int | str | float) -> DayBalance:
        """Record the end-of-day balance and the EOD high-water mark as of this close: the
        highest end-of-day balance so far (what an end-of-day trailing drawdown trails).
        Closing the same day again replaces its close. Days are expected to close in order."""
        amount = to_decimal(balance)
        with self._write():
            current = self.day_balance(account_id, trading_day)
            if current is None:
                self._upsert_balance(account_id, trading_day, amount, None, amount)
            else:
                self._upsert_balance(
                    account_id, trading_day, current.last_balance, current.last_ts, max(current.high_water, amount)
                )
            previous = self._eod_high_before(account_id, trading_day)
            eod_high = amount if previous is None else max(previous, amount)
            self.db.execute(
                "UPDATE balances SET eod_balance = ?, eod_high_water = ? WHERE account_id = ? AND trading_day = ?",
                [money_text(amount), money_text(eod_high), account_id, day_text(trading_day)],
            )
            return self.day_balance(account_id, trading_day)  # type: ignore[return-value]

    def _eod_high_before(self, account_id: int, trading_day: date | str) -> Decimal | None:
        row = self.db.execute(
            "SELECT eod_high_water FROM balances WHERE account_id = ? AND trading_day < ?"
            " AND eod_high_water IS NOT NULL ORDER BY trading_day DESC LIMIT 1",
            [account_id, day_text(trading_day)],
        ).fetchone()
        return None if row is None else Decimal(row[0])

    def eod_high_balance(self, account_id: int, before: date | str | None = None) -> Decimal | None:
        """The EOD high-water mark as of the latest closed day (of the latest closed day before
        ``before``, when given); None before the first close."""
        if before is not None:
            return self._eod_high_before(account_id, before)
        row = self.db.execute(
            "SELECT eod_high_water FROM balances WHERE account_id = ? AND eod_high_water IS NOT NULL"
            " ORDER BY trading_day DESC LIMIT 1",
            [account_id],
        ).fetchone()
        return None if row is None else Decimal(row[0])

    def intraday_high_balance(self, account_id: int) -> Decimal | None:
        """The highest balance ever seen, intraday included (what an intraday trailing drawdown
        trails); None before the first balance."""
        rows = self.db.execute("SELECT high_water FROM balances WHERE account_id = ?", [account_id])
        highs = [Decimal(row[0]) for row in rows]
        return max(highs) if highs else None
