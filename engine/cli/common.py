"""Helpers shared by the CLI verbs: collecting files, printing diagnostics, exit codes."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import click

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def collect_risk_files(paths: Iterable[str]) -> list[Path]:
    """Files and directories (searched recursively for *.risk), in a stable order. A missing or
    unreadable path is a usage error (exit 2) with a message, never a traceback."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*.risk") if p.is_file())
            if not inside:
                raise click.UsageError(f"no policy in {raw}: the folder holds no .risk files (searched recursively)")
            found.extend(inside)
        elif path.is_file():
            found.append(path)
        else:
            raise click.UsageError(f"no such file or directory: {raw}")
    return list(dict.fromkeys(found))


def read_source(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise click.UsageError(f"cannot read {path}: {error}") from error


def echo_err(text: str) -> None:
    click.echo(text, file=sys.stderr)
