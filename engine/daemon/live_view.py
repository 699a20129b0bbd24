"""The daemon's console view (rich): per account the balance and day P&L, positions with stop
coverage, active lockouts with countdowns, and the last actions with their reasons. Times are
the engine's (recorded time in the demo), shown in the policy's timezone (``engine.core.timefmt``).

It fits the terminal, 80×24 and up: every line is one screen line (a cell too long for its
column ends in ``…``, never cut without one), and the rows of each table are planned so the view
never runs past the bottom; a table with more rows than room ends in a ``… N more`` row. An empty
table says so."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich import box
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from riskc.engine.core.timefmt import human_time

if TYPE_CHECKING:
    from riskc.engine.daemon.daemon import AccountLoop, Daemon

MIN_WIDTH, MIN_HEIGHT = 80, 24
TABLE_OVERHEAD = 3  # a title line, the header line and the line under it
PANEL_OVERHEAD = 2  # the panel's top and bottom border


async def run_view(daemon: Daemon, refresh: float = 0.25) -> None:
    console = daemon.console
    with Live(_fitted(daemon), console=console, refresh_per_second=4, transient=False) as live:
        while True:
            await asyncio.sleep(refresh)
            live.update(_fitted(daemon))


def _fitted(daemon: Daemon) -> Group:
    width, height = daemon.console.size
    return render(daemon, width, height)


def render(daemon: Daemon, width: int = MIN_WIDTH, height: int = MIN_HEIGHT) -> Group:
    """The view for a terminal of ``width`` × ``height`` (at least 80×24 is planned for)."""
    width, height = max(width, MIN_WIDTH), max(height, MIN_HEIGHT)
    loops = daemon.loops or []
    share = max(MIN_HEIGHT // 2, height // max(1, len(loops)))
    return Group(*(account_panel(daemon, lp, width, share) for lp in loops))


@dataclass(frozen=True, slots=True)
class _Rows:
    positions: int
    lockouts: int
    actions: int


def plan_rows(positions: int, lockouts: int, actions: int, room: int) -> _Rows:
    """How many rows each table gets in ``room`` lines: each at least one (its content, or its
    `none` row), positions first, then lockouts, the last actions take what is left."""
    want_p, want_l, want_a = max(1, positions), max(1, lockouts), max(1, actions)
    room = max(3, room)
    p = min(want_p, room - 2)
    rest = room - p
    lo = min(want_l, rest - 1)
    return _Rows(p, lo, min(want_a, rest - lo))


def account_panel(daemon: Daemon, lp: AccountLoop, width: int = MIN_WIDTH, height: int = MIN_HEIGHT) -> Panel:
    engine = lp.engine
    book = engine.book
    title = f"riskc · {daemon.config.broker.kind}"
    if book.day is None:
        return Panel(Text("waiting for the first message…", style="dim"), title=title, width=width)
    zone, now = engine.zone, book.now
    inner = width - 4  # borders and padding
    header = _header(lp, inner)
    error = lp.activity.last_error
    extra = [Text(error, style="red", no_wrap=True, overflow="ellipsis")] if error else []
    footer = Text(_footer(lp), style="dim", no_wrap=True, overflow="ellipsis")
    room = height - PANEL_OVERHEAD - len(header) - len(extra) - 1 - 3 * TABLE_OVERHEAD
    positions = engine.position_views()
    lockouts = engine.lockouts_at(now)
    actions = list(lp.activity.actions)
    rows = plan_rows(len(positions), len(lockouts), len(actions), room)
    parts: list = [
        *header,
        positions_table(positions, rows.positions, uncovered_grace(engine.policies)),
        lockouts_table(lockouts, rows.lockouts, now, zone),
        actions_table(actions, rows.actions, now, zone),
        *extra,
        footer,
    ]
    return Panel(Group(*parts), title=title, border_style="blue", width=width)


def _header(lp: AccountLoop, inner: int) -> list[Text]:
    """One line, or two on a narrow terminal: who, the balance and the time; then the day's P&L."""
    engine = lp.engine
    book = engine.book
    realized = book.day.realized
    state = engine.trading.state
    who = Text.assemble(
        (f"{book.account.name or book.account.id}  ", "bold"),
        (f"{state}  ", _STATE_STYLE.get(state, "")),
        f"balance ${book.account.balance:,.2f}",
    )
    day = Text.assemble(
        "day P&L ", _money(realized + book.unrealized()), " (realized ", _money(realized), f", {book.day.trades} fills)"
    )
    when = Text(human_time(book.now, engine.zone), style="dim")
    if who.cell_len + day.cell_len + when.cell_len + 6 <= inner:
        return [_line(Text.assemble(who, "   ", day, "   ", when))]
    return [_line(Text.assemble(who, "   ", when)), _line(day)]


_STATE_STYLE = {"active": "green", "reducing": "yellow", "halted": "bold red"}  # the trading state


def _footer(lp: AccountLoop) -> str:
    engine = lp.engine
    return (
        f"{lp.activity.feed_messages:,} messages · {lp.activity.calls} broker calls · {engine.malformed} malformed · "
        f"{lp.activity.reloads} reloads · policy {engine.policies.digest}"
        + ("  [stale: reconciling]" if engine.stale else "")
    )


def _line(text: Text) -> Text:
    text.no_wrap, text.overflow = True, "ellipsis"
    return text


def _table(title: str, *columns: str, wide: str | None) -> Table:
    """A compact table whose cells never wrap: too long ends in `…`; ``wide`` takes the room left."""
    table = Table(
        title=title, box=box.SIMPLE_HEAD, expand=wide is not None, show_edge=False, pad_edge=False, title_justify="left"
    )
    for name in columns:
        ratio = 1 if name == wide else None
        table.add_column(name, no_wrap=True, overflow="ellipsis", ratio=ratio, min_width=None if ratio else 1)
    return table


def _more(table: Table, shown: int, total: int, what: str) -> None:
    if total > shown:
        table.add_row(Text(f"… {total - shown + 1} more {what}", style="dim"), *[""] * (len(table.columns) - 1))


def positions_table(positions: list, rows: int, grace: dt.timedelta | None) -> Table:
    table = _table("positions", "symbol", "size", "avg", "mark", "unrealized", "stops", "uncovered for", wide=None)
    shown = positions if len(positions) <= rows else positions[: rows - 1]
    for p in shown:
        covered = f"{p.stop_coverage}/{p.qty}"
        style = "green" if p.stop_coverage >= p.qty else "red"
        table.add_row(
            p.symbol,
            f"{p.size:+d}",
            str(p.avg_price),
            str(p.mark),
            _money(p.unrealized_pnl),
            Text(covered, style=style),
            _uncovered(p.uncovered_for, grace) if p.stop_coverage < p.qty else "",
        )
    _more(table, rows, len(positions), "positions")
    if not positions:
        table.add_row(Text("none (flat)", style="dim"), "", "", "", "", "", "")
    return table


def lockouts_table(lockouts: list, rows: int, now: dt.datetime, zone) -> Table:
    table = _table("lockouts", "scope", "rule", "ends", "reason", wide="reason")
    shown = lockouts if len(lockouts) <= rows else lockouts[: rows - 1]
    for lockout in shown:
        if lockout.until is not None:
            ends = f"{human_time(lockout.until, zone, today=now)} (in {_duration(lockout.until - now)})"
        else:
            ends = "manual unlock" if lockout.condition == "manual" else (lockout.condition or "")
        table.add_row(lockout.symbol or "account", lockout.rule, ends, Text(lockout.reason))
    _more(table, rows, len(lockouts), "lockouts")
    if not lockouts:
        table.add_row(Text("none", style="dim"), "", "", "")
    return table


def actions_table(actions: list, rows: int, now: dt.datetime, zone) -> Table:
    table = _table("last actions", "time", "action", "target", "rule", "reason", wide="reason")
    shown = actions if len(actions) <= rows else actions[: rows - 1]
    for record in shown:
        when = human_time(dt.datetime.fromisoformat(record["ts"]), zone, today=now) if record.get("ts") else ""
        table.add_row(
            when,
            record["action"],
            record.get("symbol") or record.get("contract_id") or record.get("state") or "",
            record["rule"],
            Text(record["reason"]),
        )
    _more(table, rows, len(actions), "actions")
    if not actions:
        table.add_row(Text("none yet", style="dim"), "", "", "", "")
    return table


def uncovered_grace(policies) -> dt.timedelta | None:
    """The grace period an uncovered position counts toward: the shortest `grace` duration of the
    rules in force that read ``p.uncovered_for`` (stop_required, max_risk_per_trade), if any."""
    from riskc.dsl import ast

    graces = []
    for program in policies.programs:
        for instance in program.rules:
            value = instance.args.get("grace")
            if isinstance(value, ast.DurationLit) and "uncovered_for" in repr(instance.rule.when):
                graces.append(dt.timedelta(seconds=value.seconds))
    return min(graces, default=None)


def _uncovered(delta: dt.timedelta, grace: dt.timedelta | None) -> str:
    return _duration(delta) if grace is None else f"{_duration(delta)} / {_duration(grace)}"


def _money(value) -> Text:
    style = "green" if value > 0 else "red" if value < 0 else ""
    sign = "-" if value < 0 else ""
    return Text(f"{sign}${abs(value):,.2f}", style=style)


def _duration(delta: dt.timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
