"""`riskc audit verify` and `riskc audit head` (PRODUCT.md §7).

``verify`` checks the audit log's hash chain, and that the lockouts, timers and admin passphrase
are what the chain says they are (``store/derived.py``). Exit 0 with one line when all is whole;
1 naming the first bad record or every edited row, so a cron job or CI step can alert on
tampering or truncation; 2 when the file is not a usable state file at all. It opens the file
read-only: checking the evidence never changes it.

``head`` prints the last record's number and hash: noted somewhere else (a log, a chat, the
daily heartbeat), it is the external anchor that makes a rewritten or shortened history
detectable, which no check inside the file alone can do.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import click

from riskc.engine.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, echo_err

_STATE = click.option(
    "--state",
    "state",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The state file (SQLite) the daemon writes.",
)


@click.group("audit")
def command() -> None:
    """Inspect the audit log of the state store."""


def _open(state: Path, verb: str):
    from riskc.engine.store import Store, StoreError

    try:
        return Store.open_readonly(state)
    except StoreError as error:
        echo_err(f"riskc audit {verb}: {error}")
        raise SystemExit(EXIT_USAGE) from None


@command.command("verify")
@_STATE
@click.option("--expect-head", "expect", metavar="SEQ:HASH", help="A head noted earlier (`riskc audit head`).")
def verify(state: Path, expect: str | None) -> None:
    """Check every record's hash, the chain to the stored head, and the lockouts, timers and
    admin passphrase against the chain."""
    try:
        with _open(state, "verify") as store:
            result = store.verify_audit()
            problems = store.state_problems() if result.ok else []
            anchored = _anchor_problem(store, expect) if result.ok and expect else None
    except sqlite3.DatabaseError as error:
        echo_err(f"riskc audit verify: cannot read {state} as a state file: {error}")
        raise SystemExit(EXIT_USAGE) from None
    if not result.ok:
        echo_err(f"audit log BAD at record {result.first_bad_seq}: {result.problem}")
        raise SystemExit(EXIT_FAILED)
    if problems or anchored:
        for problem in problems:
            echo_err(f"state BAD: {problem}")
        if anchored:
            echo_err(f"audit log BAD: {anchored}")
        raise SystemExit(EXIT_FAILED)
    click.echo(f"audit log OK: {result.count} records; lockouts, timers and the admin passphrase match it")
    raise SystemExit(EXIT_OK)


def _anchor_problem(store, expect: str) -> str | None:
    seq_text, _, digest = expect.partition(":")
    if not seq_text.strip().isdigit() or not digest:
        raise click.UsageError(f"--expect-head {expect}: expected SEQ:HASH as `riskc audit head` prints it")
    seq = int(seq_text)
    row = store.db.execute("SELECT hash FROM audit WHERE seq = ?", [seq]).fetchone()
    if row is None:
        return f"record {seq}, noted earlier, is gone: the log was truncated"
    if row[0] != digest.strip():
        return f"record {seq} no longer has the hash noted earlier: history was rewritten"
    return None


@command.command("head")
@_STATE
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def head(state: Path, as_json: bool) -> None:
    """Print the audit log's head (`SEQ:HASH`) to note outside the file."""
    with _open(state, "head") as store:
        found = store.audit_head()
    seq, digest = found if found is not None else (0, "0" * 64)
    if as_json:
        click.echo(json.dumps({"state": str(state), "seq": seq, "hash": digest}))
    else:
        click.echo(f"{seq}:{digest}")
