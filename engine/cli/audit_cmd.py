"""`riskc audit verify --state PATH`: check the audit log's hash chain (PRODUCT.md §7).

Exit 0 with one line when the chain is whole; exit 1 naming the first bad record otherwise, so a
cron job or CI step can alert on tampering or truncation.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import click

from riskc.engine.cli.common import EXIT_FAILED, EXIT_OK


@click.group("audit")
def command() -> None:
    """Inspect the audit log of the state store."""


@command.command("verify")
@click.option(
    "--state",
    "state",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The state file (SQLite) the daemon writes.",
)
def verify(state: Path) -> None:
    """Check every record's hash and the chain from the first record to the stored head."""
    if not state.is_file():
        raise click.UsageError(f"no such state file: {state}")
    from riskc.engine.store import Store  # imported here so other verbs do not pay for sqlite-utils

    try:
        with Store.open(state) as store:
            result = store.verify_audit()
    except sqlite3.DatabaseError as error:
        raise click.ClickException(f"cannot read {state} as a state file: {error}") from error
    if result.ok:
        click.echo(f"audit log OK: {result.count} records")
        raise SystemExit(EXIT_OK)
    click.echo(f"audit log BAD at record {result.first_bad_seq}: {result.problem}", err=True)
    raise SystemExit(EXIT_FAILED)
