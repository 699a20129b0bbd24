"""``status_json(daemon)``: what the board shows, as one JSON-ready document.

Keys are named as the snapshot (PRODUCT.md §3.3) and the action records (§6.2) name them:
``balance``, ``day.realized_pnl``, ``positions`` (``stop_coverage``, ``uncovered_for``),
``lockouts``, ``trading_state``, ``actions`` (each with its ``reason``). Money is a decimal string
(exact, as in `riskc status --json`); times are ISO 8601 in UTC, plus a local text in the policy's
timezone. Countdowns are in seconds of the engine's time: recorded time in the demo, the wall
clock live.

It reads the engine between two events (the board runs on the daemon's event loop), and does no
store I/O except the staged policy edit (one small query).
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from riskc.dsl import ast
from riskc.engine.core.timefmt import human_time

if TYPE_CHECKING:
    from riskc.engine.daemon.daemon import AccountLoop, Daemon

SCHEMA_VERSION = 1
GATEWAY_REQUESTS_PER_MINUTE = 200  # PRODUCT.md §8: about 200 a minute per login


def status_json(daemon: Daemon) -> dict[str, Any]:
    return {
        "version": SCHEMA_VERSION,
        "now": _time(dt.datetime.now(dt.UTC)),
        "broker": daemon.config.broker.kind,
        "demo": bool(getattr(daemon, "demo", False)),
        "edits": daemon.config.edits,
        "accounts": [account_json(daemon, lp) for lp in daemon.loops],
        "groups": [group_json(guard) for guard in daemon.guards()],
    }


def group_json(guard: Any) -> dict[str, Any]:
    """A group as its policies see it (`group.*`, engine/enforce/group.py) with each member's
    trading state, and the group's pending policy edit if any."""
    group = guard.group()
    commitment = guard.commitment
    return {
        "name": group.name,
        "realized_pnl": _money(group.realized_pnl),
        "unrealized_pnl": _money(group.unrealized_pnl),
        "net_pnl": _money(group.net_pnl),
        "open_contracts": group.open_contracts,
        "trades": group.trades,
        "accounts": [
            {
                "id": a.id,
                "name": a.name or str(a.id or ""),
                "net_pnl": _money(a.net_pnl),
                "trading_state": a.trading_state,
            }
            for a in group.accounts
        ],
        "policy": {
            "hash": guard.policies.digest,
            "pending": commitment.pending() if commitment is not None else None,
        },
    }


def account_json(daemon: Daemon, lp: AccountLoop) -> dict[str, Any]:
    engine, book = lp.engine, lp.engine.book
    zone = engine.zone
    now = book.now if book.day is not None else dt.datetime.now(dt.UTC)
    realized = book.day.realized if book.day is not None else Decimal(0)
    unrealized = book.unrealized() if book.day is not None else Decimal(0)
    lockouts = engine.lockouts_at(now)
    return {
        "id": book.account.id,
        "name": book.account.name or str(book.account.id or ""),
        "waiting": book.day is None,  # no message from the broker yet
        "time": _time(now),
        "time_local": human_time(now, zone),
        "timezone": str(zone),
        "trading_day": book.day.trading_day.isoformat() if book.day is not None else None,
        "balance": _money(book.account.balance),
        "can_trade": bool(book.account.can_trade),
        "day": {
            "realized_pnl": _money(realized),
            "unrealized_pnl": _money(unrealized),
            "net_pnl": _money(realized + unrealized),
            "trades": book.day.trades if book.day is not None else 0,
            "high_balance": _money(book.day.high_balance) if book.day and book.day.high_balance is not None else None,
        },
        "trading_state": trading_state(engine),
        "positions": [_position(lp, view, now) for view in engine.position_views()],
        "orders": len(book.working_orders()),
        "lockouts": [_lockout(lockout, now, zone) for lockout in lockouts],
        "actions": [dict(record) for record in list(lp.activity.actions)],
        "policy": _policy(daemon, lp),
        "health": _health(daemon, lp),
        "chart": _chart(lp, book),
    }


# -- the trading state ------------------------------------------------------------------------


def trading_state(engine: Any) -> dict[str, str]:
    """The engine's trading state (``engine.trading``: active / reducing / halted) and its reason."""
    trading = engine.trading
    return {"state": str(trading.state), "reason": str(trading.reason or "")}


# -- parts ------------------------------------------------------------------------------------


def _position(lp: AccountLoop, view: Any, now: dt.datetime) -> dict[str, Any]:
    held = lp.engine.book.positions.get(view.contract_id)
    since = getattr(held, "uncovered_since", None)
    uncovered = (now - since).total_seconds() if since is not None and view.stop_coverage < view.qty else 0.0
    grace = _grace_seconds(lp)
    shown = {
        "symbol": view.symbol,
        "contract_id": view.contract_id,
        "side": view.side,
        "size": view.size,
        "qty": view.qty,
        "avg_price": str(view.avg_price),
        "mark": str(view.mark),
        "unrealized_pnl": _money(view.unrealized_pnl),
        "stop_coverage": view.stop_coverage,
        "uncovered_for": int(uncovered),
        "grace": grace,
        "grace_remaining": None,
    }
    if grace is not None and view.stop_coverage < view.qty:
        shown["grace_remaining"] = max(0, int(grace - uncovered))
    return shown


def _lockout(lockout: Any, now: dt.datetime, zone: Any) -> dict[str, Any]:
    remaining = None if lockout.until is None else max(0, int((lockout.until - now).total_seconds()))
    if lockout.until is not None:
        ends = f"until {human_time(lockout.until, zone, today=now)}"
    else:
        ends = "until manual unlock" if lockout.condition == "manual" else f"while {lockout.condition or ''}"
    return {
        "id": lockout.id,
        "scope": lockout.scope,
        "symbol": lockout.symbol,
        "rule": lockout.rule,
        "origin": lockout.origin,
        "reason": lockout.reason,
        "since": _time(lockout.since),
        "until": _time(lockout.until) if lockout.until is not None else None,
        "condition": lockout.condition,
        "remaining_seconds": remaining,
        "ends": ends,
    }


def _policy(daemon: Daemon, lp: AccountLoop) -> dict[str, Any]:
    policies = lp.engine.policies
    commitment = getattr(lp, "commitment", None)
    pending = commitment.pending() if commitment is not None else None
    return {
        "hash": policies.digest,
        "files": [{"path": path, "hash": digest} for path, digest in policies.hashes],
        "pending": pending,
        "last_error": lp.activity.last_error,
    }


def _health(daemon: Daemon, lp: AccountLoop) -> dict[str, Any]:
    """The broker connection as the board sees it: hubs up or down, the last reconciliation and
    how many enforcement calls went out in the last minute, against the Gateway's budget."""
    connection = getattr(lp, "connection", None)
    hubs = connection.health() if connection is not None and hasattr(connection, "health") else None
    last = getattr(lp.activity, "last_reconcile", None)
    return {
        "broker": daemon.config.broker.kind,
        "stale": bool(lp.engine.stale),
        "hubs": hubs,
        "last_reconcile": _time(last) if last is not None else None,
        "calls_last_minute": _calls_last_minute(lp),
        "requests_per_minute": GATEWAY_REQUESTS_PER_MINUTE,
        "messages": lp.activity.messages,
        "calls": lp.activity.calls,
        "malformed": lp.engine.malformed,
        "reloads": lp.activity.reloads,
        "reload_errors": lp.activity.reload_errors,
    }


def _calls_last_minute(lp: AccountLoop) -> int:
    times = getattr(lp.activity, "call_times", ())
    cutoff = time.monotonic() - 60
    return sum(1 for t in times if t > cutoff)


def _chart(lp: AccountLoop, book: Any) -> dict[str, Any]:
    """The day's net P&L samples and the lines a trader measures them against: the daily loss
    limit and the trailing drawdown floor, both in P&L terms (relative to the day's start)."""
    series = getattr(lp.activity, "pnl", None)
    points = [[int(when.timestamp()), _money(net)] for when, net in (series.points if series else [])]
    day = book.day
    daily_loss = _param(lp, "daily_loss", "limit")
    return {
        "points": points,
        "start": _time(day.start) if day is not None else None,
        "end": _time(day.end) if day is not None else None,
        "daily_loss": _money(-daily_loss) if daily_loss is not None else None,
        "drawdown_floor": _money(_floor_as_pnl(lp, book)),
    }


def _floor_as_pnl(lp: AccountLoop, book: Any) -> Decimal | None:
    amount = _param(lp, "trailing_drawdown", "amount")
    if amount is None or book.day is None:
        return None
    mode = _param(lp, "trailing_drawdown", "mode")
    high = book.account.high_water_balance if mode == "intraday" else book.eod_high_balance
    if high is None:
        high = book.account.balance
    floor = high - amount
    cap = _param(lp, "trailing_drawdown", "floor_stops_at")
    if cap is not None:
        floor = min(floor, cap)
    start_balance = book.account.balance - book.day.realized
    return floor - start_balance


def _grace_seconds(lp: AccountLoop) -> int | None:
    grace = _param(lp, "stop_required", "grace")
    return int(grace) if grace is not None else None


def _param(lp: AccountLoop, rule: str, name: str) -> Any:
    """A literal parameter of the first `use RULE(...)` in the account's policies: a money
    amount, a duration in seconds, or an enum's name; None when absent or not a literal."""
    for program in lp.engine.policies.programs:
        for instance in program.rules:
            if instance.name == rule and name in instance.args:
                return _literal(instance.args[name])
    return None


def _literal(node: Any) -> Any:
    if isinstance(node, ast.MoneyLit):
        return node.amount
    if isinstance(node, ast.DurationLit):
        return node.seconds
    if isinstance(node, ast.Name):
        return node.id  # an enum value: `mode: intraday`
    return getattr(node, "value", None)


# -- formatting --------------------------------------------------------------------------------


def _money(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return format(value if value.as_tuple().exponent <= -2 else value.quantize(Decimal("0.01")), "f")


def _time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat()
