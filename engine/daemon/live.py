"""The live account loop: the ProjectX connection as the feed, ``ProjectXBroker`` (or the dry-run
wrapper around it) as the port, the wall clock, and reconciliation from REST at start, after
every reconnect and every ``reconcile_every``. While a hub is down the engine is marked stale and
rules do not act; the reconnect's reconciliation makes it fresh again."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from riskc.engine.adapters.dryrun import DryRunBroker
from riskc.engine.adapters.port import BrokerError
from riskc.engine.adapters.projectx.intake import Message
from riskc.engine.daemon.daemon import AccountLoop, Reconcile, wall_clock_feed

if TYPE_CHECKING:
    from riskc.engine.daemon.config import AccountConfig, Credentials
    from riskc.engine.daemon.daemon import Daemon
    from riskc.engine.runner import PolicySet

log = logging.getLogger("riskc.live")


async def live_loop(
    daemon: Daemon, account: AccountConfig, policies: PolicySet, paths: list, credentials: Credentials
) -> AccountLoop:
    from riskc.engine.adapters.projectx import sdk as px

    px.quiet_sdk_logging()
    broker = daemon.config.broker
    defaults = px.GatewayUrls()
    urls = px.GatewayUrls(
        broker.api_url or defaults.api_url,
        broker.user_hub_url or defaults.user_hub_url,
        broker.market_hub_url or defaults.market_hub_url,
    )
    holder: dict[str, AccountLoop] = {}
    early: list[Any] = []

    async def sink(item: Any) -> None:
        lp = holder.get("loop")
        if lp is None:
            early.append(item)
        else:
            await _route(lp, item)

    creds = px.Credentials(credentials.username, credentials.api_key, credentials.account_name)
    connection = await px.connect(creds, urls, account.name or credentials.account_name, sink=sink)
    port = connection.broker if broker.kind == "projectx" else DryRunBroker(reads_from=connection.broker)
    port.aclose = connection.close  # the daemon closes the port at shutdown
    lp = AccountLoop(daemon, policies, paths, port, wall_clock_feed(_supervise(connection)), connection.account_id)
    lp.engine.book.account.name = connection.account.get("name", "")
    lp.connection = connection
    holder["loop"] = lp
    for item in early:
        await _route(lp, item)
    await _reconcile(lp, connection)
    return lp


async def _route(lp: AccountLoop, item: Any) -> None:
    if type(item) is Message:
        await lp.queue.put(item)
        return
    if item.state == "disconnected":
        lp.engine.stale = True
        lp.daemon.alerts.alert(
            "high",
            f"{item.hub} hub disconnected ({item.detail}); rules paused until reconciled",
            account=lp.engine.book.account.id,
        )
    else:
        await _reconcile(lp, None)


async def _reconcile(lp: AccountLoop, connection: Any) -> None:
    """Read the broker's state (positions, orders, today's trades, balance) and queue it."""
    port = lp.port.reads_from if isinstance(lp.port, DryRunBroker) else lp.port
    book = lp.engine.book
    now = dt.datetime.now(dt.UTC)
    start = lp.engine.calendar.day_start(lp.engine.calendar.trading_day(now))
    try:
        state = await port.state(book.account.id, trades_since=start)
    except BrokerError as error:
        lp.engine.stale = True
        lp.daemon.alerts.alert("high", f"reconciliation failed, rules paused: {error}", account=book.account.id)
        return
    await lp.queue.put(Reconcile(state, now))


def _supervise(connection: Any):
    """The feed: the connection pushes messages itself; this reconciles every N seconds."""

    async def feed(lp: AccountLoop) -> None:
        every = lp.daemon.config.reconcile_every.total_seconds()
        while True:
            await asyncio.sleep(every)
            await _reconcile(lp, connection)

    return feed
