"""`riskc replay EVENTS.jsonl --policy PATH`: the engine over a recording, with the simulated
broker and the recorded clock (PRODUCT.md §5). Same input, same output, byte for byte."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import click

from riskc.engine.cli.common import EXIT_FAILED, EXIT_USAGE, collect_risk_files, echo_err
from riskc.engine.cli.statefile import span_text, state_errors


@click.command("replay")
@click.argument("recording", type=click.Path(exists=True, dir_okay=False))
@click.option("--policy", "policy", multiple=True, help="Policy files or directories (repeatable).")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="riskc.yaml: replay its accounts, each with its policies, and its groups (a recording of several accounts).",
)
@click.option("--group", "group_name", help="With --config: only this group's accounts and group policies.")
@click.option("--json", "as_json", is_flag=True, help="Print §6.2 action records, one JSON object a line.")
@click.option(
    "--state", type=click.Path(dir_okay=False), help="Keep the replay's state store here (default: a scratch file)."
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on stderr (default: on a terminal, for files over 5 MB).",
)
def command(
    recording: str,
    policy: tuple[str, ...],
    config_path: str | None,
    group_name: str | None,
    as_json: bool,
    state: str | None,
    progress: bool | None,
) -> None:
    """Replay RECORDING (JSON Lines, PRODUCT.md §6.1) through POLICY with the simulated broker,
    or, with --config, every account (and group) of a riskc.yaml over a recording of several."""
    if bool(policy) == bool(config_path):
        echo_err("error: give --policy PATH (one account) or --config riskc.yaml (its accounts and groups)")
        raise SystemExit(EXIT_USAGE)
    if group_name is not None and not config_path:
        echo_err("error: --group needs --config (the riskc.yaml that defines the group)")
        raise SystemExit(EXIT_USAGE)
    if config_path:
        _replay_config(Path(recording), Path(config_path), group_name, as_json, state, progress)
        return
    policies = _checked(collect_risk_files(policy), "account", "the files given")
    _replay_and_report(Path(recording), policies, as_json, state, progress)


def _checked(paths: list[Path], scope: str, what: str):
    """The PolicySet of ``paths`` (``scope``: an account's or a group's), or, when they do not
    check, their diagnostics on stderr and exit 1."""
    from riskc.engine.runner import PolicySet

    policies, diagnostics, result = PolicySet.from_paths(paths, scope)
    if policies is None:
        for d in diagnostics:
            echo_err(d.render(result.sources.get(d.span.file) if result else None))
        if not any(d.is_error for d in diagnostics):
            echo_err(f"error: no policy among {what} (only rule definitions)")
        raise SystemExit(EXIT_FAILED)
    return policies


def _replay_and_report(recording: Path, policies, as_json: bool, state: str | None, progress, groups=None) -> None:
    """The replay, in the state store ``state`` or a scratch one, and its summary."""
    with tempfile.TemporaryDirectory(prefix="riskc-replay-") as scratch:
        store_path = Path(state) if state else Path(scratch) / "state.db"
        summary = _run(
            recording,
            policies,
            store_path,
            as_json,
            scratch_store=state is None,
            show_progress=_wants_progress(progress, str(recording)),
            groups=groups,
        )
    _print_summary(summary, as_json)


def _run(
    path: Path, policies, store_path: Path, as_json: bool, *, scratch_store: bool, show_progress: bool, groups=None
):
    """``policies``: one account's PolicySet, or (with ``groups``, from --config) the members."""
    from riskc.engine.adapters.projectx.intake import read_feed, read_recording
    from riskc.engine.sim.replay import Replay
    from riskc.engine.store import Store

    with state_errors("replay", store_path):
        store = Store.open(store_path, synchronous="OFF" if scratch_store else "NORMAL")
    # Malformed lines (unreadable, or unusable by the book) are in the summary, reported once at the
    # end; the engine's own log line for the second kind would report them twice.
    _quiet_engine_log()
    try:
        first = policies if groups is None else policies[0].policies
        out = _Timeline(first.programs[0].timezone) if not as_json else None
        emit = out.emit if out else (lambda record: click.echo(json.dumps(record, ensure_ascii=False)))
        if groups is None:
            replay = Replay(policies, store, emit=emit)
            items = read_feed(str(path))  # a quote line as its Quote alone (the fast path)
        else:  # each account sees its own messages only; one account's records as --policy prints them
            from riskc.engine.sim.group_replay import GroupReplay

            replay = GroupReplay(policies, groups, store, emit=emit, label=len(policies) > 1)
            items = read_recording(str(path))  # messages, split by the account they name
        if show_progress:
            return _with_progress(replay, items, path)
        return replay.run(items)
    finally:
        store.close()


def _replay_config(
    recording: Path, config_path: Path, group_name: str | None, as_json: bool, state: str | None, progress: bool | None
) -> None:
    """The accounts of a riskc.yaml (or of one of its groups) over one recording."""
    from riskc.engine.daemon.config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except ConfigError as error:
        echo_err(str(error))
        raise SystemExit(EXIT_USAGE) from None
    groups = config.groups
    accounts = config.accounts
    if group_name is not None:
        group = config.group(group_name)
        if group is None:
            known = ", ".join(g.name for g in config.groups) or "none"
            echo_err(f"error: {config_path} has no group `{group_name}` (groups: {known})")
            raise SystemExit(EXIT_USAGE)
        groups, accounts = [group], config.members(group)
    members, specs = _load_members(config, accounts, groups)
    _replay_and_report(recording, members, as_json, state, progress, groups=specs)


def _load_members(config, accounts, groups):
    """Each account's policies and each group's, checked; the first file that does not check stops it."""
    from riskc.engine.daemon.config import policy_files
    from riskc.engine.sim.group_replay import GroupSpec, Member

    def load(entry, scope: str):
        return _checked(policy_files(entry), scope, f"the files of {entry.label}")

    members = [Member(a.id, a.name, load(a, "account")) for a in accounts]
    specs = []
    for group in groups:
        indexes = tuple(accounts.index(a) for a in config.members(group) if a in accounts)
        specs.append(GroupSpec(group.name, load(group, "group"), indexes))
    return members, specs


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
    return replay.finish() if hasattr(replay, "finish") else replay.summary


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
        if "account" in record:  # several accounts replayed (--config)
            target = f"{record['account']} {target}".rstrip()
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
    others = getattr(summary, "other_accounts", None)
    if others:
        skipped = ", ".join(f"{account} ({count:,} messages)" for account, count in sorted(others.items()))
        console.print(
            f"[yellow]other accounts[/yellow] skipped: {skipped} (`--policy` replays the first account of the"
            " recording, `--config` the accounts it names; docs/cli.md)"
        )
    data = summary.to_json()
    extra = f", {data['backwards']:,} back in time" if data["backwards"] else ""
    if data["jumped_seconds"]:
        extra += f", {span_text(summary.jumped)} of idle recorded time jumped"
    console.print(
        f"\n[bold]{data['messages']:,}[/bold] messages, {data['events']:,} events, {data['ticks']:,} clock ticks, "
        f"{data['broker_calls']:,} broker calls, {data['malformed']:,} malformed lines skipped{extra}"
        + (f" ({data['from']} → {data['to']})" if data["from"] else "")
    )
    if data["actions"]:
        table = Table("rule", "action", "count", title="actions")
        for row in data["actions"]:
            table.add_row(row["rule"], row["action"], str(row["count"]))
        console.print(table)
    else:
        console.print("[green]no rule acted[/green]")
