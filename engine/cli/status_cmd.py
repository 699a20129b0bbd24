"""`riskc status`: what the state file says now (PRODUCT.md §5): lockouts with their countdowns,
the trading day's P&L and trades, the last known book with stop coverage, running timers and the
latest broker actions with their reasons and outcomes.

It opens the state file read-only, so it can run at any moment beside the daemon: it never takes
a write lock, never creates the file and never upgrades it.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from riskc.engine.cli.common import EXIT_FAILED, EXIT_USAGE, echo_err
from riskc.engine.cli.statefile import (
    PolicyClock,
    load_config_or_exit,
    lockout_ends,
    moment_text,
    pick_account,
    policy_clock,
    span_text,
    state_errors,
    state_options,
    state_path,
)
from riskc.engine.core.timefmt import human_time


@click.command("status")
@state_options
@click.option(
    "--day",
    "day",
    metavar="YYYY-MM-DD",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Trading day to total; default: the current one in the policy's timezone.",
)
@click.option(
    "--actions",
    "action_limit",
    default=10,
    show_default=True,
    type=click.IntRange(0, 1000),
    help="How many recent broker actions to show.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option(
    "--desk", "desk", is_flag=True, help="A PostgreSQL desk: which worker holds which account, lease ages, unheld ones."
)
def command(
    config_path: str | None,
    state: Path | str | None,
    account: str | None,
    day: dt.datetime | None,
    action_limit: int,
    as_json: bool,
    desk: bool,
) -> None:
    """Lockouts, day P&L, positions and stop coverage, timers and recent actions, from the state
    file (safe to run while the daemon runs)."""
    from riskc.engine.store import StateFileError, Store, StoreError

    config = load_config_or_exit(config_path)
    path = state_path(config, state)
    try:
        store = Store.open_readonly(path)
    except StateFileError as error:
        echo_err(f"riskc status: {error}")
        raise SystemExit(EXIT_USAGE) from None
    except StoreError as error:
        hint = (
            ""
            if isinstance(path, str) or path.is_file()
            else " (has `riskc run` run with this config? --config and --state choose the file)"
        )
        echo_err(f"riskc status: {error}{hint}")
        raise SystemExit(EXIT_FAILED) from None
    if desk:
        with state_errors("status", path, "nothing was shown"), store:
            _print_desk(store, path, config, as_json)
        return
    with state_errors("status", path, "nothing was shown"), store:
        ids = store.account_ids()
        if account is not None:
            ids = [pick_account(ids, config, account)]
        if not ids:
            echo_err(f"riskc status: {path} holds no account state yet (has the daemon seen an account?)")
            raise SystemExit(EXIT_FAILED)
        now = dt.datetime.now(dt.UTC)
        document = _document(store, path, config, ids, now, day.date() if day else None, action_limit)
    if as_json:
        click.echo(json.dumps(document, indent=2, ensure_ascii=False, default=_json_default))
    else:
        _print(document, now)


# -- the desk ------------------------------------------------------------------------------------


def _print_desk(store: Any, path: Path | str, config: Any, as_json: bool) -> None:
    """Who holds what on a PostgreSQL desk. An account is *unheld* when no live worker session
    holds its lock: never leased, or its worker gone and nobody has taken it yet."""
    from riskc.engine.store.desk import leases

    if not store.is_pg:
        echo_err(f"riskc status --desk: {path} is a state file, not a PostgreSQL desk (one daemon holds it all)")
        raise SystemExit(EXIT_USAGE)
    rows = leases(store.db)
    known = {row.account_id for row in rows}
    configured = {a.id for a in config.accounts if a.id is not None}
    never = sorted((configured | set(store.account_ids())) - known)
    document = {
        "state": str(path),
        "leases": [
            {
                "account": row.account_id,
                "worker": row.worker,
                "epoch": row.epoch,
                "held": row.held,
                "lease_age_s": round(row.age_s, 1),
            }
            for row in rows
        ],
        "unheld": sorted([row.account_id for row in rows if not row.held] + never),
    }
    if as_json:
        click.echo(json.dumps(document, indent=2))
        return
    workers: dict[str, int] = {}
    for row in rows:
        if row.held:
            workers[row.worker] = workers.get(row.worker, 0) + 1
    click.echo(f"desk {path}: {len(workers)} worker(s), {sum(workers.values())} account(s) held")
    for row in rows:
        held = "held" if row.held else "UNHELD (lease lapsed)"
        click.echo(
            f"  {row.account_id:>12}  {row.worker:<28} epoch {row.epoch:<4} renewed {row.age_s:6.1f} s ago  {held}"
        )
    for account_id in never:
        click.echo(f"  {account_id:>12}  {'-':<28} never leased: UNHELD")


# -- gathering -----------------------------------------------------------------------------------


def _document(
    store: Any, path: Path, config: Any, ids: list[int], now: dt.datetime, day: dt.date | None, action_limit: int
) -> dict[str, Any]:
    head = store.audit_head()
    accounts = [_account(store, config, account_id, now, day, action_limit) for account_id in ids]
    return {
        "state": str(path),
        "now": now,
        "daemon": _daemon(store, policy_clock(config, ids[0]).zone, now),
        "pending": _pending(store),
        "policies": [
            {"path": p.path, "hash": p.content_hash, "loaded_at": p.loaded_at} for p in store.current_policies()
        ],
        "audit_head": {"seq": head[0], "hash": head[1]} if head else None,
        "accounts": accounts,
        "groups": _groups(config, accounts),
    }


def _groups(config: Any, accounts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each account group of the config (`groups:`) from its members' documents: the day's
    realized P&L summed (what `group.realized_pnl` counts; open P&L is only known live, on the
    board) and each member's trading state."""
    if config is None:
        return []
    by_id = {account["id"]: account for account in accounts}
    groups = []
    for group in config.groups:
        members = [by_id[a.id] for a in config.members(group) if a.id in by_id]
        groups.append(
            {
                "name": group.name,
                "realized_pnl": sum((m["day"]["realized_pnl"] for m in members), Decimal(0)),
                "accounts": [{"id": m["id"], "trading_state": m["trading_state"]["state"]} for m in members],
            }
        )
    return groups


def _account(
    store: Any, config: Any, account_id: int, now: dt.datetime, day: dt.date | None, action_limit: int
) -> dict[str, Any]:
    clock = policy_clock(config, account_id)
    trading_day, chosen = _day_to_show(store, account_id, clock, now, day)
    totals = store.day_totals(account_id, trading_day)
    balance = store.day_balance(account_id, trading_day)
    book = store.load_book(account_id)
    # The day the daemon last saw the account: not today's after a stop or for a replayed session.
    last_seen_day = _trading_day(clock, book.ts) if book is not None else None
    from riskc.engine.enforce.trading_state import state_of  # here, not at the top: `riskc check` loads this module

    active = store.active_lockouts(account_id, now)

    state, why = state_of(active)
    return {
        "id": account_id,
        "timezone": clock.timezone,
        "clock_from": clock.source,
        "trading_state": {"state": str(state), "reason": why},
        "lockouts": [_lockout(lock, now, clock) for lock in active],
        "day": {
            "trading_day": trading_day,
            "chosen": chosen,
            "today": _trading_day(clock, now),
            "lockouts": [
                _lockout(lock, now, clock) for lock in _lockouts_of_day(store, account_id, clock, trading_day)
            ],
            "realized_pnl": totals.realized_pnl,
            "gross_pnl": totals.gross_pnl,
            "fees": totals.fees,
            "trades": totals.trade_count,
            "balance": balance.last_balance if balance else None,
            "high_balance": balance.high_water if balance else None,
            "last_seen_trading_day": last_seen_day,
        },
        "book": _book(book),
        "timers": [_timer(timer, now) for timer in store.timers(account_id)],
        "recent_actions": [_action(record) for record in store.recent_actions(account_id, action_limit)],
    }


def _daemon(store: Any, zone: ZoneInfo, now: dt.datetime) -> dict[str, Any]:
    """Whether a daemon is alive on this state file, from its heartbeat row (PRODUCT.md §9):
    ``daemon alive (2 s ago)``, or ``no daemon since 09:41 CST`` with why it is thought gone."""
    import socket

    from riskc.engine.store import heartbeat

    beat = heartbeat.read(store)
    if beat is None:
        text = "no daemon has run on this state file yet"
        return {"alive": False, "last_beat": None, "pid": None, "host": None, "text": text}
    gone = None
    if beat.stopped_at is not None:
        gone = "stopped"
    elif beat.host == socket.gethostname() and not _pid_alive(beat.pid):
        gone = f"process {beat.pid} is gone"
    elif not beat.is_fresh(now):
        gone = f"no heartbeat for {span_text(now - beat.beat_at)}"
    since = human_time(beat.beat_at, zone, today=now)
    seconds = max(0, int((now - beat.beat_at).total_seconds()))
    text = f"daemon alive ({seconds} s ago)" if gone is None else f"no daemon since {since} ({gone})"
    return {"alive": gone is None, "last_beat": beat.beat_at, "pid": beat.pid, "host": beat.host, "text": text}


def _pending(store: Any) -> list[dict[str, Any]]:
    """Policy edits staged by ``edits: next_trading_day``, and when each takes effect."""
    from riskc.engine.store import policy_sets

    return [
        {"account": row.account, "hash": row.digest, "staged_at": row.since, "activates_at": row.activates_at}
        | {"apply_now": row.apply_now, "files": [path for path, _ in row.sources]}
        for row in policy_sets.staged(store)
    ]


def _pid_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, but not ours to signal
    return True


def _day_to_show(
    store: Any, account_id: int, clock: PolicyClock, now: dt.datetime, given: dt.date | None
) -> tuple[dt.date, str]:
    """The trading day to total, and why: the one asked for (``given``); today's when it has
    activity, or when nothing later than it does; else the latest trading day with activity (after
    the demo or a replay, or a day off), so that `status` shows what happened, saying which day."""
    if given is not None:
        return given, "given"
    today = _trading_day(clock, now)
    latest = store.latest_trading_day(account_id)
    if latest is None or latest >= today:
        return today, "today"
    return latest, "latest_with_activity"


def _lockouts_of_day(store: Any, account_id: int, clock: PolicyClock, trading_day: dt.date) -> list[Any]:
    from riskc.engine.core.calendar import TradingCalendar

    calendar = TradingCalendar(clock.timezone, clock.day_starts)
    try:
        start, end = calendar.day_start(trading_day), calendar.day_end(trading_day)
    except ValueError:  # not a trading day (a weekend, a holiday): nothing was locked on it
        return []
    return store.lockouts_set_between(account_id, start, end)


def _trading_day(clock: PolicyClock, now: dt.datetime) -> dt.date:
    from riskc.engine.core.calendar import TradingCalendar

    return TradingCalendar(clock.timezone, clock.day_starts).trading_day(now)


def _lockout(lock: Any, now: dt.datetime, clock: PolicyClock) -> dict[str, Any]:
    return {
        "id": lock.id,
        "scope": lock.scope,
        "symbol": lock.symbol,
        "rule": lock.rule,
        "origin": lock.origin,
        "reason": lock.reason,
        "since": lock.since,
        "until": lock.until,
        "condition": lock.condition,
        "remaining_seconds": None if lock.until is None else int((lock.until - now).total_seconds()),
        "ends": lockout_ends(lock, clock.zone, now),
    }


def _book(book: Any) -> dict[str, Any] | None:
    """The last book the daemon saved, with each position's stop coverage worked out from the
    saved working orders by the same code the rules use (``engine.views``)."""
    if book is None:
        return None
    try:
        positions, orders = json.loads(book.positions_json), json.loads(book.orders_json)
    except ValueError:
        return {"ts": book.ts, "positions": [], "orders": [], "unreadable": True}
    positions = [p for p in positions if isinstance(p, dict)] if isinstance(positions, list) else []
    orders = [o for o in orders if isinstance(o, dict)] if isinstance(orders, list) else []
    working = _orders(orders)
    return {"ts": book.ts, "positions": [_position(p, working) for p in positions], "orders": orders}


def _orders(orders: list[dict[str, Any]]) -> list[Any]:
    from riskc.engine.core.snapshot import Order

    working = []
    for o in orders:
        try:
            stop = o.get("stop_price")
            working.append(
                Order(
                    id=int(o.get("id") or 0),
                    contract_id=str(o.get("contract_id", "")),
                    type=str(o.get("type", "")),
                    side=str(o.get("side", "")),
                    size=int(o.get("size") or 0),
                    stop_price=None if stop is None else Decimal(str(stop)),
                )
            )
        except (TypeError, ValueError, ArithmeticError):
            continue
    return working


def _position(position: dict[str, Any], working: list[Any]) -> dict[str, Any]:
    from riskc.engine.core.instruments import symbol_of
    from riskc.engine.core.views import stop_coverage

    shown = dict(position)
    contract_id, size = str(position.get("contract_id", "")), position.get("size")
    if isinstance(size, int) and contract_id:
        shown.setdefault("symbol", symbol_of(contract_id))
        shown.setdefault("side", "long" if size > 0 else "short")
        shown.setdefault("qty", abs(size))
        shown.setdefault("stop_coverage", stop_coverage(contract_id, size, working))
    return shown


def _timer(timer: Any, now: dt.datetime) -> dict[str, Any]:
    return {
        "key": timer.key,
        "started_at": timer.started_at,
        "expires_at": timer.expires_at,
        "running_for_seconds": int((now - timer.started_at).total_seconds()),
        "expired": timer.is_expired(now),
        "payload": dict(timer.payload),
    }


def _action(record: Any) -> dict[str, Any]:
    action = dict(record.action)
    return {
        "key": record.key,
        "rule": record.rule,
        "action": action.get("action"),
        "target": _target(action),
        "reason": action.get("reason"),
        "state": record.state,
        "attempts": record.attempts,
        "planned_at": record.planned_at,
        "finished_at": record.finished_at,
        "error": record.error,
        "result": None if record.result is None else dict(record.result),
    }


def _target(action: dict[str, Any]) -> str:
    return str(action.get("symbol") or action.get("contract_id") or "account")


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):  # money, exact: at least cents, more if the broker gave more
        return format(value if value.as_tuple().exponent <= -2 else value.quantize(Decimal("0.01")), "f")
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot show {type(value).__name__} as JSON")


# -- printing --------------------------------------------------------------------------------------


def _money(value: Decimal | None) -> str:
    if value is None:
        return "—"
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def _print(document: dict[str, Any], now: dt.datetime) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)
    console.print(f"[dim]state {escape(document['state'])}[/dim]")
    daemon = document["daemon"]
    console.print(f"[{'green' if daemon['alive'] else 'bold red'}]{escape(daemon['text'])}[/]")
    zone = ZoneInfo(document["accounts"][0]["timezone"]) if document["accounts"] else dt.UTC
    for edit in document["pending"]:
        when = "as soon as the daemon ticks" if edit["apply_now"] else moment_text(edit["activates_at"], zone, now)
        console.print(
            f"[yellow]policy edit pending[/yellow] for {escape(edit['account'])}: {edit['hash']}, active from {when}"
            f" [dim](staged {moment_text(edit['staged_at'], zone, now)}; `riskc reload --now` applies it at once)[/dim]"
        )
    for account in document["accounts"]:
        zone = ZoneInfo(account["timezone"])
        console.print(f"\n[bold]Account {account['id']}[/bold]  [dim]({escape(account['timezone'])})[/dim]")
        _print_state(console, account["trading_state"])
        _print_lockouts(console, account["lockouts"])
        _print_day(console, account["day"], zone, now)
        _print_book(console, account["book"], zone, now)
        _print_timers(console, account["timers"], now)
        _print_actions(console, account["recent_actions"], zone)
    for group in document.get("groups", []):
        states = ", ".join(f"{a['id']} {a['trading_state']}" for a in group["accounts"])
        console.print(
            f"\n[bold]Group {escape(group['name'])}[/bold]  realized today {_money(group['realized_pnl'])}"
            f"  [dim]({escape(states)})[/dim]"
        )
    if document["audit_head"]:
        head = document["audit_head"]
        console.print(f"\n[dim]audit log: {head['seq']} records, head {head['hash'][:16]}…[/dim]")


def _print_state(console: Any, trading: dict[str, str]) -> None:
    from rich.markup import escape

    style = {"active": "green", "reducing": "yellow", "halted": "bold red"}.get(trading["state"], "")
    console.print(f"  trading state: [{style}]{trading['state']}[/{style}]  [dim]{escape(trading['reason'])}[/dim]")


def _print_lockouts(console: Any, lockouts: list[dict[str, Any]]) -> None:
    from rich.markup import escape

    if not lockouts:
        console.print("  [green]not locked out[/green]")
        return
    for lock in lockouts:
        what = f"{lock['symbol']} only" if lock["symbol"] else "whole account"
        origin = "personal" if lock["origin"] == "personal" else lock["rule"]
        console.print(f"  [bold red]LOCKED[/bold red] #{lock['id']} {what} ({escape(origin)}): {escape(lock['ends'])}")
        console.print(f"      [dim]{escape(lock['reason'])}[/dim]")


def _print_day(console: Any, day: dict[str, Any], zone: Any, now: dt.datetime) -> None:
    from rich.markup import escape

    realized = day["realized_pnl"]
    color = "red" if realized < 0 else "green"
    which = ""
    if day["chosen"] == "latest_with_activity":
        which = f", the latest trading day with activity (none on today's, {day['today']}; any day: --day YYYY-MM-DD)"
    line = (
        f"  day {day['trading_day']}{which}: realized [{color}]{_money(realized)}[/{color}]"
        f" (gross {_money(day['gross_pnl'])}, fees {_money(day['fees'])}), {day['trades']} trade(s)"
    )
    if day["balance"] is not None:
        line += f"; balance {_money(day['balance'])}, high {_money(day['high_balance'])}"
    console.print(line)
    ended = [
        lock for lock in day["lockouts"] if lock["remaining_seconds"] is not None and lock["remaining_seconds"] <= 0
    ]
    for lock in ended:
        what = f"{lock['symbol']} only" if lock["symbol"] else "whole account"
        console.print(
            f"    [dim]locked out {human_time(lock['since'], zone)} – {human_time(lock['until'], zone)}"
            f" ({what}, {escape(lock['rule'])}; over)[/dim]"
        )
    last_seen = day["last_seen_trading_day"]
    if last_seen is not None and last_seen != day["trading_day"]:
        console.print(
            f"  [dim]the daemon last saw this account on trading day {last_seen}: riskc status --day {last_seen}[/dim]"
        )


def _print_book(console: Any, book: dict[str, Any] | None, zone: Any, now: dt.datetime) -> None:
    if book is None:
        console.print("  no book saved yet")
        return
    age = span_text(now - book["ts"])
    if not book["positions"]:
        console.print(f"  flat  [dim](book as of {moment_text(book['ts'], zone, now)}, {age} ago)[/dim]")
    else:
        console.print(f"  positions [dim](book as of {moment_text(book['ts'], zone, now)}, {age} ago)[/dim]")
    for p in book["positions"]:
        coverage = p.get("stop_coverage")
        qty = p.get("qty", abs(p.get("size") or 0))
        stop = (
            ""
            if coverage is None
            else (
                f"  [green]stops {coverage}/{qty}[/green]"
                if coverage >= qty
                else f"  [red]stops {coverage}/{qty}[/red]"
            )
        )
        console.print(
            f"    {p.get('symbol', p.get('contract_id', '?'))} {p.get('side', '')} {qty}"
            f" @ {p.get('avg_price', '?')}{stop}"
        )
    if book["orders"]:
        console.print(f"    {len(book['orders'])} working order(s)")


def _print_timers(console: Any, timers: list[dict[str, Any]], now: dt.datetime) -> None:
    from rich.markup import escape

    for timer in timers:
        running = span_text(dt.timedelta(seconds=timer["running_for_seconds"]))
        ends = ""
        if timer["expires_at"] is not None:
            ends = ", expired" if timer["expired"] else f", ends in {span_text(timer['expires_at'] - now)}"
        console.print(f"  timer {escape(timer['key'])}: running {running}{ends}")


def _print_actions(console: Any, actions: list[dict[str, Any]], zone: Any) -> None:
    from rich.markup import escape

    if not actions:
        return
    console.print("  recent actions:")
    for a in actions:
        when = human_time(a["planned_at"], zone)
        outcome = a["state"] + (f" ({a['error']})" if a["error"] else "")
        color = {"confirmed": "green", "failed": "red"}.get(a["state"], "yellow")
        console.print(
            f"    {when} {escape(a['rule'])}: {a['action']} {escape(a['target'])}"
            f" → [{color}]{escape(outcome)}[/{color}]"
        )
        if a["reason"]:
            console.print(f"      [dim]{escape(str(a['reason']))}[/dim]")
