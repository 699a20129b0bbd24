"""`./dev test` runs lint, pytest and the policy tests whatever happens in one of them, prints a
summary of the three and fails if any failed; a set-up that is done is not redone. The tools are
stubs here (a copy of `dev` beside a fake .venv), so this runs in milliseconds."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUB = """#!/usr/bin/env bash
case "$*" in
  -c*) exit 0 ;;                                   # ./dev asking whether this Python is suitable
  "-m pytest"*) echo "pytest ran"; exit "${PYTEST_RC:-0}" ;;
  test\\ *) echo "policy tests ran"; exit "${POLICY_RC:-0}" ;;
  *) exit "${LINT_RC:-0}" ;;                       # ruff format --check / ruff check
esac
"""


@pytest.fixture
def dev(tmp_path: Path) -> Path:
    shutil.copy(REPO / "dev", tmp_path / "dev")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("python", "ruff", "riskc"):
        (bin_dir / tool).write_text(STUB)
        (bin_dir / tool).chmod(0o755)
    stamp = hashlib.sha256((tmp_path / "pyproject.toml").read_bytes()).hexdigest()
    (tmp_path / ".venv" / ".riskc-installed").write_text(stamp + "\n")
    return tmp_path


def run(dev: Path, **rcs: int) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", **{k.upper(): str(v) for k, v in rcs.items()}}
    return subprocess.run(["bash", str(dev / "dev"), "test"], cwd=dev, env=env, capture_output=True, text=True)


def test_all_three_pass(dev):
    result = run(dev)
    assert result.returncode == 0, result.stderr
    assert "==> summary: lint: passed, pytest: passed, policy tests: passed" in result.stderr
    assert "setting up" not in result.stderr  # the stamp matches: no set-up


def test_a_pytest_failure_still_runs_the_policy_tests_and_fails(dev):
    result = run(dev, pytest_rc=1)
    assert result.returncode == 1
    assert "policy tests ran" in result.stdout
    assert "==> summary: lint: passed, pytest: FAILED, policy tests: passed" in result.stderr


def test_a_policy_test_failure_fails(dev):
    result = run(dev, policy_rc=1)
    assert result.returncode == 1 and "policy tests: FAILED" in result.stderr


def test_a_lint_failure_fails_but_the_tests_still_run(dev):
    result = run(dev, lint_rc=1)
    assert result.returncode == 1
    assert "pytest ran" in result.stdout and "policy tests ran" in result.stdout
    assert "lint: FAILED" in result.stderr


def test_ci_runs_exactly_dev_test():
    assert (REPO / ".ci" / "run").read_text().strip().splitlines()[-1] == "./dev test"
