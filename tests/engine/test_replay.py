"""`riskc replay` over the example sessions (PRODUCT.md §5, §6): golden §6.2 output for each
session in ``examples/sessions``, determinism, malformed lines, the recorded clock, and the CLI.

Regenerate the golden files after a deliberate change with

    RISKC_UPDATE_GOLDEN=1 python -m pytest tests/engine/test_replay.py

and read the diff before committing it.
"""

from __future__ import annotations

import pytest

from engine.instruments import symbol_of


@pytest.mark.parametrize(("contract_id", "symbol"), [
    ("CON.F.US.MNQ.Z25", "MNQ"),
    ("CON.F.US.ENQ.Z25", "NQ"),
    ("CON.F.US.EP.H26", "ES"),
    ("CON.F.US.CLE.F26", "CL"),
    ("CON.F.US.GCE.G26", "GC"),
    ("MNQ", "MNQ"),
])  # fmt: skip
def test_gateway_product_codes_map_to_cme_symbols(contract_id: str, symbol: str):
    """The Gateway names NQ `ENQ` and CL `CLE`: a policy's `symbol_block(symbols: [CL])` must see
    CL (it used to see `CLE`, and the instrument lookup crashed the engine)."""
    assert symbol_of(contract_id) == symbol
