"""`riskc check PATH...`: validate policies offline (PRODUCT.md §5)."""

from __future__ import annotations

import json

import click

from riskc.dsl.checker import check
from riskc.dsl.library import stdlib_sources
from riskc.engine.cli.common import EXIT_FAILED, EXIT_OK, collect_risk_files, read_source


@click.command("check")
@click.argument("paths", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--max-errors", type=click.IntRange(min=1), default=None, help="Stop listing after N diagnostics.")
@click.option("--strict", is_flag=True, help="Warnings fail the check too.")
@click.option("--debug", is_flag=True, help="Show a traceback for internal errors.")
def command(paths: tuple[str, ...], fmt: str, max_errors: int | None, strict: bool, debug: bool) -> None:
    """Validate policy files; print nothing and exit 0 when clean."""
    files = collect_risk_files(paths)
    from riskc.engine.core.snapshot import SCHEMA

    result = check([(str(f), read_source(f)) for f in files], SCHEMA, stdlib_sources())
    sources, diagnostics = result.sources, result.diagnostics
    shown = diagnostics[:max_errors] if max_errors else diagnostics
    if fmt == "json":
        click.echo(json.dumps([d.to_json() for d in shown], indent=2))
    else:
        for d in shown:
            click.echo(d.render(sources.get(d.span.file)), err=True)
        if max_errors and len(diagnostics) > max_errors:
            click.echo(f"... and {len(diagnostics) - max_errors} more", err=True)
    failed = any(d.is_error for d in diagnostics) or (strict and diagnostics)
    raise SystemExit(EXIT_FAILED if failed else EXIT_OK)
