"""``python -m benchmarks [NAME...]``: run every benchmark, or the named ones, and print results."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from . import load, names


def main(argv: list[str]) -> int:
    console = Console()
    available = names()
    wanted = [a.removeprefix("bench_") for a in argv] or available
    unknown = [w for w in wanted if w not in available]
    if unknown:
        console.print(f"unknown benchmark: {', '.join(unknown)} (available: {', '.join(available)})")
        return 2
    for name in wanted:
        rows = load(name).run()
        if rows is not None:
            console.print(_table(name, rows))
    return 0


def _table(name: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=name, title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for label, value in rows:
        table.add_row(label, value)
    return table


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
