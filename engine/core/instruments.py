"""Instrument specs: tick size and tick value of the common CME contracts (PRODUCT.md §3.2, §8).

Where a spec comes from, strongest first: ``instruments:`` in riskc.yaml (the trader's word,
``pinned``), the broker's contract data when live (the ProjectX adapter asks the Gateway on start
and on the first sight of a contract, and the daemon caches the answers in the state store), then
this built-in table, which also serves check, eval and replay. Values are exact decimals.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class InstrumentSpec:
    symbol: str
    tick_size: Decimal  # points
    tick_value: Decimal  # money per tick per contract
    name: str = ""

    @property
    def point_value(self) -> Decimal:
        return self.tick_value / self.tick_size


def _spec(symbol: str, tick_size: str, tick_value: str, name: str) -> tuple[str, InstrumentSpec]:
    return symbol, InstrumentSpec(symbol, Decimal(tick_size), Decimal(tick_value), name)


CME_SPECS: Mapping[str, InstrumentSpec] = MappingProxyType(
    dict(
        [
            _spec("ES", "0.25", "12.50", "E-mini S&P 500"),
            _spec("MES", "0.25", "1.25", "Micro E-mini S&P 500"),
            _spec("NQ", "0.25", "5.00", "E-mini Nasdaq-100"),
            _spec("MNQ", "0.25", "0.50", "Micro E-mini Nasdaq-100"),
            _spec("RTY", "0.10", "5.00", "E-mini Russell 2000"),
            _spec("M2K", "0.10", "0.50", "Micro E-mini Russell 2000"),
            _spec("YM", "1", "5.00", "E-mini Dow"),
            _spec("MYM", "1", "0.50", "Micro E-mini Dow"),
            _spec("CL", "0.01", "10.00", "Crude Oil"),
            _spec("MCL", "0.01", "1.00", "Micro WTI Crude Oil"),
            _spec("NG", "0.001", "10.00", "Henry Hub Natural Gas"),
            _spec("GC", "0.10", "10.00", "Gold"),
            _spec("MGC", "0.10", "1.00", "Micro Gold"),
            _spec("SI", "0.005", "25.00", "Silver"),
            _spec("ZB", "0.03125", "31.25", "U.S. Treasury Bond"),
            _spec("ZN", "0.015625", "15.625", "10-Year T-Note"),
            _spec("6E", "0.00005", "6.25", "Euro FX"),
        ]
    )
)

_CONTRACT_ID = re.compile(r"^CON\.F\.[A-Z]+\.([A-Z0-9]+)\.[A-Z]\d{1,2}$")
# The Gateway names some products by their data-feed code, not the CME symbol a policy uses:
# NQ is `CON.F.US.ENQ.Z25`, ES `CON.F.US.EP.Z25`, CL `CON.F.US.CLE.F26` (symbolId `F.US.ENQ`).
GATEWAY_PRODUCTS: Mapping[str, str] = MappingProxyType(
    {
        "EP": "ES",
        "ENQ": "NQ",
        "CLE": "CL",
        "MCLE": "MCL",
        "GCE": "GC",
        "NGE": "NG",
        "SIE": "SI",
        "USA": "ZB",
        "TYA": "ZN",
        "EU6": "6E",
    }
)


@functools.lru_cache(maxsize=4096)  # asked on every quote, of a handful of contracts
def symbol_of(contract_id: str) -> str:
    """`CON.F.US.MNQ.Z25` -> `MNQ`, `CON.F.US.ENQ.Z25` -> `NQ`; anything else is returned
    unchanged (already a symbol)."""
    match = _CONTRACT_ID.match(contract_id)
    if not match:
        return contract_id
    product = match.group(1)
    return GATEWAY_PRODUCTS.get(product, product)


class UnknownInstrument(LookupError):
    def __init__(self, symbol: str):
        super().__init__(f"no instrument spec for `{symbol}`: add it to the instruments table")
        self.symbol = symbol


class Instruments:
    """The table a snapshot converts with; overridable per symbol (e.g. from the broker)."""

    def __init__(self, overrides: Mapping[str, InstrumentSpec] | None = None, *, pinned: bool = False):
        self._specs = {**CME_SPECS, **(overrides or {})}
        self._pinned = frozenset(overrides or ()) if pinned else frozenset()
        self.learned: dict[str, InstrumentSpec] = {}  # from the broker, this run

    def knows(self, symbol: str) -> bool:
        return symbol in self._specs

    def learn(self, spec: InstrumentSpec) -> bool:
        """Take ``spec`` from the broker's contract data; a symbol pinned by the configuration keeps
        its spec. Returns whether anything changed. (A live engine owns its own ``Instruments``:
        never call this on ``DEFAULT_INSTRUMENTS``.)"""
        if self is DEFAULT_INSTRUMENTS:
            raise RuntimeError("the built-in instrument table is shared: learn into a copy")
        if spec.symbol in self._pinned or self._specs.get(spec.symbol) == spec:
            return False
        self._specs[spec.symbol] = spec
        self.learned[spec.symbol] = spec
        return True

    def spec(self, symbol: str) -> InstrumentSpec:
        try:
            return self._specs[symbol]
        except KeyError:
            raise UnknownInstrument(symbol) from None

    def with_overrides(self, overrides: Mapping[str, InstrumentSpec], *, pinned: bool = False) -> Instruments:
        """A copy with ``overrides``; ``pinned``: they win over what the broker says later."""
        copy = Instruments({**self._specs, **overrides})
        copy._pinned = self._pinned | (frozenset(overrides) if pinned else frozenset())
        return copy

    def ticks_to_points(self, symbol: str, ticks: int) -> Decimal:
        return self.spec(symbol).tick_size * ticks

    def points_to_ticks(self, symbol: str, points: Decimal) -> int:
        return int(points / self.spec(symbol).tick_size)  # int() truncates toward zero

    def points_to_money(self, symbol: str, points: Decimal) -> Decimal:
        spec = self.spec(symbol)
        return points / spec.tick_size * spec.tick_value


def spec_from_contract(
    contract_id: str, tick_size: object, tick_value: object, name: str = ""
) -> InstrumentSpec | None:
    """The spec of ``contract_id`` from the broker's contract data (``tickSize``, ``tickValue``),
    or None when either is missing or not a positive number."""
    try:
        size, value = Decimal(str(tick_size)), Decimal(str(tick_value))
    except (ArithmeticError, ValueError):
        return None
    if not (size.is_finite() and value.is_finite()) or size <= 0 or value <= 0:
        return None
    return InstrumentSpec(symbol_of(contract_id), size, value, name)


DEFAULT_INSTRUMENTS = Instruments()
