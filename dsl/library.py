"""The standard library: rules written in the language itself, shipped as package data, and
their reference (`riskc rules`, docs/rules.md) read from those same files: one source."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from riskc.dsl import ast
from riskc.dsl.format import format_action, format_expr, format_type
from riskc.dsl.parser import parse_or_raise


@functools.cache
def stdlib_sources() -> tuple[tuple[str, str], ...]:
    """(path, text) of every standard rule file, in name order."""
    root = resources.files("riskc.stdlib_rules")
    files = sorted((p for p in root.iterdir() if p.name.endswith(".risk")), key=lambda p: p.name)
    return tuple((str(p), p.read_text(encoding="utf-8")) for p in files)


def stdlib_dir() -> Path:
    return Path(str(resources.files("riskc.stdlib_rules")))


@dataclass(frozen=True, slots=True)
class ParamDoc:
    name: str
    type: str  # as written: `map[symbol, contracts]`, `net|gross`, `money?`
    default: str | None  # as written, None when the parameter is required (or optional: `money?`)

    @property
    def required(self) -> bool:
        return self.default is None and not self.type.endswith("?")


@dataclass(frozen=True, slots=True)
class RuleDoc:
    """One library rule as its reference shows it."""

    name: str
    file: str  # `pnl.risk`
    theme: str  # the file's first comment: `Profit and loss limits for the day and per position.`
    doc: str
    params: tuple[ParamDoc, ...]
    on: tuple[str, ...]
    binder: str | None  # `position p`
    when: str
    actions: tuple[str, ...]
    severity: str

    @property
    def summary(self) -> str:
        """The docstring's first sentence."""
        text = " ".join(self.doc.split())
        end = text.find(". ")
        return text if end < 0 else text[: end + 1]

    @property
    def signature(self) -> str:
        def one(p: ParamDoc) -> str:
            return f"{p.name}: {p.type}" + (f" = {p.default}" if p.default is not None else "")

        return f"{self.name}({', '.join(one(p) for p in self.params)})" if self.params else self.name


def library_rules(sources: tuple[tuple[str, str], ...] | None = None) -> list[RuleDoc]:
    """Every rule of the library files, file by file, in the order written."""
    docs = []
    for path, text in sources if sources is not None else stdlib_sources():
        module = parse_or_raise(text, path)
        theme = _theme(text)
        docs += [_describe(rule, Path(path).name, theme) for rule in module.rules]
    return docs


def _theme(text: str) -> str:
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    return first.lstrip("#").strip() if first.startswith("#") else ""


def _describe(rule: ast.Rule, file: str, theme: str) -> RuleDoc:
    params = tuple(
        ParamDoc(p.name.text, format_type(p.type), format_expr(p.default) if p.default is not None else None)
        for p in rule.params
    )
    binder = f"{rule.binder.kind} {rule.binder.var.text}" if rule.binder else None
    return RuleDoc(
        name=rule.id,
        file=file,
        theme=theme,
        doc=rule.doc.value if rule.doc else "",
        params=params,
        on=tuple(k.text for k in rule.on),
        binder=binder,
        when=format_expr(rule.when),
        actions=tuple(format_action(a) for a in rule.actions),
        severity=rule.severity.text if rule.severity else "medium",
    )
