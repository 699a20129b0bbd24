"""The live account loops: one ProjectX connection per login as the feed of all its accounts
(``login_loops``: one login, one user hub, one market hub, one rate limit), each account's
``ProjectXBroker`` (or the dry-run wrapper around it) as its port, the wall clock, and
reconciliation from REST at start, after every reconnect or fresh login, and every
``reconcile_every``. While the user hub is down the engine is marked
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
from collections.abc import Callable
from functools import partial
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


async def login_loops(
    daemon: Daemon,
    entries: list[AccountConfig],
    credentials: Credentials,
    policies_for: Callable[[AccountConfig], tuple[PolicySet, list, Any]],
) -> list[AccountLoop]:
    """The loops of every account one login serves (``entries``: the config's accounts of that
    login; an ``all: true`` entry stands for each other account the login lists that can trade),
    over ONE connection: one login, one token, one user hub, one market hub, one rate limit.
    ``policies_for(account)`` gives an account's (policies, paths, commitment)."""
    from riskc.engine.adapters.projectx import sdk as px

    px.quiet_sdk_logging()
    broker = daemon.config.broker
    defaults = px.GatewayUrls()
    urls = px.GatewayUrls(
        broker.api_url or defaults.api_url,
        broker.user_hub_url or defaults.user_hub_url,
        broker.market_hub_url or defaults.market_hub_url,
    )
    listed = [entry for entry in entries if not entry.all]
    every = next((entry for entry in entries if entry.all), None)
    wanted = px.AccountsWanted(
        tuple(
            px.AccountWanted(e.id, e.name if e.name or e.id is not None else credentials.account_name) for e in listed
        ),
        every=every is not None,
    )
    creds = px.Credentials(credentials.username, credentials.api_key, credentials.account_name, credentials.source)
    connection = await _connect(daemon, lambda: px.connect_login(creds, urls, wanted, read_contracts=False))
    loops = []
    discover = None if every is None else partial(_discover, daemon, connection, every, policies_for)
    for i, (account_id, found) in enumerate(connection.accounts.items()):
        # select_accounts keeps the listed entries' order, then the accounts `all` adds.
        entry = listed[i] if i < len(listed) else _every(every, account_id, found)
        policies, paths, commitment = policies_for(entry)
        lp = _account_loop(daemon, connection, account_id, policies, paths)
        lp.commitment = commitment
        lp.discover = discover
        lp.entry = entry  # the config entry it guards (groups name entries)
        loops.append(lp)
    return loops


async def _discover(
    daemon: Daemon,
    connection: Any,
    every: AccountConfig,
    policies_for: Callable[[AccountConfig], tuple[PolicySet, list, Any]],
) -> None:
    """``accounts: all``: an account the login lists now that it did not list at start (a new
    Combine) and that can trade is guarded from the reconciliation that saw it on, as if it had
    been there at start (its loop, its policies, its subscriptions on the login's one hub)."""
    for found in connection.unguarded():
        entry = _every(every, found["id"], found)
        try:
            policies, paths, commitment = policies_for(entry)
        except Exception as error:  # the policy files no longer check: say so (once), guard the others
            connection.ignored.add(found["id"])
            text = f"new account {entry.label} is NOT guarded (until riskc restarts): its policies: {error}"
            daemon.alerts.alert("critical", text, account=found["id"])
            continue
        account_id = connection.add_account(found)
        lp = _account_loop(daemon, connection, account_id, policies, paths)
        lp.commitment = commitment
        lp.discover = partial(_discover, daemon, connection, every, policies_for)
        for path, digest in policies.hashes:
            daemon.store.record_policy(path, digest, dt.datetime.now(dt.UTC))
        daemon.add_loop(lp)  # its feed reconciles it first
        daemon.alerts.alert("info", f"new account {entry.label} found: guarded from now on", account=account_id)
        daemon.log_record({"kind": "daemon", "event": "account_added", "account": account_id})


def _every(entry: Any, account_id: int, found: dict[str, Any]) -> AccountConfig:
    """An account ``all: true`` found: the entry, for this account by its id and name."""
    return entry.model_copy(update={"all": False, "id": account_id, "name": found.get("name") or None})


def _account_loop(daemon: Daemon, connection: Any, account_id: int, policies: PolicySet, paths: list) -> AccountLoop:
    broker = connection.brokers[account_id]
    port = broker if daemon.config.broker.kind == "projectx" else DryRunBroker(reads_from=broker)

    async def release() -> None:
        await connection.release(account_id)

    port.aclose = release  # the daemon closes the port at shutdown; the last one closes the connection
    instruments = account_instruments(daemon.config.instrument_overrides(), daemon.store)
    lp = AccountLoop(
        daemon, policies, paths, port, wall_clock_feed(_supervise(connection)), account_id, instruments=instruments
    )
    lp.specs = InstrumentSource(instruments, daemon.store, broker.contract)
    lp.engine.stale_after = daemon.config.stale_after
    lp.engine.stale = True  # rules wait for the first reconciliation (the feed's first step)
    lp.engine.book.account.name = connection.accounts[account_id].get("name", "")
    lp.connection = connection

    async def sink(item: Any) -> None:
        await _route(lp, item)

    connection.attach(account_id, sink)
    lp.on_take = partial(_taken, lp)
    return lp


def _taken(lp: AccountLoop) -> None:
    """On a desk, this worker just took the account: its new engine's book is empty, so rules
    wait for a reconciliation, read at once (as after a restart: unconfirmed calls verified)."""
    lp.engine.stale = True
    task = asyncio.get_running_loop().create_task(_reconcile(lp, None))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


_pending: set[asyncio.Task] = set()


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
    if item.state == "renewed":
        # A fresh login (a token the Gateway rejected): rules wait for this account's
        # reconciliation, as after a reconnect, since the old session may have missed events.
        engine.stale = True
        await _reconcile(lp, None)
        return
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
    """Read the broker's state (positions, orders, today's trades, balance) and queue it. Not for
    an account another worker of the desk holds: its holder reads it (the reads count against the
    login's rate limit); this worker reads it when it takes the account."""
    if not lp.active:
        return
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
    follow = getattr(lp.connection, "follow", None)
    if follow is not None:  # the quotes of what the account holds or works reach it
        follow(lp.account_id, [item.contract_id for item in (*state.positions, *state.orders)])
    gone = await _confirm_gone(lp, port, state)
    await lp.queue.put(Reconcile(state, now, gone))
    if getattr(lp, "discover", None) is not None and lp.daemon.loops:  # running: not while building
        await lp.discover()


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


READS_PER_RECONCILIATION = 5  # positions, orders, suspended orders, trades, the account list


def _supervise(connection: Any):
    """The feed: the connection pushes messages itself; this reconciles every ``reconcile_every``,
    or less often when the login serves so many accounts that their reconciliations would use
    more than the reads the login's rate limit leaves (``reconcile_period``)."""

    async def feed(lp: AccountLoop) -> None:
        while True:  # at once, then every period: the accounts of a login start together, each
            await _reconcile(lp, connection)  # as soon as the login's rate limit lets it read
            await asyncio.sleep(reconcile_period(lp.daemon.config.reconcile_every.total_seconds(), connection))

    return feed


def reconcile_period(every: float, connection: Any) -> float:
    """Seconds between two reconciliations of one account: ``every``, stretched so that all the
    login's accounts together read at most the login's read budget (its requests a minute less
    those kept for broker calls): 30 accounts on one login at 150 reads a minute, 60 s."""
    options = getattr(connection, "options", None)
    accounts = len(getattr(connection, "accounts", ()) or ())
    if options is None or not accounts:
        return every
    budget = max(1, options.requests_per_minute - options.read_reserve)
    return max(every, accounts * READS_PER_RECONCILIATION * 60.0 / budget)
