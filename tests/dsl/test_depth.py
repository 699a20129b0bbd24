"""Deep expressions (dsl/depth.py): up to the limit everything works - parse, check, compile,
format; past it one `risk_too_deep` diagnostic, never a RecursionError, however deep."""

from __future__ import annotations

import pytest

from riskc.dsl.depth import MAX_DEPTH
from riskc.dsl.format import format_source
from riskc.dsl.parser import parse
from riskc.engine.runner import PolicySet

CHAINS = {
    "and": lambda n: " and ".join(["account.balance > $0"] * n),
    "+": lambda n: "account.balance" + " + account.balance" * n + " > $0",
    "not": lambda n: "not " * n + "(account.balance > $0)",
    "-": lambda n: "-" * n + "account.balance > $0",
}


def policy(expression: str) -> str:
    return f'policy "deep"\n\nrule deep_rule\n  when {expression}\n  then alert "x"\n'


@pytest.mark.parametrize("op", CHAINS)
@pytest.mark.parametrize("terms", [1_000, 20_000])
def test_past_the_limit_one_diagnostic(op: str, terms: int) -> None:
    result = parse(policy(CHAINS[op](terms)), "deep.risk")
    [diagnostic] = result.diagnostics
    assert diagnostic.code == "risk_too_deep" and diagnostic.span.line == 4
    policies, diagnostics, _ = PolicySet.from_sources([("deep.risk", policy(CHAINS[op](terms)))])
    assert policies is None and [d.code for d in diagnostics] == ["risk_too_deep"]


@pytest.mark.parametrize("op", CHAINS)
def test_below_the_limit_everything_works(op: str) -> None:
    source = policy(CHAINS[op](MAX_DEPTH - 20))
    policies, diagnostics, _ = PolicySet.from_sources([("deep.risk", source)])
    assert policies is not None, [str(d) for d in diagnostics]
    formatted = format_source(source, "deep.risk")
    assert format_source(formatted, "deep.risk") == formatted


def test_a_broken_item_past_the_limit_is_reported_with_the_others() -> None:
    source = policy(CHAINS["not"](1_000)) + "\nrule broken\n  when\n"
    codes = {d.code for d in parse(source, "deep.risk").diagnostics}
    assert "risk_too_deep" in codes and "risk_parse_error" in codes
