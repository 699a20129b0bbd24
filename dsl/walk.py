"""Generic traversal of the syntax tree (every dataclass field that holds nodes)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any


def children(node: Any) -> Iterator[Any]:
    for f in dataclasses.fields(node):
        if f.name == "span":
            continue
        value = getattr(node, f.name)
        if isinstance(value, tuple):
            yield from (v for v in value if dataclasses.is_dataclass(v))
        elif dataclasses.is_dataclass(value):
            yield value


def walk(node: Any) -> Iterator[Any]:
    """The node and all its descendants, parents first."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(list(children(current))))
