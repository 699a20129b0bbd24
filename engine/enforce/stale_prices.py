"""Rules that read prices do not act on prices older than ``stale_after`` as if they were current
(PRODUCT.md §8, issue 15).

While the market hub is down, the marks stop moving but the REST reconciliation keeps the book's
positions, orders, balance and realized P&L current. So, once the market feed has been down for
``stale_after`` (default 10 s), every rule that reads a price — a position's ``mark`` or
``unrealized_pnl``, the account's ``unrealized_pnl``, ``net_pnl``, ``high_balance`` or
``high_water_balance`` (they include open P&L) — is treated as a rule that cannot be evaluated:
its policy's ``on_error`` decides (``flatten``: fail closed; ``alert``: a critical alert), exactly
as for a rule that raised. Rules that read only sizes, orders, lockouts, the clock or realized
P&L keep running. When the market hub is back (and reconciled), prices are current again.

Which rules read prices is found in their syntax tree (``when``, actions and the values passed
to them): a rule that takes a price through a library function is not recognised (none does so
today: dsl/library.py reads no mark).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from riskc.dsl import ast
from riskc.dsl.decision import Decision
from riskc.dsl.walk import walk

PRICE_FIELDS = frozenset({"mark", "unrealized_pnl", "net_pnl", "high_balance", "high_water_balance"})


class StalePrices(Exception):
    """The reason a price-reading rule is not evaluated (shown in its on_error action)."""


def price_rules(program: Any) -> frozenset[int]:
    """The indices (into ``program.rules``) of the rules that read a price."""
    found = set()
    for index, instance in enumerate(program.rules):
        nodes = [instance.rule, *instance.args.values()]
        if any(isinstance(n, ast.Field) and n.name in PRICE_FIELDS for node in nodes for n in walk(node)):
            found.add(index)
    return frozenset(found)


def without_prices(
    program: Any, decision: Decision, rules: frozenset[int], age: dt.timedelta, snapshot: Any
) -> Decision:
    """``decision`` with every price-reading rule (held or not) turned into a rule that could not
    be evaluated: the program's own ``on_error`` then decides."""
    if not rules:
        return decision
    error = StalePrices(f"prices are {age.total_seconds():.0f}s old: the market data feed is down")
    hits = [h for h in decision.hits if h[0] < 0 or h[0] not in rules]
    hits += [(-index - 1, error) for index in sorted(rules)]
    return Decision(hits, lambda: program._decide(snapshot, hits), lambda: program._values(snapshot, hits))
