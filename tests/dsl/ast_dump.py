"""A stable, readable text dump of a parsed module, for golden files.

One node a line, children indented by two spaces, every node with its span as
``@line:col-end_line:end_col``. A node whose fields are all plain values fits on one line
(``MoneyLit amount=1000 @3:17-3:23``), beside its field name when it is a field's value; other
nodes list their fields below them. Tuples print as
``- `` items, an empty tuple as ``[]``, a missing optional as ``none``. Values print in one fixed
form (strings JSON-quoted, Decimals as written, times and dates in ISO form), so the dump changes
only when the tree does.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from decimal import Decimal

from riskc.dsl.errors import Span

_INDENT = "  "


def dump(node: object) -> str:
    return "\n".join(_node_lines(node, 0)) + "\n"


def _node_lines(node: object, depth: int) -> list[str]:
    pad = _INDENT * depth
    fields = _fields(node)
    if all(_is_plain(value) for _, value in fields):
        inline = "".join(f" {name}={_plain(value)}" for name, value in fields)
        return [f"{pad}{type(node).__name__}{inline} {_span(node)}"]
    lines = [f"{pad}{type(node).__name__} {_span(node)}"]
    for name, value in fields:
        lines.extend(_field_lines(name, value, depth + 1))
    return lines


def _field_lines(name: str, value: object, depth: int) -> list[str]:
    pad = _INDENT * depth
    if _is_plain(value):
        return [f"{pad}{name}: {_plain(value)}"]
    if isinstance(value, tuple):
        lines = [f"{pad}{name}:"]
        for item in value:
            lines.extend(_item_lines(item, depth + 1))
        return lines
    lines = _node_lines(value, depth + 1)
    if len(lines) == 1:  # a one-line node sits beside its field name
        return [f"{pad}{name}: {lines[0].lstrip()}"]
    return [f"{pad}{name}:", *lines]


def _item_lines(item: object, depth: int) -> list[str]:
    if _is_plain(item):
        return [f"{_INDENT * depth}- {_plain(item)}"]
    first, *rest = _node_lines(item, depth)
    return [f"{_INDENT * depth}- {first.lstrip()}", *rest]


def _fields(node: object) -> list[tuple[str, object]]:
    return [(f.name, getattr(node, f.name)) for f in dataclasses.fields(node) if f.name != "span"]


def _is_plain(value: object) -> bool:
    if isinstance(value, tuple):
        return not value or all(_is_plain(v) for v in value)
    return not dataclasses.is_dataclass(value)


def _plain(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (Decimal, int)):
        return str(value)
    if isinstance(value, (dt.time, dt.date)):
        return value.isoformat()
    raise TypeError(f"no dump form for {type(value).__name__}: {value!r}")


def _span(node: object) -> str:
    span: Span = node.span  # type: ignore[attr-defined]
    return f"@{span.line}:{span.col}-{span.end_line}:{span.end_col}"
