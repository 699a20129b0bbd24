"""`riskc check` as a user runs it (PRODUCT.md §5): silence and exit 0 when clean, located
diagnostics with the source line and a caret and exit 1 on errors, exit 2 on usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from riskc.engine.cli.main import main

REPO = Path(__file__).resolve().parents[2]

CLEAN = """use daily_loss(limit: $500)
"""
UNIT_ERROR = """rule mixed
  when day.realized_pnl + account.open_contracts > $500
  then flatten
"""
WARNING_ONLY = """rule disabled
  when false
  then flatten
"""
THREE_ERRORS = """use daly_loss(limit: $500)
use stop_required(grace: 30)
use max_contracts(limit: $5)
"""
JSON_KEYS = {"file", "line", "col", "end_line", "end_col", "code", "severity", "message", "help"}


def riskc_check(*args: str) -> Result:
    return CliRunner().invoke(main, ["check", *args])


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def header_lines(output: str) -> list[str]:
    """The `file:line:col: code: message` lines of a text report."""
    return [line for line in output.splitlines() if ": risk_" in line and not line.startswith(" ")]


def test_clean_file_prints_nothing_and_exits_0(tmp_path: Path):
    result = riskc_check(str(write(tmp_path, "ok.risk", CLEAN)))
    assert (result.exit_code, result.output) == (0, "")


def test_shipped_policies_and_stdlib_check_clean():
    result = riskc_check(str(REPO / "policies"), str(REPO / "stdlib_rules"))
    assert (result.exit_code, result.output) == (0, "")


def test_error_exits_1_with_location_source_line_and_caret(tmp_path: Path):
    path = write(tmp_path, "bad.risk", UNIT_ERROR)
    result = riskc_check(str(path))
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"{path}:2:8: risk_unit_error: cannot compute money + contracts"
    assert lines[1] == "   2 |   when day.realized_pnl + account.open_contracts > $500"
    caret = lines[2]
    assert caret.index("^") == lines[1].index("day.realized_pnl")
    assert caret.strip() == "^" * len("day.realized_pnl + account.open_contracts")
    assert result.stdout == ""


def test_help_line_follows_the_caret(tmp_path: Path):
    result = riskc_check(str(write(tmp_path, "typo.risk", "use daly_loss(limit: $500)\n")))
    assert result.exit_code == 1
    assert "  help: did you mean `daily_loss`?" in result.stderr.splitlines()


def test_warnings_alone_exit_0_and_fail_with_strict(tmp_path: Path):
    path = str(write(tmp_path, "warn.risk", WARNING_ONLY))
    relaxed, strict = riskc_check(path), riskc_check("--strict", path)
    assert relaxed.exit_code == 0
    assert f"{path}:2:8: risk_never_fires: warning: rule `disabled` can never fire" in relaxed.stderr
    assert strict.exit_code == 1
    assert header_lines(strict.stderr) == header_lines(relaxed.stderr)


def test_json_format_lists_every_diagnostic_with_its_fields(tmp_path: Path):
    path = write(tmp_path, "three.risk", THREE_ERRORS)
    result = riskc_check("--format", "json", str(path))
    assert result.exit_code == 1
    items = json.loads(result.stdout)
    assert isinstance(items, list) and len(items) == 3
    for item in items:
        assert set(item) >= JSON_KEYS
        assert item["file"] == str(path) and item["severity"] == "error"
    assert [(i["line"], i["col"], i["code"]) for i in items] == [
        (1, 5, "risk_unknown_name"),
        (2, 26, "risk_unit_error"),
        (3, 26, "risk_unit_error"),
    ]
    assert items[0]["end_col"] == 14 and items[0]["help"] == "did you mean `daily_loss`?"


def test_json_format_of_a_clean_file_is_an_empty_list(tmp_path: Path):
    result = riskc_check("--format", "json", str(write(tmp_path, "ok.risk", CLEAN)))
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])


def test_max_errors_caps_the_list_but_not_the_exit_code(tmp_path: Path):
    path = str(write(tmp_path, "three.risk", THREE_ERRORS))
    text = riskc_check("--max-errors", "1", path)
    assert text.exit_code == 1
    assert len(header_lines(text.stderr)) == 1
    assert "... and 2 more" in text.stderr
    as_json = riskc_check("--max-errors", "2", "--format", "json", path)
    assert len(json.loads(as_json.stdout)) == 2


def test_max_errors_must_be_positive(tmp_path: Path):
    result = riskc_check("--max-errors", "0", str(write(tmp_path, "ok.risk", CLEAN)))
    assert result.exit_code == 2


def test_directories_are_searched_recursively(tmp_path: Path):
    write(tmp_path, "top.risk", CLEAN)
    nested = write(tmp_path, "desk/london/bad.risk", UNIT_ERROR)
    write(tmp_path, "desk/notes.txt", "not a policy: ignored")
    result = riskc_check(str(tmp_path))
    assert result.exit_code == 1
    assert header_lines(result.stderr) == [f"{nested}:2:8: risk_unit_error: cannot compute money + contracts"]


def test_missing_file_is_a_usage_error_without_traceback(tmp_path: Path):
    missing = tmp_path / "nope.risk"
    result = riskc_check(str(missing))
    assert result.exit_code == 2
    assert f"no such file or directory: {missing}" in result.output
    assert "Traceback" not in result.output


def test_no_paths_is_a_usage_error():
    assert riskc_check().exit_code == 2


def test_diagnostics_of_several_files_are_sorted_by_file_and_position(tmp_path: Path):
    b = write(tmp_path, "b.risk", THREE_ERRORS)
    a = write(tmp_path, "a.risk", "\n\n" + UNIT_ERROR + "use daly_loss(limit: $5)\n")
    result = riskc_check(str(b), str(a))
    located = [line.split(": ")[0] for line in header_lines(result.stderr)]
    assert located == [f"{a}:4:8", f"{a}:6:5", f"{b}:1:5", f"{b}:2:26", f"{b}:3:26"]


def test_a_rule_defined_in_another_file_on_the_command_line_can_be_used(tmp_path: Path):
    lib = write(tmp_path, "lib.risk", "rule desk_loss(limit: money)\n  when day.net_pnl <= -limit\n  then flatten\n")
    policy = write(tmp_path, "policy.risk", "use desk_loss(limit: $750)\n")
    assert riskc_check(str(policy), str(lib)).exit_code == 0
    alone = riskc_check(str(policy))
    assert alone.exit_code == 1 and "unknown rule `desk_loss`" in alone.stderr


@pytest.mark.parametrize("heavy", ["project_x_py", "pandas", "polars"])
def test_check_does_not_import_the_sdk_or_dataframes(heavy: str):
    script = (
        "import sys\n"
        "from riskc.engine.cli.main import main\n"
        "try:\n"
        "    main(['check', 'policies/', 'stdlib_rules/'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        f"assert {heavy!r} not in sys.modules, sorted(m for m in sys.modules if m.startswith({heavy!r}))\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout.strip()) == (0, "ok"), run.stderr


# -- a mistyped folder, an empty file, a copy beside the original (issue 18) ------------------


def test_a_folder_without_policy_files_is_a_usage_error(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    result = riskc_check(str(tmp_path / "empty"))
    assert result.exit_code == 2
    assert "no policy in" in result.output and "holds no .risk files" in result.output


def test_an_empty_policy_file_is_a_warning(tmp_path: Path):
    path = write(tmp_path, "empty.risk", "")
    result = riskc_check(str(path))
    assert result.exit_code == 0
    assert "risk_empty_file" in result.stderr and "warning" in result.stderr
    assert riskc_check("--strict", str(path)).exit_code == 1


def test_a_copy_of_a_policy_beside_it_explains_the_one_policy_set(tmp_path: Path):
    original = (REPO / "policies" / "topstep-50k.risk").read_text()
    write(tmp_path, "topstep-50k.risk", original)
    write(tmp_path, "mine.risk", original)
    result = riskc_check(str(tmp_path))
    assert result.exit_code == 1
    assert "form one policy set, and both would be active at once" in result.stderr
    assert "move the other out of the folder or give its path alone" in result.stderr
