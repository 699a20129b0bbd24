"""`riskc fmt PATH...`: rewrite policy files in the canonical layout (PRODUCT.md §5).

A file that does not parse is reported and left as it is: the formatter never guesses at a
broken file's meaning. `--check` and `--diff` change nothing, so they are safe in CI.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import click

from riskc.dsl import RiskError
from riskc.dsl.format import format_source
from riskc.engine.cli.common import EXIT_FAILED, EXIT_OK, collect_risk_files


@click.command("fmt")
@click.argument("paths", nargs=-1, required=True)
@click.option("--check", is_flag=True, help="Change nothing; exit 1 and list the files that would change.")
@click.option("--diff", "show_diff", is_flag=True, help="Change nothing; print a unified diff of the changes.")
def command(paths: tuple[str, ...], check: bool, show_diff: bool) -> None:
    """Format policy files in place (directories are searched for *.risk)."""
    failed = False
    for path in collect_risk_files(paths):
        outcome = _format_file(path, write=not (check or show_diff), show_diff=show_diff)
        failed |= outcome == "broken" or (check and outcome == "changed")
    raise SystemExit(EXIT_FAILED if failed else EXIT_OK)


def _format_file(path: Path, write: bool, show_diff: bool) -> str:
    """Format one file; returns "broken", "changed" or "unchanged"."""
    source = _read(path)
    try:
        formatted = format_source(source, str(path))
    except RiskError as error:
        for diagnostic in error.diagnostics:
            click.echo(diagnostic.render(source), err=True)
        return "broken"
    if formatted == source:
        return "unchanged"
    if show_diff:
        click.echo(_unified_diff(path, source, formatted), nl=False)
    elif write:
        _write(path, formatted)
    else:
        click.echo(str(path))
    return "changed"


def _read(path: Path) -> str:
    """Bytes as written (no newline translation), so `\\r\\n` files are seen as needing a change."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise click.UsageError(f"cannot read {path}: {error}") from error


def _write(path: Path, text: str) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write(text)


def _unified_diff(path: Path, before: str, after: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"{path} (original)",
        tofile=f"{path} (formatted)",
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines)
