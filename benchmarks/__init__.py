"""Side-by-side measurements, not run by the test suite: ``python -m benchmarks [NAME...]``.

Each ``bench_*.py`` module exposes ``run()``, which returns ``(label, value)`` rows to print as a
table (or prints its own output and returns ``None``). ``NAME`` is the part after ``bench_``.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

PREFIX = "bench_"


def names() -> list[str]:
    """The benchmark names, in a stable order."""
    return sorted(m.name[len(PREFIX) :] for m in pkgutil.iter_modules(__path__) if m.name.startswith(PREFIX))


def load(name: str) -> ModuleType:
    return importlib.import_module(f"{__name__}.{PREFIX}{name.removeprefix(PREFIX)}")
