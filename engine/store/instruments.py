"""The instrument cache: tick size and tick value as the broker last gave them (PRODUCT.md §8).

The daemon asks the Gateway for a contract's data on start and on the first sight of a contract;
the answer is kept here so a restart while the Gateway's contract search is down still prices the
position. One row per symbol (the latest answer); the built-in table stays the fallback.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from riskc.engine.store.base import StoreBase
from riskc.engine.store.codec import parse_time, time_text


class CachedInstrument(NamedTuple):
    symbol: str
    contract_id: str
    tick_size: Decimal
    tick_value: Decimal
    name: str
    source: str
    ts: datetime


class InstrumentsMixin(StoreBase):
    def save_instrument(self, instrument: CachedInstrument) -> None:
        if instrument.tick_size <= 0 or instrument.tick_value <= 0:
            raise ValueError(f"{instrument.symbol}: tick size and tick value must be positive")
        with self._write():
            self.db.execute(
                "INSERT INTO instruments (symbol, contract_id, tick_size, tick_value, name, source, ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (symbol) DO UPDATE SET contract_id = excluded.contract_id,"
                " tick_size = excluded.tick_size, tick_value = excluded.tick_value, name = excluded.name,"
                " source = excluded.source, ts = excluded.ts",
                [
                    instrument.symbol,
                    instrument.contract_id,
                    str(instrument.tick_size),
                    str(instrument.tick_value),
                    instrument.name,
                    instrument.source,
                    time_text(instrument.ts),
                ],
            )

    def cached_instruments(self) -> list[CachedInstrument]:
        """Every cached spec, by symbol (an unreadable row is skipped: the table is a cache)."""
        rows = self.db.execute(
            "SELECT symbol, contract_id, tick_size, tick_value, name, source, ts FROM instruments ORDER BY symbol"
        ).fetchall()
        out = []
        for symbol, contract_id, size, value, name, source, ts in rows:
            try:
                out.append(
                    CachedInstrument(symbol, contract_id, Decimal(size), Decimal(value), name, source, parse_time(ts))
                )
            except (ArithmeticError, ValueError, TypeError):
                continue
        return out
