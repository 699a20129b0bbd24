"""The live account loop: the ProjectX connection as the feed, ``ProjectXBroker`` (or the dry-run
wrapper around it) as the port, the wall clock, and reconciliation from REST at start, after
every reconnect and every ``reconcile_every``. While the user hub is down the engine is marked
stale and rules do not act; the reconnect's reconciliation makes it fresh again. While the market
hub is down, REST keeps sizes, orders and realized P&L current, and rules that read prices become
unevaluable (their ``on_error``) once the last price is older than ``stale_after``.

Instrument specs come from the broker (``instrument_source``): every contract of the first
reconciliation, and every contract a later message or reconciliation names for the first time,
is looked up before that message reaches the engine, so no rule sees the position unpriced."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from riskc.engine.adapters.dryrun import DryRunBroker
from riskc.engine.adapters.port import BrokerError
from riskc.engine.adapters.projectx.decode import DECODE_ERRORS, decode
from riskc.engine.adapters.projectx.intake import Message
from riskc.engine.daemon.daemon import AccountLoop, Reconcile, wall_clock_feed
from riskc.engine.daemon.instrument_source import InstrumentSource, account_instruments
from riskc.engine.daemon.items import Learned

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
    connection = await _connect(
        daemon, lambda: px.connect(creds, urls, account.name or credentials.account_name, sink=sink)
    )
    port = connection.broker if broker.kind == "projectx" else DryRunBroker(reads_from=connection.broker)
    port.aclose = connection.close  # the daemon closes the port at shutdown
    instruments = account_instruments(daemon.config.instrument_overrides(), daemon.store)
    lp = AccountLoop(
        daemon,
        policies,
        paths,
        port,
        wall_clock_feed(_supervise(connection)),
        connection.account_id,
        instruments=instruments,
    )
    lp.specs = InstrumentSource(instruments, daemon.store, connection.broker.contract)
    lp.engine.stale_after = daemon.config.stale_after
    lp.engine.book.account.name = connection.account.get("name", "")
    lp.connection = connection
    holder["loop"] = lp
    for item in early:
        await _route(lp, item)
    await _reconcile(lp, connection)
    return lp


class StoppedWhileConnecting(Exception):
    """SIGTERM/SIGINT arrived before the Gateway could be reached: nothing ran, nothing to save."""


CONNECT_BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # seconds between attempts, the last repeated


async def _connect(daemon: Daemon, attempt: Any, backoff: tuple[float, ...] = CONNECT_BACKOFF) -> Any:
    """Connect, retrying with backoff while the failure may pass (the Gateway unreachable, its hubs
    not up, a timeout); each failure is one line on the console and in the log. A permanent one (a
    refused login, no such account) is raised at once: `riskc run` prints it and exits 1."""
    from riskc.engine.adapters.projectx.sdk import ConnectError

    failures = 0
    while True:
        try:
            return await attempt()
        except ConnectError as error:
            if error.permanent:
                raise
            delay = backoff[min(failures, len(backoff) - 1)]
            failures += 1
            line = f"cannot connect to the broker (attempt {failures}): {error}; retrying in {delay:g}s"
            log.warning("%s", line)
            daemon.alerts.alert("high", line)
            daemon.log_record({"kind": "daemon", "event": "connect_failed", "attempt": failures, "detail": str(error)})
            try:
                await asyncio.wait_for(daemon.stopping.wait(), delay)
            except TimeoutError:
                continue
            raise StoppedWhileConnecting(f"stopped after {failures} failed attempt(s) to connect: {error}") from None


async def _route(lp: AccountLoop, item: Any) -> None:
    if type(item) is Message:
        if item.hub == "user":
            await _learn(lp, _contracts(item))
        await lp.queue.put(item)
        return
    engine = lp.engine
    if item.state == "disconnected":
        if item.hub == "market":
            # Positions, orders and fills still arrive (user hub, REST): only prices stop. Rules
            # that read prices become unevaluable after stale_after (engine/enforce/stale_prices.py).
            if engine.prices_down_at is None:
                engine.prices_down_at = item.ts
            what = f"rules that read prices are not evaluated after {engine.stale_after.total_seconds():g}s"
        else:
            engine.stale = True
            what = "rules paused until reconciled"
        lp.daemon.alerts.alert(
            "high", f"{item.hub} hub disconnected ({item.detail}); {what}", account=engine.book.account.id
        )
    else:
        await _reconcile(lp, None)
        if item.hub == "market":
            engine.prices_down_at = None


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
    await _learn(lp, [item.contract_id for item in (*state.positions, *state.orders, *state.trades)])
    gone = await _confirm_gone(lp, port, state)
    await lp.queue.put(Reconcile(state, now, gone))


async def _confirm_gone(lp: AccountLoop, port: Any, state: Any) -> frozenset:
    """The orders the book holds that the broker no longer lists, confirmed by a second read: a
    stop placed while the first read ran is in the second, so it is never recorded gone for good.
    (Orders the book learns after this are not candidates at all.) An unreadable second read
    confirms nothing: the next reconciliation will."""
    listed = {o.order_id for o in state.orders}
    missing = {order_id for order_id in lp.engine.book.orders if order_id not in listed}
    if not missing:
        return frozenset()
    try:
        again = await port.state(lp.engine.book.account.id)
    except BrokerError as error:
        log.info("confirming %d missing order(s): %s", len(missing), error)
        return frozenset()
    return frozenset(missing - {o.order_id for o in again.orders})


def _contracts(message: Message) -> list[str]:
    try:
        return [c for event in decode(message) if isinstance(c := getattr(event, "contract_id", None), str)]
    except DECODE_ERRORS:
        return []  # the consumer reports it as malformed


async def _learn(lp: AccountLoop, contract_ids: list[str]) -> None:
    """Specs of contracts seen for the first time, from the broker, before the engine sees them."""
    specs = getattr(lp, "specs", None)
    if specs is None or not contract_ids:
        return
    learned = await specs.ensure(contract_ids)
    if learned:
        await lp.queue.put(Learned(tuple(spec.symbol for spec in learned)))


def _supervise(connection: Any):
    """The feed: the connection pushes messages itself; this reconciles every N seconds."""

    async def feed(lp: AccountLoop) -> None:
        every = lp.daemon.config.reconcile_every.total_seconds()
        while True:
            await asyncio.sleep(every)
            await _reconcile(lp, connection)

    return feed
