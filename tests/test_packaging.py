"""What an installed riskc has: the wheel carries the package data that `riskc rules`, `riskc test
--stdlib` and the embedded demo of `riskc run` need, and the code finds it through its packages,
never through a checkout (an installed riskc has no examples/ folder beside it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from riskc import engine as engine
from riskc import policies as policies
from riskc.engine.daemon.config import DEMO_POLICY, DEMO_RECORDING

REPO = Path(__file__).resolve().parents[1]


def test_the_demo_files_are_package_data():
    assert Path(policies.__file__).parent / "topstep-50k.risk" == DEMO_POLICY
    assert Path(engine.__file__).parent / "sim" / "demo.jsonl" == DEMO_RECORDING
    assert DEMO_POLICY.is_file() and DEMO_RECORDING.is_file()


def test_the_packaged_demo_recording_is_the_example_session():
    # examples/sessions/make_sessions.py writes both; the example is what users replay by hand.
    assert DEMO_RECORDING.read_bytes() == (REPO / "examples" / "sessions" / "demo.jsonl").read_bytes()


_JUNK = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis")


def _not_for_the_build(folder: str, names: list[str]) -> set[str]:
    """Version control, environments, earlier build output, and the repository's own tests."""
    skip = set(_JUNK(folder, names))
    if Path(folder) == REPO:
        skip |= {"tests", "benchmarks", "state"} & set(names)
    return skip


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the source (a build writes build/ and *.egg-info/ beside it)."""
    pytest.importorskip("setuptools")  # a dev extra: built without isolation, so offline
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    shutil.copytree(REPO, source, ignore=_not_for_the_build)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(root / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (built,) = (root / "dist").glob("riskc-*.whl")
    return built


def test_the_wheel_holds_the_package_data(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {
        "riskc/dsl/grammar.lark",
        "riskc/engine/sim/demo.jsonl",
        "riskc/stdlib_rules/pnl.risk",
        "riskc/stdlib_rules/tests/daily_loss.yaml",
        "riskc/policies/__init__.py",
        "riskc/engine/daemon/board/static/index.html",  # the status board works offline, installed
        "riskc/engine/daemon/board/static/board.js",
        "riskc/engine/daemon/board/static/board.css",
    }
    wanted |= {f"riskc/policies/{p.name}" for p in (REPO / "policies").glob("*.risk")}
    wanted |= {f"riskc/policies/tests/{p.name}" for p in (REPO / "policies" / "tests").glob("*.yaml")}
    assert "riskc/policies/topstep-50k.risk" in wanted
    assert wanted <= names, sorted(wanted - names)


def test_the_wheel_installs_one_top_level_package(wheel: Path):
    """Nothing named `engine`, `dsl` or `policies` lands in site-packages beside other projects'."""
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"riskc"}


def test_an_installed_riskc_finds_its_files_outside_a_checkout(wheel: Path, tmp_path: Path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # a pure wheel unpacked is an install, less the scripts
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = textwrap.dedent("""
        import sys
        from riskc import engine
        from riskc.engine.cli.main import main
        from riskc.engine.daemon.config import Config
        demo = Config.default_demo()
        print(engine.__file__, demo.broker.recording, demo.accounts[0].policies[0], sep="\\n")
        sys.argv = ["riskc", "check", str(demo.accounts[0].policies[0])]
        main()
    """)
    env = {**os.environ, "PYTHONPATH": str(site), "XDG_STATE_HOME": str(tmp_path / "state")}
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr  # `riskc check` prints nothing on a good policy
    module, recording, policy = (Path(line) for line in run.stdout.splitlines())
    assert module == site / "riskc" / "engine" / "__init__.py"  # the unpacked wheel, not the checkout
    assert recording == site / "riskc" / "engine" / "sim" / "demo.jsonl" and recording.is_file()
    assert policy == site / "riskc" / "policies" / "topstep-50k.risk" and policy.is_file()
