"""The standard library: rules written in the language itself, shipped as package data."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path


@functools.cache
def stdlib_sources() -> tuple[tuple[str, str], ...]:
    """(path, text) of every standard rule file, in name order."""
    root = resources.files("stdlib_rules")
    files = sorted((p for p in root.iterdir() if p.name.endswith(".risk")), key=lambda p: p.name)
    return tuple((str(p), p.read_text(encoding="utf-8")) for p in files)


def stdlib_dir() -> Path:
    return Path(str(resources.files("stdlib_rules")))
