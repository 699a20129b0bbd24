"""Mutation tests for the checker: a valid file with one token changed is either still valid or
rejected with diagnostics that point into it, and never makes the checker raise.

The valid files are every policy, every standard library file and every ``valid`` fixture. A
mutation is one small edit a person makes by accident: a field renamed to a near miss, a literal
of one unit swapped for another (`$5` -> `5s`), an argument or parameter dropped, an operator
swapped, a token deleted or written twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskc.dsl.checker import check
from riskc.dsl.library import stdlib_sources
from riskc.engine.cli.main import main
from riskc.engine.core.snapshot import SCHEMA

REPO = Path(__file__).resolve().parents[2]
VALID_FILES = sorted(
    {
        *REPO.joinpath("policies").rglob("*.risk"),
        *REPO.joinpath("stdlib_rules").glob("*.risk"),
        *(p for p in REPO.joinpath("tests", "fixtures").rglob("*.risk") if "valid" in p.relative_to(REPO).parts),
    }
)
TEXTS = {path: path.read_text(encoding="utf-8") for path in VALID_FILES}

# Comments are skipped, so a mutation always lands in code. Multi-word literals (`8 ticks`) stay whole.
_TOKEN = re.compile(
    r"""(?P<comment>\#[^\n]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*")
      | (?P<literal>\$[\d,]+(?:\.\d+)?|\d{4}-\d{2}-\d{2}|\d{1,2}:\d{2}
                    |\d+\s+ticks?\b|\d+(?:\.\d+)?%|\d+[dhms]\b|\d+(?:\.\d+)?)
      | (?P<name>[A-Za-z_]\w*)
      | (?P<op>==|!=|<=|>=|[-+*/<>])
      | (?P<punct>[(),:\[\]{}.|?=])""",
    re.VERBOSE,
)
UNIT_LITERALS = ("$5", "-$12.50", "5s", "15m", "15:00", "5", "2.5", "3 ticks", "2%", "2025-01-01", "MNQ", '"x"', "none")
OPERATORS = ("+", "-", "*", "/", "<", ">", "<=", ">=", "==", "!=", "and", "or", "in")
KEYWORD_OPERATORS = {"and", "or", "in"}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    start: int
    end: int


def tokens(source: str) -> list[Token]:
    found = [Token(m.lastgroup or "", m.group(), m.start(), m.end()) for m in _TOKEN.finditer(source)]
    return [t for t in found if t.kind != "comment"]


def splice(source: str, start: int, end: int, replacement: str) -> str:
    return source[:start] + replacement + source[end:]


def near_miss(name: str, edit: int, at: int) -> str:
    """One typing slip: a letter dropped, doubled, swapped with the next, or replaced."""
    i = at % len(name)
    if edit == 0 and len(name) > 1:
        return name[:i] + name[i + 1 :]
    if edit == 1:
        return name[:i] + name[i] + name[i:]
    if edit == 2 and i + 1 < len(name):
        return name[:i] + name[i + 1] + name[i] + name[i + 2 :]
    return name[:i] + ("x" if name[i] != "x" else "y") + name[i + 1 :]


def drop_item(source: str, toks: list[Token], index: int) -> str:
    """Delete one comma-separated item of an argument or parameter list, with its comma."""
    commas = [i for i, t in enumerate(toks) if t.text == ","]
    if not commas:
        return source
    i = commas[index % len(commas)]
    end = next((j for j in range(i + 1, len(toks)) if toks[j].text in {",", ")", "]", "}"}), len(toks) - 1)
    return source[: toks[i].start] + source[toks[end].start :]


@st.composite
def mutations(draw) -> tuple[Path, str]:
    path = draw(st.sampled_from(VALID_FILES))
    source = TEXTS[path]
    toks = tokens(source)
    kind = draw(st.sampled_from(("rename", "unit", "drop_item", "operator", "delete", "duplicate")))
    if kind == "drop_item":
        return path, drop_item(source, toks, draw(st.integers(0, 200)))
    pool = {
        "rename": [t for t in toks if t.kind == "name"],
        "unit": [t for t in toks if t.kind == "literal"],
        "operator": [t for t in toks if t.kind == "op" or t.text in KEYWORD_OPERATORS],
    }.get(kind, toks)
    if not pool:
        return path, source
    tok = draw(st.sampled_from(pool))
    if kind == "rename":
        replacement = near_miss(tok.text, draw(st.integers(0, 3)), draw(st.integers(0, 40)))
    elif kind == "unit":
        replacement = draw(st.sampled_from(UNIT_LITERALS))
    elif kind == "operator":
        replacement = f" {draw(st.sampled_from(OPERATORS))} "
    elif kind == "delete":
        replacement = ""
    else:
        replacement = tok.text + " " + tok.text
    return path, splice(source, tok.start, tok.end, replacement)


def assert_diagnostics_inside(name: str, source: str) -> list:
    result = check([(name, source)], SCHEMA, stdlib_sources())
    line_count = max(1, len(source.splitlines()))
    for d in result.diagnostics:
        assert d.span.file == name, d
        assert 1 <= d.span.line <= line_count, d
        assert d.span.col >= 1, d
        assert d.render(source)
    return result.diagnostics


def test_every_kind_of_valid_file_is_mutated():
    folders = {p.relative_to(REPO).parts[0] for p in VALID_FILES}
    assert {"policies", "stdlib_rules", "tests"} <= folders
    assert len(VALID_FILES) > 80


def test_tokens_cover_the_code_and_skip_comments():
    source = 'use daily_loss(limit: $1,000) # a comment\nrule r when p.qty >= 8 ticks then alert "x y"'
    texts = [t.text for t in tokens(source)]
    assert texts[:7] == ["use", "daily_loss", "(", "limit", ":", "$1,000", ")"]
    assert "8 ticks" in texts and '"x y"' in texts and ">=" in texts
    assert not any("comment" in t for t in texts)


@pytest.mark.parametrize(
    ("path", "old", "new", "code"),
    [
        ("stdlib_rules/pnl.risk", "day.realized_pnl <= -limit", "day.realised_pnl <= -limit", "risk_unknown_name"),
        ("policies/topstep-50k.risk", "limit: $1,000", "limit: 5s", "risk_unit_error"),
        ("policies/topstep-50k.risk", "use daily_loss(limit: $1,000)", "use daily_loss()", "risk_arity_error"),
        ("stdlib_rules/stops.risk", "p.stop_coverage < p.qty", "p.stop_coverage < p.age", "risk_unit_error"),
    ],
)
def test_a_mutation_is_caught_where_it_was_made(path: str, old: str, new: str, code: str):
    source = (REPO / path).read_text(encoding="utf-8")
    assert old in source
    mutated = source.replace(old, new, 1)
    line = source[: source.index(old)].count("\n") + 1
    diagnostics = assert_diagnostics_inside(str(REPO / path), mutated)
    assert [(d.code, d.span.line) for d in diagnostics if d.is_error] == [(code, line)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_mutated_file_is_accepted_or_rejected_inside_it(mutation: tuple[Path, str]):
    path, source = mutation
    assert_diagnostics_inside(str(path), source)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_mutated_file_through_the_cli_never_shows_a_traceback(tmp_path_factory, mutation: tuple[Path, str]):
    path, source = mutation
    target = tmp_path_factory.mktemp("mutant") / path.name
    target.write_text(source, encoding="utf-8")
    result = CliRunner().invoke(main, ["check", str(target)])
    assert result.exit_code in (0, 1), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
