"""Instrument specs from the broker (PRODUCT.md §8): on start and on the first sight of a contract
the live loop asks the broker's contract data for its tick size and tick value, learns it into the
account's ``Instruments`` and caches it in the store, so a restart while the Gateway's contract
search is down still prices the position. ``instruments:`` in riskc.yaml wins over both; the
built-in table is the fallback. No SDK here: ``ask`` is the adapter's lookup."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from riskc.engine.core.instruments import Instruments, InstrumentSpec, spec_from_contract, symbol_of
from riskc.engine.store.instruments import CachedInstrument

log = logging.getLogger("riskc.instruments")

Ask = Callable[[str], Awaitable[dict[str, Any] | None]]
RETRY_AFTER = 60.0  # seconds before a contract the broker did not describe is asked again


def account_instruments(overrides: dict[str, InstrumentSpec], store: Any) -> Instruments:
    """The table, then the specs the broker gave earlier (the store's cache), then the
    configuration's ``instruments:`` (pinned: the broker's data does not replace them)."""
    instruments = Instruments(overrides, pinned=True)
    for cached in store.cached_instruments():
        instruments.learn(InstrumentSpec(cached.symbol, cached.tick_size, cached.tick_value, cached.name))
    return instruments


class InstrumentSource:
    def __init__(
        self,
        instruments: Instruments,
        store: Any,
        ask: Ask,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.instruments, self.store, self.ask = instruments, store, ask
        self.clock, self.now = clock, now
        self.answered: set[str] = set()  # contracts the broker described this run
        self._retry_at: dict[str, float] = {}

    async def ensure(self, contract_ids: Iterable[str]) -> list[InstrumentSpec]:
        """Ask the broker about every contract not asked yet (or whose last ask failed a while
        ago); returns the specs that changed the table."""
        changed = []
        for contract_id in dict.fromkeys(c for c in contract_ids if c):
            if contract_id in self.answered or self.clock() < self._retry_at.get(contract_id, 0.0):
                continue
            spec = await self._ask(contract_id)
            if spec is None:
                self._retry_at[contract_id] = self.clock() + RETRY_AFTER
                continue
            self.answered.add(contract_id)
            self._cache(contract_id, spec)
            if self.instruments.learn(spec):
                log.info("%s from the broker: tick %s worth %s", spec.symbol, spec.tick_size, spec.tick_value)
                changed.append(spec)
        return changed

    async def _ask(self, contract_id: str) -> InstrumentSpec | None:
        try:
            data = await self.ask(contract_id)
        except Exception as error:  # the adapter should not raise; a lookup never stops the feed
            log.warning("asking the broker about %s: %s", contract_id, error)
            return None
        if not data:
            if not self.instruments.knows(symbol_of(contract_id)):
                log.warning("the broker has no contract data for %s and riskc's table has no spec", contract_id)
            return None
        return spec_from_contract(contract_id, data.get("tickSize"), data.get("tickValue"), str(data.get("name") or ""))

    def _cache(self, contract_id: str, spec: InstrumentSpec) -> None:
        try:
            self.store.save_instrument(
                CachedInstrument(
                    spec.symbol, contract_id, spec.tick_size, spec.tick_value, spec.name, "broker", self.now()
                )
            )
        except Exception as error:  # a cache: the spec is still used this run
            log.warning("caching the spec of %s: %s", spec.symbol, error)
