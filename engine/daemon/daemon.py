"""`riskc run`: the daemon (PRODUCT.md §1, §5, §8).

One asyncio task per account owns its ``Engine`` and takes items from one queue — broker
messages, 1-second clock ticks, reconciliations and policy swaps — so every change happens
between two evaluations, never during one. Around it:

- a *feed*: the live SDK (``projectx``, ``dry-run``) or the simulated broker playing a recording
  at an accelerated speed (``sim``, the embedded demo);
- a *clock*: wall time for a live account; recorded time for a recording (ticks at every second
  of recorded time, like `riskc replay`);
- a *watcher* (watchfiles): an edited policy is parsed, checked and its own fixtures are run; only
  if everything passes is it swapped in, and its content hash audited. A broken edit leaves the
  last good set active and is shown and alerted;
- *execution*: broker calls run as tasks with a timeout and verification (never blocking the
  evaluation of the next event); their outcome goes back to the store.

SIGTERM and SIGINT stop it cleanly: the feed stops, in-flight calls get a bounded wait, the book is
saved and the store closed. State lives in the store, so a restart (even after ``kill -9``)
resumes with every lockout and timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from riskc.dsl.decision import SEVERITY_RANK
from riskc.engine.adapters.port import BrokerCall
from riskc.engine.adapters.projectx.decode import DECODE_ERRORS, decode
from riskc.engine.adapters.projectx.intake import Malformed, Message, read_recording
from riskc.engine.core.instruments import DEFAULT_INSTRUMENTS, Instruments
from riskc.engine.core.snapshot import Event
from riskc.engine.core.timefmt import human_time
from riskc.engine.daemon.alerts import Alerts
from riskc.engine.daemon.board.history import recent_actions
from riskc.engine.daemon.board.series import PnlSeries
from riskc.engine.daemon.config import Config
from riskc.engine.daemon.items import Learned, Reconcile, Swap, Tick
from riskc.engine.enforce.enforcer import Effects
from riskc.engine.enforce.group import GroupGuard, group_event, moves_group
from riskc.engine.runner import Engine, PolicySet
from riskc.engine.store import LeaseLost, StateFileError, Store, StoreError
from riskc.engine.store.desk import Desk, FencedStore
from riskc.engine.store.faults import FailSafeStore
from riskc.engine.store.files import DaemonLock, NoLock, move_aside
from riskc.engine.store.postgres import is_url

DAEMON_BUSY_MS = 1000  # a write waits this long for another process's lock, then is buffered
ANCHOR_EVERY = dt.timedelta(days=1)

log = logging.getLogger("riskc.daemon")


@dataclass(slots=True)
class Activity:
    """What the live view shows beyond the store: the last actions and some counters."""

    actions: deque = field(default_factory=lambda: deque(maxlen=12))
    messages: int = 0  # every message applied: the feed's and the broker's answers (the sim's fills)
    answers: int = 0  # of which the broker's answers
    calls: int = 0
    reloads: int = 0
    reload_errors: int = 0
    errors: int = 0  # items the engine could not handle
    finished: bool = False
    last_error: str | None = None
    last_reconcile: dt.datetime | None = None
    call_times: deque = field(default_factory=lambda: deque(maxlen=400))  # monotonic, for the board's rate
    pnl: PnlSeries = field(default_factory=PnlSeries)  # the board's chart

    @property
    def feed_messages(self) -> int:
        """The feed's messages, as `riskc replay` counts a recording's (its "messages"; all of
        them, answers included, are its "events")."""
        return self.messages - self.answers


class StopMoves:
    """At most one modification per stop per interval (a trailing stop moves on every tick): a
    move waits until the interval has passed since the stop's last modification, and only the
    newest move asked meanwhile is sent; the others are superseded."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, sleep: Callable = asyncio.sleep) -> None:
        self.clock, self.sleep = clock, sleep
        self._moved_at: dict[Any, float] = {}  # stop order id -> when it was last modified
        self._latest: dict[Any, str] = {}  # stop order id -> the key of the newest move asked

    async def admit(self, order_id: Any, key: str, interval: float) -> bool:
        """Wait for the stop's turn; False when a newer move of the same stop arrived meanwhile."""
        self._latest[order_id] = key
        wait = self._moved_at.get(order_id, float("-inf")) + interval - self.clock()
        if wait > 0:
            await self.sleep(wait)
        if self._latest.get(order_id) != key:
            return False
        self._moved_at[order_id] = self.clock()
        return True


class AccountLoop:
    """One account: its engine, its feed and its broker port."""

    def __init__(
        self,
        daemon: Daemon,
        policies: PolicySet,
        paths: list[Path],
        port: Any,
        feed: Callable,
        account_id: int | None,
        instruments: Instruments = DEFAULT_INSTRUMENTS,
    ) -> None:
        self.daemon = daemon
        self.paths = paths
        self.port = port
        self.feed = feed
        self.policies = policies
        self.account_id = account_id
        self.instruments = instruments
        # On a PostgreSQL desk the loop enforces only while this worker holds the account's lease
        # (``take``/``lose``), and its store is fenced by the lease epoch; alone, always.
        self.fenced: FencedStore | None = FencedStore(daemon.store) if daemon.desk is not None else None
        self.active = self.fenced is None
        self.engine = Engine(
            policies, self.fenced or daemon.store, account_id=account_id, persist_book=True, instruments=instruments
        )
        self.queue: asyncio.Queue = asyncio.Queue()
        self.activity = Activity()
        self.commitment = None  # `edits: next_trading_day` (daemon/commitment.py), set by build_loops
        self.connection = None  # the live ProjectX connection (hub health for the board), set by live.py
        self._calls: set[asyncio.Task] = set()
        self.specs: Any = None  # live: the broker's instrument specs (daemon.instrument_source)
        self.stop_moves = StopMoves()
        self.on_take: Callable[[], Any] | None = None  # live: reconcile the account once taken (live.py)
        self.groups: list[GroupGuard] = []  # the groups this account is in (`groups:`), set by build_loops

    # -- the one consumer -------------------------------------------------------------------

    async def consume(self) -> None:
        while True:
            item = await self.queue.get()
            if not self.active:
                continue  # another worker holds the account
            try:
                self._apply(item)
            except LeaseLost as refusal:
                self.lose(str(refusal))
            except Exception as error:
                self._failed(item, error)

    def take(self, epoch: int) -> None:
        """This worker now holds the account: a new engine recovers it from the store exactly as
        after a restart (lockouts, timers, the ledger; unconfirmed calls verified at the next
        reconciliation), and its calls carry ``epoch``."""
        assert self.fenced is not None
        self.fenced.epoch = epoch
        old = self.engine
        self.engine = Engine(
            self.policies, self.fenced, account_id=self.account_id, persist_book=True, instruments=self.instruments
        )
        for guard in self.groups:
            guard.replace(old, self.engine)
        self.active = True
        if self.on_take is not None:
            self.on_take()

    def lose(self, why: str) -> None:
        if self.fenced is not None:
            self.fenced.epoch = -1
        if self.active:
            self.active = False
            self.daemon.alerts.alert("high", f"account {self.account_id}: no longer held by this worker ({why})")

    def _failed(self, item: Any, error: Exception) -> None:
        """An item the engine could not handle (a bug, or input nothing else caught) is logged
        with its traceback and alerted, critically, the first time and every 100th after: an
        event whose effect is lost must be heard of, but not 10,000 times a minute."""
        log.exception("error while handling %r", type(item).__name__)
        self.activity.errors += 1
        self.activity.last_error = f"{type(item).__name__}: {type(error).__name__}: {error}"
        if self.activity.errors % 100 == 1:
            self.daemon.alerts.alert(
                "critical",
                f"riskc could not handle a {type(item).__name__} ({type(error).__name__}: {error}); it was skipped "
                f"({self.activity.errors} so far). The next reconciliation corrects the book",
                account=self.engine.book.account.id or None,
            )

    def _apply(self, item: Any) -> None:
        engine = self.engine
        if type(item) is Message:
            self.activity.messages += 1
            try:
                updates = decode(item)
            except DECODE_ERRORS as error:
                engine.malformed += 1
                log.warning("malformed %s message skipped (%s): %s", item.target, error, item.to_json()[:500])
                return
            for update in updates:
                self._handle(engine.on_event(update))
            if self.groups:
                self._group_updates(updates)
        elif type(item) is Tick:
            self.daemon.maintain_store(item.now)
            if self.commitment is not None and (due := self.commitment.due(item.now)) is not None:
                self._apply(Swap(*due))  # before the tick: the new day is evaluated by the new set
            self._handle(engine.on_tick(item.now))
            self._sample_pnl()
            for guard in self.groups:
                self._group_due(guard, item.now)
                self._run_group(guard, Event(kind="clock", time=item.now))
        elif type(item) is Reconcile:
            self.activity.last_reconcile = item.now
            drift, effects = engine.reconcile(item.state, item.now, gone=item.gone)
            if drift:
                self.daemon.alerts.alert(
                    "medium", "reconciliation corrected the book: " + "; ".join(drift), account=engine.book.account.id
                )
            self._handle(effects)
            for guard in self.groups:  # the corrected book counts for its groups at once, not at the next tick
                self._run_group(guard, Event(kind="clock", time=item.now))
        elif type(item) is Learned:
            engine.book.instruments_changed()
        elif type(item) is Swap:
            engine.swap(item.policies)
            for path, digest in item.policies.hashes:
                self.daemon.store.record_policy(path, digest, engine.book.now if engine.book.day else _utcnow())
            self.activity.reloads += 1
        elif type(item) is Malformed:
            engine.malformed += 1
            log.warning("malformed message skipped: %s", item.describe())

    # -- account groups (engine/enforce/group.py) --------------------------------------------

    def _group_updates(self, updates) -> None:
        """After this account applied a message: its groups' policies, over every member's book."""
        for guard in self.groups:
            for update in updates:
                event = group_event(update)
                if event is not None and moves_group(guard, update):
                    self._run_group(guard, event)

    def _group_due(self, guard: GroupGuard, now: dt.datetime) -> None:
        """A group edit staged by `edits: next_trading_day` becomes active at the boundary (or at
        `riskc reload --now`), before the tick is evaluated: whichever member ticks first."""
        if guard.commitment is None or (due := guard.commitment.due(now)) is None:
            return
        policies, _ = due
        guard.swap(policies)
        for path, digest in policies.hashes:
            self.daemon.store.record_policy(path, digest, now)

    def _run_group(self, guard: GroupGuard, event: Event) -> None:
        """Each member's effects go to that member's loop: its store batch is done, its calls go
        out through its own port and executor (idempotency keys `<account>:<target>`). On a desk
        the group's accounts are leased together (desk.py units); it is evaluated only while this
        worker holds every member (never in the moment a unit is taken or let go)."""
        loops = {id(lp.engine): lp for lp in self.daemon.loops}
        members = [loops.get(id(engine)) for engine in guard.members]
        if not all(lp is not None and lp.active for lp in members):
            return
        for engine, effects in guard.evaluate(event):
            loops[id(engine)]._handle(effects)

    def _sample_pnl(self) -> None:
        """The board's chart: the day's net P&L, once a tick (the day's trades seed a new day).
        On the first, the last actions from before a restart are read back from the audit log."""
        book = self.engine.book
        day = book.day
        if day is not None:
            if self.activity.pnl.day is None:  # the first tick: older actions after this run's
                shown = self.activity.actions
                for record in recent_actions(self.engine.store, book.account.id):
                    if record not in shown and len(shown) < (shown.maxlen or 0):
                        shown.append(record)
            history = partial(self.engine.store.day_trades, book.account.id, day.trading_day)
            self.activity.pnl.add(day.trading_day, book.now, day.realized + book.unrealized(), history)

    def _handle(self, effects: Effects) -> None:
        if not effects:
            return
        account = self.engine.book.account.id
        for record in effects.records:
            self.activity.actions.appendleft(record)
            self.daemon.log_record({"kind": "action", "account": account} | record)
            self.daemon.print_action(record, self.engine.zone, account)
        for severity, record in _one_per_firing(effects.alerts):
            when = dt.datetime.fromisoformat(record["ts"]) if record.get("ts") else None
            self.daemon.alerts.alert(
                severity, record["reason"], rule=record["rule"], account=account, ts=when, action=record["action"]
            )
        for call in effects.calls:
            self.activity.calls += 1
            self.activity.call_times.append(time.monotonic())
            self.engine.mark_sent(call, self.engine.book.now)
            task = asyncio.create_task(self._execute(call))
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    # -- broker calls -----------------------------------------------------------------------

    async def _execute(self, call: BrokerCall) -> None:
        """Send with a timeout, verify against the broker's state, resend only what did not take
        effect (``engine.broker.executor``); the outcome goes to the store. A dry run sends
        nothing and so has nothing to verify."""
        from riskc.engine.enforce.executor import execute

        if getattr(self.port, "verifies", True) is False:
            result = await self.port.send(call)
            return self._finished(call, True, "dry run", result)
        broker = self.daemon.config.broker
        interval = broker.stop_move_interval.total_seconds()
        if call.kind == "modify_stop" and not await self.stop_moves.admit(call.order_id, call.key, interval):
            return self._finished(call, False, "superseded by a later move of the same stop (coalesced)", None)
        outcome = await execute(
            self.port,
            call,
            timeout=broker.timeout.total_seconds(),
            retries=broker.retries,
            backoff=0.25,
            audit=self._drain_hook,
            instruments=self.engine.book.instruments,
        )
        self._drain_port()
        verdict = {"confirmed": True, "failed": False}.get(outcome.status)  # uncertain: verified at the next reconcile
        self._finished(call, verdict, outcome.detail, outcome.result)
        if not outcome.confirmed:
            self.daemon.alerts.alert(
                "critical",
                f"{call.describe()} {outcome.status} after {outcome.attempts} attempt(s): {outcome.detail}",
                rule=call.rule,
                account=call.account_id,
            )

    def _drain_hook(self, step) -> None:
        self._drain_port()

    def _finished(self, call: BrokerCall, confirmed: bool | None, detail: str, result: Any) -> None:
        now = self.engine.book.now
        self.engine.finished(call, confirmed, now, detail, result if isinstance(result, dict) else None)
        outcome = "uncertain" if confirmed is None else "confirmed" if confirmed else "failed"
        self.daemon.log_record({"kind": "broker_call", "outcome": outcome, "detail": detail} | call.to_record())

    def _drain_port(self) -> None:
        drain = getattr(self.port, "drain", None)
        if drain is not None:
            for message in drain():
                self.activity.answers += 1
                self.queue.put_nowait(message)

    async def settle(self, timeout: float) -> None:
        """Give in-flight broker calls a bounded time to finish (shutdown)."""
        if self._calls:
            await asyncio.wait(list(self._calls), timeout=timeout)


async def _lease_service(daemon: Daemon) -> None:
    while True:
        await daemon.lease_cycle()
        await asyncio.sleep(daemon.desk.poll_s if daemon.desk is not None else 1.0)


def _one_per_firing(records: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(severity, record) of the alerts to send: one per firing of a rule, at the highest
    severity of its actions. The actions of one firing share its reason (`close CL, block CL`),
    so a webhook hears of the firing once, not once per action."""
    found: dict[tuple[str, str], list] = {}
    for record in records:
        severity = record["severity"]  # the rule's (Enforcer.enforce)
        first = found.setdefault((record["rule"], record["reason"]), [severity, record])
        if SEVERITY_RANK.get(severity, 0) > SEVERITY_RANK.get(first[0], 0):
            first[0] = severity
    return [(severity, record) for severity, record in found.values()]


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        console: Any = None,
        live_view: bool = True,
        max_seconds: float | None = None,
        demo: bool = False,
        new_state: bool = False,
    ) -> None:
        if console is None:
            from riskc.engine.daemon.console import make_console

            console = make_console()
        self.config = config
        self.console = console
        self.desk: Desk | None = None  # the leases, on a PostgreSQL desk
        self.live_view = live_view
        self.max_seconds = max_seconds
        self.demo = demo
        # One daemon per state file, for its whole life. On a PostgreSQL desk several workers share
        # the store, and each account is held by one of them through its lease (desk.py) instead.
        self.lock = NoLock() if is_url(config.state) else DaemonLock.acquire(config.state)
        try:
            store, repaired = open_state(config.state, new_state)
        except BaseException:
            self.lock.release()
            raise
        # The console shows every action once, as a line (print_action) or in the live view, so
        # its alert sink prints only the alerts that report no action.
        self.alerts = Alerts.from_config(config, console=console, console_actions=False)
        self.store = FailSafeStore(store, on_change=self._store_changed)
        if is_url(config.state):
            try:
                self.desk = self._open_desk()
            except BaseException:
                store.close()
                raise
        self._state_version = self.store.data_version()
        self._anchored: dt.datetime | None = None
        if repaired:
            self._state_edited(repaired)
        self.loops: list[AccountLoop] = []
        self._lease_thread: Any = None  # the one thread that uses the desk's lease session
        self._added: list[asyncio.Task] = []  # the tasks of loops added while running (add_loop)
        self.board = None  # the status board, while the `serve_board` service runs (engine/daemon/board)
        self._stop = asyncio.Event()
        self._log_sink = next((s for s in self.alerts.sinks if hasattr(s, "write")), None)

    @property
    def stopping(self) -> asyncio.Event:
        """Set by SIGTERM/SIGINT or ``stop()``."""
        return self._stop

    def guards(self) -> list[GroupGuard]:
        """The account groups of the loops (`groups:`, engine/enforce/group.py), each once, in order."""
        found = {id(guard): guard for lp in self.loops for guard in lp.groups}
        return list(found.values())

    def log_record(self, record: dict[str, Any]) -> None:
        if self._log_sink is not None:
            self._log_sink.write(record)

    def print_action(self, record: dict[str, Any], zone: dt.tzinfo | None = None, account: Any = None) -> None:
        """Without the live view, one line per action (the view shows them otherwise). It is the
        only console line of an action: the alert the action raises goes to the log and the
        webhooks, not to this console."""
        if self.live_view:
            return
        from rich.text import Text

        target = record.get("symbol") or record.get("contract_id") or ""
        when = human_time(dt.datetime.fromisoformat(record["ts"]), zone) if record.get("ts") else ""
        line = Text(f"{when}  ", style="dim")
        if account and len(self.loops) > 1:  # several accounts: say which
            line.append(f"{account}  ")
        line.append(f"{record['action']:<13}", style="bold")
        line.append(f" {target:<6} ")
        line.append(record["reason"])
        self.console.print(line, soft_wrap=True)

    def stop(self) -> None:
        self._stop.set()

    # -- the state file ---------------------------------------------------------------------

    def _store_changed(self, kind: str, text: str) -> None:
        self.alerts.alert("high" if kind == "recovered" else "critical", text)
        self.log_record({"kind": "state_store", "event": kind, "text": text})

    def maintain_store(self, now: dt.datetime) -> None:
        """Each tick: replay what a storage fault left buffered, and notice a lockout, timer or
        passphrase edited outside riskc (the file changed under another connection)."""
        self.store.retry()
        self._anchor_head()
        version = self.store.data_version()
        if version == self._state_version or self.store.backlog:
            return
        self._state_version = version
        try:
            problems = self.store.state_problems()
            if problems:
                self.store.repair_state(problems, now)
        except Exception as error:
            log.error("cannot check the state file against its audit log: %s", error)
            return
        if problems:
            self._state_edited(problems)

    def _anchor_head(self) -> None:
        """At start and once a day, the audit head goes out on every sink (the JSON log, the
        webhooks): noted outside the file, it is what makes a rewritten or shortened history
        detectable (`riskc audit verify --expect-head SEQ:HASH`)."""
        wall = _utcnow()
        if self._anchored is not None and wall - self._anchored < ANCHOR_EVERY:
            return
        self._anchored = wall
        try:
            head = self.store.audit_head()
        except Exception as error:
            log.error("cannot read the audit head: %s", error)
            return
        seq, digest = head if head is not None else (0, "0" * 64)
        self.alerts.alert("info", f"audit head {seq}:{digest} (`riskc audit verify --expect-head` checks it later)")
        self.log_record({"kind": "audit_head", "seq": seq, "hash": digest})

    def _state_edited(self, problems: list[str]) -> None:
        self.alerts.alert(
            "critical",
            f"the state file {self.config.state} was edited outside riskc: {'; '.join(problems)}. "
            "Restored from the audit log, which is what riskc enforces.",
        )

    async def run(self, build_loops: Callable, services: Sequence[Callable[[Daemon], Awaitable[None]]] = ()) -> int:
        """Build the account loops, run them and ``services`` (hot reload, the live view: each a
        coroutine function of the daemon) until stopped, then shut down cleanly."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        self.loops = await build_loops(self)
        if self.desk is not None:
            # `accounts: all`: the ids the logins listed; else those of the config (the same).
            self.desk.accounts = sorted({lp.account_id for lp in self.loops if lp.account_id is not None})
            services = (*services, _lease_service)
        if self.loops:  # alert lines in the account's timezone, like every other time shown
            for sink in self.alerts.sinks:
                if hasattr(sink, "zone"):
                    sink.zone = self.loops[0].engine.zone
        tasks = [asyncio.create_task(lp.consume()) for lp in self.loops]
        tasks += [asyncio.create_task(lp.feed(lp)) for lp in self.loops]
        running = [asyncio.create_task(service(self)) for service in services]
        self.log_record(
            {"kind": "daemon", "event": "started", "broker": self.config.broker.kind, "accounts": len(self.loops)}
        )
        try:
            await self._wait_for_stop()
        finally:
            await self._shutdown(tasks + self._added, running)
        return 0

    def _open_desk(self) -> Desk:
        import psycopg

        ids = [a.id for a in self.config.accounts if a.id is not None]
        if any(a.id is None and not a.all for a in self.config.accounts):
            raise StateFileError(
                "on a PostgreSQL desk every account in the config needs its `id:` (leases are by id), "
                "or `all: true` (the ids the login lists)"
            )
        # A group's accounts are leased together (one unit): one worker holds all or none of them.
        groups = [[a.id for a in self.config.members(group) if a.id is not None] for group in self.config.groups]
        try:
            return Desk(str(self.config.state), ids, groups=groups)
        except psycopg.Error as error:
            raise StoreError(f"cannot open the desk's lease session: {error}") from None

    async def lease_cycle(self) -> None:
        """Renew, take, let go (desk.py); called every ``desk.poll_s`` by the lease service. The
        lease session's queries run on the one lease thread, off the event loop (a slow server
        never stalls enforcement); accounts shed beyond the fair share are stopped here before
        their locks go. Fencing does not depend on this timing: every planned call is checked
        against the account's epoch in the database."""
        assert self.desk is not None
        desk = self.desk
        by_id = {lp.account_id: lp for lp in self.loops}
        try:
            gained, lost = await self._on_lease_thread(partial(desk.poll, let_go=False))
        except Exception as error:  # the server is gone or restarting: hold nothing meanwhile
            log.error("desk: cannot renew the leases: %s", error)
            gained, lost = [], [lp.account_id for lp in self.loops if lp.active]
            desk.held.clear()
            desk.shedding.clear()
            desk.split = []
            await self._on_lease_thread(desk.reconnect)
        for unit in desk.split:
            self.alerts.alert(
                "high",
                f"accounts {', '.join(map(str, unit))}: a group's account was taken by another worker; "
                "this worker lets go of the rest, so that one worker takes the group whole",
            )
        for account_id in lost:
            if account_id in by_id:
                by_id[account_id].lose("lease lost")
        if desk.shedding:
            await self._on_lease_thread(partial(desk.let_go_of, sorted(desk.shedding)))
        for account_id in gained:
            if account_id in by_id:
                by_id[account_id].take(self.desk.held[account_id])
                self.alerts.alert("info", f"account {account_id}: held by worker {self.desk.worker}")
        if gained or lost:
            self.log_record({"kind": "desk", "held": sorted(self.desk.held), "gained": gained, "lost": lost})

    def add_loop(self, lp: AccountLoop) -> None:
        """An account found while running (``accounts: all``, a new account of a login): its loop
        runs from now on, and on a desk its lease is taken like the others'."""
        self.loops.append(lp)
        if self.desk is not None and lp.account_id is not None:
            self.desk.accounts = sorted({*self.desk.accounts, lp.account_id})
        self._added += [asyncio.create_task(lp.consume()), asyncio.create_task(lp.feed(lp))]

    async def _on_lease_thread(self, call: Callable[[], Any]) -> Any:
        if self._lease_thread is None:
            from concurrent.futures import ThreadPoolExecutor

            self._lease_thread = ThreadPoolExecutor(1, thread_name_prefix="riskc-lease")
        return await asyncio.get_running_loop().run_in_executor(self._lease_thread, call)

    async def _wait_for_stop(self) -> None:
        waits = [asyncio.create_task(self._stop.wait())]
        if self.max_seconds is not None:
            waits.append(asyncio.create_task(asyncio.sleep(self.max_seconds)))
        if self.demo:
            waits.append(asyncio.create_task(self._demo_done()))
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()

    async def _demo_done(self) -> None:
        while not all(lp.activity.finished for lp in self.loops):
            await asyncio.sleep(0.1)
        for lp in self.loops:  # let the last messages and calls be handled
            while not lp.queue.empty():
                await asyncio.sleep(0.05)
            await lp.settle(2.0)

    async def _shutdown(self, tasks: list[asyncio.Task], services: list[asyncio.Task]) -> None:
        for task in tasks:
            if not task.done():
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lp in self.loops:
            await lp.settle(self.config.broker.timeout.total_seconds())
            if lp.active:  # on a desk, another worker's account is not this one's to write
                with contextlib.suppress(Exception):
                    lp.engine.save_book()
            closer = getattr(lp.port, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()
        for service in services:
            service.cancel()
        await asyncio.gather(*services, return_exceptions=True)
        if self.desk is not None:
            with contextlib.suppress(Exception):
                await self._on_lease_thread(self.desk.close)  # the others take the accounts at their next poll
            self._lease_thread.shutdown(wait=False)
        self.log_record({"kind": "daemon", "event": "stopped"})
        if not self.store.retry():
            self.alerts.alert(
                "critical",
                f"stopping with {len(self.store.backlog)} write(s) the state file {self.config.state} still "
                f"refuses ({self.store.fault}): they are lost; the broker's state is reconciled at the next start",
            )
        await self.alerts.aclose(timeout=3.0)
        self.store.close()
        self.lock.release()


def open_state(path: Path, new_state: bool) -> tuple[Store, list[str]]:
    """The daemon's state file, verified before anything is enforced from it.

    - A file that is not a usable state file is refused (``StateFileError``), or with
      ``new_state`` kept aside and a fresh one started.
    - A broken audit chain (a record edited, removed or cut off) is refused too: riskc does not
      run on a history that was altered, and says where (`riskc audit verify` shows the same).
      ``new_state`` keeps that file aside as well.
    - Lockouts, timers or a passphrase that differ from the (intact) chain were edited outside
      riskc: they are put back as the chain says and the edits returned, for a critical alert.
      Refusing to start would leave the account unguarded, which is what such an edit wants.
    """
    store = Store.open(path, new=new_state, busy_ms=DAEMON_BUSY_MS)
    verdict = store.verify_audit()
    if not verdict.ok:
        store.close()
        if not new_state or is_url(path):  # a desk is never set aside by one worker
            raise StateFileError(
                f"{path}: the audit log fails verification at record {verdict.first_bad_seq} ({verdict.problem}); "
                "riskc does not run on an altered history. `riskc audit verify --state` shows it; restore a "
                "backup, or pass --new-state to keep this file aside and start afresh"
            )
        log.warning("%s fails verification: moved aside to %s", path, move_aside(path))
        return Store.open(path, busy_ms=DAEMON_BUSY_MS), []
    problems = store.state_problems()
    if problems:
        store.repair_state(problems, _utcnow())
    return store, problems


# -- feeds ----------------------------------------------------------------------------------


def recording_feed(path: Path, speed: float) -> Callable:
    """Play a recording into the loop's queue at ``speed`` recorded seconds per wall second
    (0: as fast as possible), with the 1-second clock in recorded time and the simulated
    broker's fills right after the quote that fills them."""

    async def feed(lp: AccountLoop) -> None:
        from riskc.engine.sim.replay import RecordedClock

        sim, clock = lp.port, RecordedClock()
        previous: dt.datetime | None = None
        for item in read_recording(str(path)):
            if type(item) is Malformed:
                await lp.queue.put(item)
                continue
            for tick in clock.due(item.ts):
                await _pace(previous, tick, speed)
                previous = tick
                await lp.queue.put(Tick(tick))
            await _pace(previous, item.ts, speed)
            previous = item.ts
            if lp.account_id is not None and item.hub == "user":
                item = _for_account(item, lp.account_id)  # a recording of several accounts: this one's part
                if item is None:
                    continue
            try:
                decode(item)  # the simulated broker must not see what the book cannot use
                triggered = sim.observe(item)
            except DECODE_ERRORS as error:
                await lp.queue.put(Malformed(item.line, str(error) or type(error).__name__, item.to_json()))
                continue  # the feed goes on: one bad line never stops a recording
            await lp.queue.put(item)
            for message in triggered:
                lp.activity.answers += 1
                await lp.queue.put(message)
        lp.activity.finished = True

    return feed


def _for_account(message: Message, account_id: int) -> Message | None:
    """The part of a user-hub message about ``account_id`` (entities naming no account kept),
    None when it is about other accounts only."""
    from riskc.engine.sim.group_replay import split_by_account

    parts = [part for owner, _, part in split_by_account(message) if owner is None or str(owner) == str(account_id)]
    if len(parts) <= 1:
        return parts[0] if parts else None
    entities = [e for part in parts for arg in part.args for e in (arg if isinstance(arg, list) else [arg])]
    return Message(message.ts, message.hub, message.target, [entities], message.line)


async def _pace(previous: dt.datetime | None, target: dt.datetime, speed: float) -> None:
    if speed <= 0 or previous is None:
        await asyncio.sleep(0)
        return
    delay = (target - previous).total_seconds() / speed
    if delay > 0:
        await asyncio.sleep(delay)


def wall_clock_feed(inner: Callable) -> Callable:
    """A live feed plus the wall-clock 1-second tick."""

    async def feed(lp: AccountLoop) -> None:
        async def ticks() -> None:
            while True:
                await asyncio.sleep(1 - _utcnow().microsecond / 1e6)  # to the next whole second
                await lp.queue.put(Tick(_utcnow().replace(microsecond=0)))

        ticker = asyncio.create_task(ticks())
        try:
            await inner(lp)
        finally:
            ticker.cancel()

    return feed


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
