"""The benchmarks are not part of the suite, but they must not rot: each module imports, exposes
``run``, and the parse benchmark's generated policy still parses. Nothing here is timed."""

from __future__ import annotations

import importlib

import pytest


@pytest.fixture
def benchmarks(monkeypatch, repo):
    monkeypatch.syspath_prepend(str(repo))  # benchmarks/ is a folder of the repo, not installed
    return importlib.import_module("benchmarks")


def test_every_bench_module_imports_and_has_run(benchmarks):
    found = benchmarks.names()
    assert "parse" in found
    for name in found:
        assert callable(benchmarks.load(name).run), name


def test_generated_benchmark_policy_parses_cleanly(benchmarks):
    from riskc.dsl import parse

    module = benchmarks.load("parse")
    result = parse(module.generate_policy(), "bench.risk")
    assert result.diagnostics == ()
    assert len(result.module.rules) == module.RULES
