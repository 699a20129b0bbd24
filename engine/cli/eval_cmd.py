"""`riskc eval POLICY --snapshot FILE`: evaluate once and explain the decision (PRODUCT.md §5)."""

from __future__ import annotations

import json

import click

from riskc.engine.cli.common import EXIT_FAILED, collect_risk_files, echo_err


@click.command("eval")
@click.argument("policy", nargs=-1, required=True)
@click.option(
    "--snapshot", "snapshot_path", required=True, type=click.Path(dir_okay=False), help="Snapshot file (YAML or JSON)."
)
@click.option("--json", "as_json", is_flag=True, help="Print action records (one JSON object a line).")
def command(policy: tuple[str, ...], snapshot_path: str, as_json: bool) -> None:
    """Evaluate POLICY (files or directories) against one snapshot and print the decision."""
    from riskc.engine.core.policy_loader import load_paths
    from riskc.engine.testing.snapshot_file import SnapshotError, load_snapshot

    loaded = load_paths(collect_risk_files(policy))
    if not loaded.ok:
        for d in loaded.diagnostics:
            echo_err(d.render(loaded.result.sources.get(d.span.file)))
        raise SystemExit(EXIT_FAILED)
    if not loaded.programs:
        raise click.UsageError("no policy among the files given (only rule definitions)")
    for program in loaded.programs:
        settings = program.policy.settings
        if settings.scope == "group":  # a snapshot file is one account's
            echo_err(
                f"error: {program.policy.path} is a group policy (`scope group`): `riskc eval` takes one account's "
                "snapshot; replay a group with `riskc replay RECORDING --config riskc.yaml`"
            )
            raise SystemExit(EXIT_FAILED)
        try:
            snapshot = load_snapshot(snapshot_path, timezone=settings.timezone, day_starts=settings.trading_day_starts)
        except SnapshotError as error:
            echo_err(f"error: {error}")
            raise SystemExit(EXIT_FAILED) from None
        decision = program.evaluate(snapshot)
        if as_json:
            for record in decision.records(snapshot.event.time or snapshot.session.now):
                click.echo(json.dumps(record, ensure_ascii=False))
        else:
            _print_decision(program, decision)


def _print_decision(program, decision) -> None:
    from rich.table import Table

    from riskc.engine.daemon.console import make_console

    console = make_console()
    title = program.policy.settings.name or program.policy.path
    if decision.empty:
        console.print(f"[green]{title}: no rule fired[/green]")
        return
    console.print(f"[bold]{title}[/bold]: {len(decision.fired)} rule(s) fired")
    for firing in (*decision.errors, *decision.fired):
        console.print(f"  [yellow]{firing.severity:>8}[/yellow] {firing.reason}")
    table = Table("action", "target", "detail", "rule", title="actions after dedupe and escalation")
    for action in decision.actions:
        table.add_row(
            action.kind,
            action.symbol or action.contract_id or "account",
            _detail(action, program.timezone),
            action.rule,
        )
    console.print(table)


def _detail(action, zone: str) -> str:
    from riskc.dsl.runtime import show_instant

    parts = []
    if action.to is not None:
        parts.append(f"to {action.to}")
    if action.until is not None:
        parts.append(f"until {show_instant(action.until, zone)}")
    if action.condition:
        parts.append(action.condition)
    if action.price is not None:
        parts.append(f"at {action.price}")
    if action.message:
        parts.append(action.message)
    return ", ".join(parts)
