"""Policy files -> checked and compiled Programs: the one way the engine loads policies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from riskc.dsl.checker import CheckResult, check
from riskc.dsl.compiler import Program, compile_policy
from riskc.dsl.errors import Diagnostic
from riskc.dsl.library import stdlib_sources
from riskc.engine.core.snapshot import SCHEMA


@dataclass(frozen=True, slots=True)
class LoadedPolicies:
    programs: tuple[Program, ...]
    diagnostics: tuple[Diagnostic, ...]
    result: CheckResult

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)


def load_sources(sources: list[tuple[str, str]]) -> LoadedPolicies:
    result = check(sources, SCHEMA, stdlib_sources())
    if not result.ok:
        return LoadedPolicies((), tuple(result.diagnostics), result)
    programs = tuple(compile_policy(p, result) for p in result.policies)
    return LoadedPolicies(programs, tuple(result.diagnostics), result)


def load_paths(paths: list[Path]) -> LoadedPolicies:
    return load_sources([(str(p), p.read_text(encoding="utf-8")) for p in paths])
