"""Golden checker tests: every case under ``tests/fixtures/check`` against its expected output.

A case is a file ``NAME.risk`` or, when several files are checked together (a `use` of a rule
defined in another file, a rule defined twice across files), a directory ``NAME/`` of them.
Cases are checked as `riskc check` checks them: against ``engine.snapshot.SCHEMA`` with the
standard library available.

- ``valid/`` cases must check with no diagnostics at all, not even a warning.
- ``invalid/`` cases must produce exactly the diagnostics listed in ``NAME.expected.txt`` (for a
  directory, ``NAME/expected.txt``), in order, one per diagnostic as
  ``line:col: code: severity: message`` (prefixed with ``file:`` for a directory case), each
  followed by its indented ``have:``, ``want:`` and ``help:`` lines when it has them.

To regenerate the golden files after a deliberate change, run

    RISKC_UPDATE_GOLDEN=1 python -m pytest tests/dsl/test_check_golden.py

then read the diff before committing it: the golden files are the specification.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_parse_golden import _check_golden, _read

from riskc.dsl import errors
from riskc.dsl.checker import CheckResult, check
from riskc.dsl.errors import Diagnostic
from riskc.dsl.library import stdlib_sources
from riskc.engine.core.snapshot import SCHEMA

CHECK_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "check"
DETAILS = ("have", "want", "help")


def _cases(kind: str) -> list[Path]:
    root = CHECK_FIXTURES / kind
    return sorted([*root.glob("*.risk"), *(d for d in root.iterdir() if d.is_dir())])


VALID = _cases("valid")
INVALID = _cases("invalid")
ALL_CODES = {v for k, v in vars(errors).items() if k.isupper() and isinstance(v, str) and v.startswith("risk_")}


def _sources(case: Path) -> list[tuple[str, str]]:
    if case.is_dir():
        return [(p.name, _read(p)) for p in sorted(case.glob("*.risk"))]
    return [(case.name, _read(case))]


def _expected_path(case: Path) -> Path:
    return case / "expected.txt" if case.is_dir() else case.with_suffix(".expected.txt")


def _check_case(case: Path) -> CheckResult:
    return check(_sources(case), SCHEMA, stdlib_sources())


def diagnostic_block(d: Diagnostic, with_file: bool) -> str:
    where = f"{d.span.file}:" if with_file else ""
    lines = [f"{where}{d.span.line}:{d.span.col}: {d.code}: {d.severity}: {d.message}"]
    lines += [f"  {key}: {getattr(d, key)}" for key in DETAILS if getattr(d, key)]
    return "".join(line + "\n" for line in lines)


def test_fixture_sets_are_large_enough():
    assert len(VALID) >= 20
    assert len(INVALID) >= 40
    assert len(VALID) + len(INVALID) >= 60


def test_every_diagnostic_code_has_a_golden_case():
    seen = set()
    for case in INVALID:
        expected = _expected_path(case)
        if not expected.exists():  # reported by test_invalid_case_reports_expected_diagnostics
            continue
        for line in _read(expected).splitlines():
            seen.update(code for code in ALL_CODES if f": {code}: " in line)
    assert ALL_CODES - seen == set()


@pytest.mark.parametrize("case", VALID, ids=lambda p: p.stem)
def test_valid_case_checks_clean(case: Path):
    result = _check_case(case)
    assert [diagnostic_block(d, True) for d in result.diagnostics] == []
    assert result.policies or result.definitions, "a valid case defines or activates something"


@pytest.mark.parametrize("case", INVALID, ids=lambda p: p.stem)
def test_invalid_case_reports_expected_diagnostics(case: Path):
    result = _check_case(case)
    assert result.diagnostics, "an invalid case must produce at least one diagnostic"
    actual = "".join(diagnostic_block(d, case.is_dir()) for d in result.diagnostics)
    _check_golden(_expected_path(case), actual)


@pytest.mark.parametrize("case", INVALID, ids=lambda p: p.stem)
def test_invalid_case_diagnostics_point_into_their_file(case: Path):
    result = _check_case(case)
    texts = dict(_sources(case))
    for d in result.diagnostics:
        assert d.span.file in texts, f"{d.span.file} is not a file of the case"
        source = texts[d.span.file]
        assert 1 <= d.span.line <= len(source.splitlines())
        assert (d.span.line, d.span.col) <= (d.span.end_line, d.span.end_col)
        rendered = d.render(source)
        assert rendered.startswith(f"{d.span.file}:{d.span.line}:{d.span.col}: {d.code}")
        assert "^" in rendered, rendered
