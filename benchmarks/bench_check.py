"""What `riskc check policies/ stdlib_rules/` costs from a cold start: a trader runs it on every
save (and an editor may run it on every keystroke), so the whole process, interpreter start-up
included, should stay under half a second. When it does not, the slowest imports are listed
(from ``python -X importtime``) so the one to make lazy is obvious."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGETS = ("policies/", "stdlib_rules/")
RUNS = 11
BUDGET_S = 0.5
SLOWEST_IMPORTS = 8


def run() -> list[tuple[str, str]]:
    riskc = _riskc()
    times = sorted(_cold_run([str(riskc), "check", *TARGETS]) for _ in range(RUNS))
    bare = statistics.median(_cold_run([sys.executable, "-c", "pass"]) for _ in range(RUNS))
    median = statistics.median(times)
    rows = [
        (f"riskc check {' '.join(TARGETS)}: median of {RUNS} cold runs (ms)", f"{median * 1e3:.0f}"),
        ("fastest / slowest run (ms)", f"{times[0] * 1e3:.0f} / {times[-1] * 1e3:.0f}"),
        ("of which a bare `python -c pass` (ms)", f"{bare * 1e3:.0f}"),
        (f"within the {BUDGET_S * 1e3:.0f} ms budget", "yes" if median <= BUDGET_S else "NO"),
    ]
    if median > BUDGET_S:
        rows += [(f"import {name} (cumulative ms)", f"{us / 1e3:.1f}") for name, us in _slowest_imports()]
    return rows


def _riskc() -> Path:
    """The venv's console script, next to the interpreter running the benchmarks."""
    script = Path(sys.executable).parent / ("riskc.exe" if os.name == "nt" else "riskc")
    if not script.exists():
        raise SystemExit(f"no riskc executable next to {sys.executable}; install the package first")
    return script


def _cold_run(argv: list[str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return elapsed


def _slowest_imports() -> list[tuple[str, int]]:
    """Top-level packages (`lark`, `click`, `engine`, ...) by cumulative import time in
    microseconds, slowest first, from `python -X importtime`: the place to look for a lazy import."""
    code = f"from riskc.engine.cli.main import main; main(['check', *{TARGETS!r}])"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=REPO, capture_output=True, text=True)
    packages: dict[str, int] = {}
    for line in done.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].strip()
        if "." not in name and not name.startswith("_"):
            packages[name] = max(packages.get(name, 0), int(parts[1]))
    return sorted(packages.items(), key=lambda item: -item[1])[:SLOWEST_IMPORTS]
