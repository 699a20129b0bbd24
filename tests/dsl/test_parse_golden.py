"""Golden parse tests: every fixture under ``tests/fixtures/parse`` against its expected output.

- ``valid/NAME.risk`` must parse with no diagnostics, and the AST dump (``ast_dump.dump``) must
  equal ``valid/NAME.ast.txt``.
- ``invalid/NAME.risk`` must produce exactly the diagnostics listed in
  ``invalid/NAME.expected.txt``, one per line as ``line:col: code: message``, in order.

To regenerate the golden files after a deliberate change, run

    RISKC_UPDATE_GOLDEN=1 python -m pytest tests/dsl/test_parse_golden.py

then read the diff before committing it: the golden files are the specification.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ast_dump import dump

from riskc.dsl import parse
from riskc.dsl.errors import Diagnostic

PARSE_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "parse"
VALID = sorted((PARSE_FIXTURES / "valid").glob("*.risk"))
INVALID = sorted((PARSE_FIXTURES / "invalid").glob("*.risk"))
UPDATE = os.environ.get("RISKC_UPDATE_GOLDEN") == "1"


def _read(path: Path) -> str:
    # newline="" keeps the bytes as written: a fixture without a final newline stays one.
    with path.open(encoding="utf-8", newline="") as handle:
        return handle.read()


def _check_golden(golden: Path, actual: str) -> None:
    if UPDATE:
        golden.write_text(actual, encoding="utf-8")
        return
    assert golden.exists(), f"{golden.name} is missing; run with RISKC_UPDATE_GOLDEN=1 to create it"
    assert actual == golden.read_text(encoding="utf-8")


def diagnostic_line(d: Diagnostic) -> str:
    return f"{d.span.line}:{d.span.col}: {d.code}: {d.message}"


def test_fixture_sets_are_large_enough():
    assert len(VALID) >= 40
    assert len(INVALID) >= 25


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_fixture_parses_to_golden_ast(path: Path):
    result = parse(_read(path), path.name)
    assert [diagnostic_line(d) for d in result.diagnostics] == []
    _check_golden(path.with_suffix(".ast.txt"), dump(result.module))


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_reports_expected_diagnostics(path: Path):
    result = parse(_read(path), path.name)
    assert result.diagnostics, "an invalid fixture must produce at least one diagnostic"
    actual = "".join(diagnostic_line(d) + "\n" for d in result.diagnostics)
    _check_golden(path.with_suffix(".expected.txt"), actual)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_fixture_diagnostics_render_with_a_caret(path: Path):
    source = _read(path)
    for d in parse(source, path.name).diagnostics:
        rendered = d.render(source)
        assert rendered.startswith(f"{path.name}:{d.span.line}:{d.span.col}: {d.code}: ")
        assert "^" in rendered, rendered
