"""`riskc rules`: the standard library's reference, read from the rule files; docs/rules.md is
generated from it and must not be stale."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from riskc.dsl.library import library_rules
from riskc.engine.cli.main import main
from riskc.engine.cli.rules_cmd import markdown_reference

REPO = Path(__file__).resolve().parents[2]

# PRODUCT.md §4: every rule with its normative parameters and their defaults (None: required).
SECTION_4 = {
    "max_contracts": {"limit": "5", "count": "gross"},
    "max_contracts_per_symbol": {"limits": "{}", "default": "2"},
    "daily_loss": {"limit": None},
    "daily_profit_target": {"target": None},
    "position_loss": {"limit": None},
    "position_profit": {"target": None},
    "trailing_drawdown": {"amount": None, "mode": "end_of_day", "floor_stops_at": None},
    "trade_frequency": {"max": None, "window": None, "cooldown": None},
    "cooldown_after_loss": {"loss": None, "cooldown": None},
    "stop_required": {"grace": "30s"},
    "max_risk_per_trade": {"limit": None},
    "trading_hours": {"start": "17:00", "end": "15:10"},
    "symbol_block": {"symbols": None},
    "auth_guard": {},
    "breakeven_stop": {"trigger": "10 ticks", "offset": "1 tick"},
    "trailing_stop": {"start": "20 ticks", "distance": "10 ticks"},
}
# The rules traders asked for (issue 17), written with aggregates, trade history and weeks (§3.6).
ADDITIONS = {
    "max_losing_trades": {"count": None},
    "weekly_loss": {"limit": None},
    "max_contracts_family": {"weights": "{NQ: 10, MNQ: 1}", "limit": "30"},
    "take_profit": {"ticks": None},
    "max_adverse_excursion": {"limit": None},
}


def riskc(*args: str):
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "200"})  # rich wraps at the terminal width


def test_the_library_has_every_section_4_rule_with_its_parameters_and_defaults():
    rules = {r.name: r for r in library_rules()}
    assert set(rules) == set(SECTION_4) | set(ADDITIONS)
    for name, params in (SECTION_4 | ADDITIONS).items():
        have = {p.name: p.default for p in rules[name].params}
        assert {k: have.get(k, "missing") for k in params} == params, name
        assert rules[name].doc, f"{name} has no docstring"


def test_rules_lists_every_rule_with_its_breach_actions():
    result = riskc("rules")
    assert result.exit_code == 0
    for name in SECTION_4:
        assert name in result.output
    assert "max_contracts_per_symbol(limits: map[symbol, contracts] = {}, default: contracts = 2)" in result.output
    assert "on breach: flatten, lockout until next_trading_day" in result.output


def test_rules_name_shows_one_rule_in_full():
    result = riskc("rules", "trailing_drawdown")
    assert result.exit_code == 0
    out = result.output
    assert "trailing_drawdown(amount: money, mode: end_of_day|intraday = end_of_day, floor_stops_at: money?)" in out
    assert "floor_stops_at" in out and "none (optional)" in out and "required" in out
    assert "then      flatten, lockout until manual" in out
    assert "daily_loss" not in out


def test_an_unknown_rule_is_a_usage_error_with_a_suggestion():
    result = riskc("rules", "daily_los")
    assert result.exit_code == 2
    assert "did you mean `daily_loss`?" in result.output


def test_rules_markdown_for_one_rule():
    result = riskc("rules", "stop_required", "--markdown")
    assert result.exit_code == 0
    assert result.output.startswith("### `stop_required`\n")
    assert "| `grace` | `duration` | `30s` |" in result.output


def test_docs_rules_md_is_generated_from_the_rule_files():
    have = (REPO / "docs" / "rules.md").read_text(encoding="utf-8")
    assert have == markdown_reference(library_rules()), (
        "docs/rules.md is stale: run `riskc rules --markdown > docs/rules.md`"
    )
