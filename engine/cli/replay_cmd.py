"""`riskc replay EVENTS.jsonl --policy PATH`: the engine over a recording, with the simulated
broker and the recorded clock (PRODUCT.md §5). Same input, same output, byte for byte."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import click

from riskc.engine.cli.common import EXIT_FAILED, collect_risk_files, echo_err
from riskc.engine.cli.statefile import span_text, state_errors


@click.command("replay")
@click.argument("recording", type=click.Path(exists=True, dir_okay=False))
@click.option("--policy", "policy", multiple=True, required=True, help="Policy files or directories (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print §6.2 action records, one JSON object a line.")
@click.option(
    "--state", type=click.Path(dir_okay=False), help="Keep the replay's state store here (default: a scratch file)."
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (default: on a terminal, for files over 5 MB).",
)
def command(recording: str, policy: tuple[str, ...], as_json: bool, state: str | None, progress: bool | None) -> None:
    """Replay RECORDING (JSON Lines, PRODUCT.md §6.1) through POLICY with the simulated broker."""
    from riskc.engine.runner import PolicySet

    files = collect_risk_files(policy)
    policies, diagnostics, result = PolicySet.from_paths(files)
    if policies is None:
        for d in diagnostics:
            echo_err(d.render(result.sources.get(d.span.file)))
        if not any(d.is_error for d in diagnostics):
            echo_err("error: no policy among the files given (only rule definitions)")
        raise SystemExit(EXIT_FAILED)
    with tempfile.TemporaryDirectory(prefix="riskc-replay-") as scratch:
        store_path = Path(state) if state else Path(scratch) / "state.db"
        summary = _run(
            Path(recording),
            policies,
            store_path,
            as_json,
            scratch_store=state is None,
            show_progress=_wants_progress(progress, recording),
        )
    _print_summary(summary, as_json)


def _run(path: Path, policies, store_path: Path, as_json: bool, *, scratch_store: bool, show_progress: bool):
    from riskc.engine.adapters.projectx.intake import read_feed
    from riskc.engine.sim.replay import Replay
    from riskc.engine.store import Store

    with state_errors("replay", store_path):
        store = Store.open(store_path, synchronous="OFF" if scratch_store else "NORMAL")
    # Malformed lines (unreadable, or unusable by the book) are in the summary, reported once at the
    # end; the engine's own log line for the second kind would report them twice.
    _quiet_engine_log()
    try:
        out = _Timeline(policies.programs[0].timezone) if not as_json else None
        emit = out.emit if out else (lambda record: click.echo(json.dumps(record, ensure_ascii=False)))
        replay = Replay(policies, store, emit=emit)
        items = read_feed(str(path))
        if show_progress:
            return _with_progress(replay, items, path)
        return replay.run(items)
    finally:
        store.close()


def _quiet_engine_log() -> None:
    import logging

    engine_log = logging.getLogger("riskc.engine")
    if not any(isinstance(h, logging.NullHandler) for h in engine_log.handlers):
        engine_log.addHandler(logging.NullHandler())


def _wants_progress(flag: bool | None, recording: str) -> bool:
    if flag is not None:
        return flag
    return sys.stderr.isatty() and os.path.getsize(recording) > 5_000_000


def _with_progress(replay, items, path: Path):
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    total = sum(1 for _ in path.open("rb"))
    with Progress(
        TextColumn("replay"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} lines"),
        TimeRemainingColumn(),
        transient=True,
        console=_stderr_console(),
    ) as bar:
        task = bar.add_task("replay", total=total)
        for n, item in enumerate(items, 1):
            replay.feed(item)
            if n % 20_000 == 0:
                bar.update(task, completed=n)
    return replay.summary


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


class _Timeline:
    """One line per action, in the policy's timezone: time, rule, action, target, reason."""

    def __init__(self, zone: str):
        from zoneinfo import ZoneInfo

        from rich.console import Console

        self.console = Console(highlight=False, soft_wrap=True)
        self.zone = ZoneInfo(zone)

    def emit(self, record: dict) -> None:
        import datetime as dt

        when = dt.datetime.fromisoformat(record["ts"]).astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S %Z")
        target = record.get("symbol") or record.get("contract_id") or record.get("state") or ""
        extra = f" to {record['to']}" if "to" in record else ""
        if "until" in record:
            until = dt.datetime.fromisoformat(record["until"]).astimezone(self.zone).strftime("%Y-%m-%d %H:%M %Z")
            extra += f" until {until}"
        self.console.print(
            f"[dim]{when}[/dim]  [bold]{record['action']:<13}[/bold] {target:<6} "
            f"[cyan]{record['rule']}[/cyan]{extra}\n    [dim]{record['reason']}[/dim]"
        )


def _print_summary(summary, as_json: bool) -> None:
    if as_json:  # stderr is JSON too: each malformed line with its number and reason, then the summary
        for bad in summary.malformed:
            record = {"line": bad.line, "reason": bad.reason, "content": bad.content[:500]}
            click.echo(json.dumps({"malformed": record}, ensure_ascii=False), err=True)
        for back in summary.backwards:
            record = {"line": back.line, "ts": back.ts.isoformat(), "clock": back.clock.isoformat()}
            click.echo(json.dumps({"backwards": record | {"applied": "at the clock's time"}}), err=True)
        click.echo(json.dumps({"summary": summary.to_json()}, ensure_ascii=False), err=True)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    for bad in summary.malformed[:20]:
        console.print(f"[yellow]malformed[/yellow] {bad.describe()}")
    for back in summary.backwards[:20]:
        console.print(f"[yellow]time goes back[/yellow] {back.describe()}")
    data = summary.to_json()
    extra = f", {data['backwards']:,} back in time" if data["backwards"] else ""
    if data["jumped_seconds"]:
        extra += f", {span_text(summary.jumped)} of idle recorded time jumped"
    console.print(
        f"\n[bold]{data['messages']:,}[/bold] messages, {data['events']:,} events, {data['ticks']:,} clock ticks, "
        f"{data['broker_calls']:,} broker calls, {data['malformed']:,} malformed lines skipped{extra}"
        f" ({data['from']} → {data['to']})"
    )
    if data["actions"]:
        table = Table("rule", "action", "count", title="actions")
        for row in data["actions"]:
            table.add_row(row["rule"], row["action"], str(row["count"]))
        console.print(table)
    else:
        console.print("[green]no rule acted[/green]")
