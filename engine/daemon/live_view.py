"""The daemon's console view (rich): per account the balance and day P&L, positions with stop
coverage, active lockouts with countdowns, and the last actions with their reasons. Times are
the engine's (recorded time in the demo), shown in the policy's timezone."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING

from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from riskc.engine.daemon.daemon import AccountLoop, Daemon


async def run_view(daemon: Daemon, refresh: float = 0.25) -> None:
    with Live(render(daemon), console=daemon.console, refresh_per_second=4, transient=False) as live:
        while True:
            await asyncio.sleep(refresh)
            live.update(render(daemon))


def render(daemon: Daemon) -> Group:
    return Group(*(account_panel(daemon, lp) for lp in daemon.loops))


def account_panel(daemon: Daemon, lp: AccountLoop) -> Panel:
    engine = lp.engine
    book = engine.book
    if book.day is None:
        return Panel(Text("waiting for the first message…", style="dim"), title="riskc")
    zone = engine.zone
    now = book.now
    realized = book.day.realized
    header = Text.assemble(
        (f"{book.account.name or book.account.id}  ", "bold"),
        f"balance ${book.account.balance:,.2f}   day P&L ",
        _money(realized + book.unrealized()),
        " (realized ",
        _money(realized),
        f", {book.day.trades} fills)   ",
        (now.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z"), "dim"),
    )
    parts: list = [header, positions_table(lp), lockouts_table(lp, now, zone), actions_table(lp, zone)]
    if lp.activity.last_error:
        parts.append(Text(lp.activity.last_error, style="red"))
    footer = (
        f"{lp.activity.messages:,} messages · {lp.activity.calls} broker calls · {engine.malformed} malformed · "
        f"{lp.activity.reloads} reloads · policy {engine.policies.digest}"
        + ("  [stale: reconciling]" if engine.stale else "")
    )
    parts.append(Text(footer, style="dim"))
    return Panel(Group(*parts), title=f"riskc · {daemon.config.broker.kind}", border_style="blue")


def positions_table(lp: AccountLoop) -> Table:
    table = Table(
        "symbol", "size", "avg", "mark", "unrealized", "stops", "uncovered for", title="positions", expand=True
    )
    for p in lp.engine.book.position_views():
        covered = f"{p.stop_coverage}/{p.qty}"
        style = "green" if p.stop_coverage >= p.qty else "red"
        table.add_row(
            p.symbol,
            f"{p.size:+d}",
            str(p.avg_price),
            str(p.mark),
            _money(p.unrealized_pnl),
            Text(covered, style=style),
            _duration(p.uncovered_for) if p.stop_coverage < p.qty else "",
        )
    if not table.rows:
        table.add_row("flat", "", "", "", "", "", "")
    return table


def lockouts_table(lp: AccountLoop, now: dt.datetime, zone) -> Table:
    table = Table("scope", "rule", "ends", "reason", title="lockouts", expand=True)
    for lockout in lp.engine.lockouts_at(now):
        if lockout.until is not None:
            ends = f"{lockout.until.astimezone(zone):%H:%M %Z} (in {_duration(lockout.until - now)})"
        else:
            ends = "manual unlock" if lockout.condition == "manual" else (lockout.condition or "")
        table.add_row(lockout.symbol or "account", lockout.rule, ends, Text(lockout.reason[:90]))
    if not table.rows:
        table.add_row("none", "", "", "")
    return table


def actions_table(lp: AccountLoop, zone) -> Table:
    table = Table("time", "action", "target", "rule", "reason", title="last actions", expand=True)
    for record in list(lp.activity.actions)[:8]:
        when = dt.datetime.fromisoformat(record["ts"]).astimezone(zone).strftime("%H:%M:%S") if record.get("ts") else ""
        table.add_row(
            when,
            record["action"],
            record.get("symbol") or record.get("contract_id") or "",
            record["rule"],
            Text(record["reason"][:110]),
        )
    return table


def _money(value) -> Text:
    style = "green" if value > 0 else "red" if value < 0 else ""
    sign = "-" if value < 0 else ""
    return Text(f"{sign}${abs(value):,.2f}", style=style)


def _duration(delta: dt.timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
