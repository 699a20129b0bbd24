"""`riskc diff OLD NEW SESSION...`: what changing a policy would have changed (PRODUCT.md §1).

Both policy sets (files or folders) are replayed over each recording (files, or folders searched
for *.jsonl) with the simulated broker, as `riskc replay` does; for each recording it prints the
first action that differs with both reasons, the per-rule action counts under each, and each
trading day's simulated realized P&L under each. Exit 0 when the actions are the same over every
recording, 1 when they differ, 2 when a path or a policy is wrong (nothing compared)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from riskc.engine.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, collect_risk_files, echo_err


@click.command("diff")
@click.argument("old")
@click.argument("new")
@click.argument("sessions", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (times in UTC).")
def command(old: str, new: str, sessions: tuple[str, ...], as_json: bool) -> None:
    """Replay the policies OLD and NEW (files or folders) over each SESSION (recordings, or
    folders of them) and show where their actions differ."""
    from riskc.engine.sim.diff import diff_session

    old_set, new_set = _policies(old, "OLD"), _policies(new, "NEW")
    recordings = _recordings(sessions)
    diffs = [diff_session(old_set, new_set, path) for path in recordings]
    if as_json:
        click.echo(json.dumps(_document(old, new, diffs), indent=2, ensure_ascii=False, default=_json_default))
    else:
        _print(old, new, diffs, old_set.programs[0].timezone)
    raise SystemExit(EXIT_OK if all(d.same for d in diffs) else EXIT_FAILED)


def _policies(path: str, which: str):
    from riskc.engine.runner import PolicySet

    policies, diagnostics, result = PolicySet.from_paths(collect_risk_files([path]))
    if policies is None:
        for d in diagnostics:
            echo_err(d.render(result.sources.get(d.span.file)))
        if not any(d.is_error for d in diagnostics):
            echo_err(f"error: {which} ({path}) holds no policy (only rule definitions)")
        echo_err(f"riskc diff: {which} ({path}) does not check; nothing compared")
        raise SystemExit(EXIT_USAGE)
    return policies


def _recordings(sessions: tuple[str, ...]) -> list[Path]:
    found: list[Path] = []
    for raw in sessions:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*.jsonl") if p.is_file())
            if not inside:
                raise click.UsageError(f"no recordings in {raw}: the folder holds no .jsonl files")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise click.UsageError(f"no such file or directory: {raw}")
    return list(dict.fromkeys(found))


# -- text ----------------------------------------------------------------------------------------


def _print(old: str, new: str, diffs: list, zone: str) -> None:
    from rich.markup import escape

    from riskc.engine.daemon.console import make_console

    console = make_console()
    console.print(f"[dim]old: {escape(old)}   new: {escape(new)}[/dim]")
    for diff in diffs:
        _print_session(console, diff, zone)
    differ = sum(not d.same for d in diffs)
    console.print(
        f"\n{differ} of {len(diffs)} session(s) differ" if differ else f"\nthe same actions in {len(diffs)} session(s)"
    )


def _print_session(console: Any, diff: Any, zone: str) -> None:
    from rich.markup import escape

    first = diff.first_divergence
    verdict = "[green]the same actions[/green]" if first is None else "[yellow]the actions differ[/yellow]"
    console.print(f"[bold]{escape(str(diff.session))}[/bold]: {verdict}")
    if first is not None:
        old, new = _at(diff.old.records, first), _at(diff.new.records, first)
        console.print(f"  first divergence, action {first + 1}:")
        console.print(f"    old  {_describe(old, zone)}")
        console.print(f"    new  {_describe(new, zone)}")
    for rule, action, before, after in diff.counts():
        change = "" if before == after else f"  [yellow]({after - before:+d})[/yellow]"
        console.print(f"  {escape(rule):<26} {action:<13} old {before:>3}  new {after:>3}{change}")
    for day, before, after in diff.days():
        console.print(
            f"  realized P&L, trading day {day}: old {_money(before)}, new {_money(after)}"
            + ("" if before == after else f"  ({_money(after - before, signed=True)})")
        )


def _at(records: tuple, index: int) -> dict[str, Any] | None:
    return records[index] if index < len(records) else None


def _describe(record: dict[str, Any] | None, zone: str) -> str:
    from rich.markup import escape

    from riskc.engine.core.timefmt import human_time
    from riskc.engine.sim.diff import target_of

    if record is None:
        return "[dim](no action from here on)[/dim]"
    when = human_time(dt.datetime.fromisoformat(record["ts"]), zone) if record.get("ts") else ""
    return (
        f"{when}  [bold]{record['action']}[/bold] {escape(target_of(record))} ({escape(record['rule'])})\n"
        f"         [dim]{escape(record['reason'])}[/dim]"
    )


def _money(value: Decimal, *, signed: bool = False) -> str:
    sign = "-" if value < 0 else "+" if signed and value > 0 else ""
    return f"{sign}${abs(value):,.2f}"


# -- JSON ----------------------------------------------------------------------------------------


def _document(old: str, new: str, diffs: list) -> dict[str, Any]:
    return {
        "old": old,
        "new": new,
        "same": all(d.same for d in diffs),
        "sessions": [_session(d) for d in diffs],
    }


def _session(diff: Any) -> dict[str, Any]:
    first = diff.first_divergence
    return {
        "session": str(diff.session),
        "same": first is None,
        "first_divergence": None
        if first is None
        else {"index": first, "old": _at(diff.old.records, first), "new": _at(diff.new.records, first)},
        "actions": {"old": len(diff.old.records), "new": len(diff.new.records)},
        "rules": [{"rule": r, "action": a, "old": o, "new": n} for r, a, o, n in diff.counts()],
        "days": [{"trading_day": day, "old_realized_pnl": o, "new_realized_pnl": n} for day, o, n in diff.days()],
    }


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value.quantize(Decimal("0.01")) if value.as_tuple().exponent > -2 else value, "f")
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot show {type(value).__name__} as JSON")
