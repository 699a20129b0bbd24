"""The daemon's signs of life (PRODUCT.md §9): a guard that silently died is worse than none.

- a heartbeat row in the state file every ``heartbeat.every`` (`riskc status` reads it);
- with ``heartbeat.url``, a ping to an outside monitor (healthchecks.io, Uptime Kuma, cronitor…)
  at the same interval, which raises the alarm when the pings stop, whatever killed riskc;
- under systemd (``Type=notify``), ``READY=1`` once the accounts are followed, ``WATCHDOG=1`` at
  half of ``WatchdogSec``, ``STOPPING=1`` at shutdown: systemd restarts a daemon whose event loop
  hangs. The notify protocol is one datagram on ``$NOTIFY_SOCKET``; no library needed.

A ping never blocks the engine and never raises: a monitor that is down is logged once, and
again once it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from riskc.engine.daemon.config import redact_url
from riskc.engine.store import heartbeat

if TYPE_CHECKING:
    from riskc.engine.daemon.daemon import Daemon

log = logging.getLogger("riskc.heartbeat")


# -- systemd ----------------------------------------------------------------------------------


def sd_notify(message: str, environ: dict[str, str] | None = None) -> bool:
    """Send ``message`` (``READY=1``, ``WATCHDOG=1``...) to systemd; False when not under a
    ``Type=notify`` unit or the socket is gone. ``@name`` is an abstract socket."""
    address = (environ if environ is not None else os.environ).get("NOTIFY_SOCKET")
    if not address or not hasattr(socket, "AF_UNIX"):
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)  # a receiver that does not read must never stall the event loop
            sock.connect(address)
            sock.send(message.encode())
        return True
    except BlockingIOError:
        log.warning("sd_notify %s dropped: the notify socket's queue is full", message.split("=")[0])
        return False
    except OSError as error:
        log.warning("sd_notify %s failed: %s", message.split("=")[0], error)
        return False


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between two ``WATCHDOG=1``: half of ``WatchdogSec`` (``$WATCHDOG_USEC``), when the
    watchdog is on for this process (``$WATCHDOG_PID``, if set, is ours)."""
    env = environ if environ is not None else os.environ
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2e6


# -- the loop ---------------------------------------------------------------------------------


async def keep_alive(daemon: Daemon) -> None:
    """The daemon service (``Daemon.run(..., services)``): tells systemd it is ready, then beats,
    pings and pets the watchdog until the daemon stops, and records the clean stop."""
    sd_notify("READY=1")  # the account loops are built: policies loaded, the broker followed
    try:
        await run_heartbeat(daemon)
    finally:
        stopped(daemon)


async def run_heartbeat(daemon: Daemon) -> None:
    """Beat, ping and pet the watchdog until cancelled (the daemon's shutdown)."""
    config = daemon.config.heartbeat
    every = config.every.total_seconds()
    watchdog = watchdog_interval()
    heartbeat.start(daemon.store, _now(), pid=os.getpid(), host=socket.gethostname(), every=config.every)
    tasks = [asyncio.create_task(_watchdog(watchdog))] if watchdog else []
    pinger = Pinger(daemon, config.url, config.method, timeout=min(every, 10.0)) if config.url else None
    try:
        while True:
            await asyncio.sleep(every)
            heartbeat.beat(daemon.store, _now())
            sd_notify("STATUS=" + _status_line(daemon))  # what `systemctl status riskc` shows
            if pinger is not None:
                tasks = [t for t in tasks if not t.done()]
                if not any(t.get_name() == "ping" for t in tasks):  # a slow monitor: skip, don't pile up
                    tasks.append(asyncio.create_task(pinger.ping(), name="ping"))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if pinger is not None:
            await pinger.aclose()


def stopped(daemon: Daemon) -> None:
    """At a clean shutdown: the heartbeat row says so, and systemd is told."""
    sd_notify("STOPPING=1")
    with contextlib.suppress(Exception):
        heartbeat.stop(daemon.store, _now())


async def _watchdog(interval: float) -> None:
    while True:
        sd_notify("WATCHDOG=1")
        await asyncio.sleep(interval)


class Pinger:
    """GET (or POST with a small JSON body) to the monitor's URL. The URL holds the check's
    secret, so it is only ever shown redacted."""

    def __init__(self, daemon: Daemon, url: str, method: str, timeout: float) -> None:
        self.daemon = daemon
        self.url = url
        self.method = method
        self.timeout = timeout
        self.failing = False
        self.sent = 0
        self._session: Any = None

    async def ping(self) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        body = _summary(self.daemon) if self.method == "POST" else None
        try:
            async with self._session.request(self.method, self.url, json=body) as response:
                ok = response.status < 400
                detail = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            ok, detail = False, type(error).__name__
        self.sent += 1
        if ok == self.failing:  # a change: log it once
            self.failing = not ok
            event = "monitor_failing" if not ok else "monitor_ok"
            self.daemon.log_record({"kind": "heartbeat", "event": event, "url": redact_url(self.url), "detail": detail})
            if not ok:
                log.warning("heartbeat monitor %s did not answer: %s", redact_url(self.url), detail)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _summary(daemon: Daemon) -> dict[str, Any]:
    """What a POST ping carries: enough for the monitor's log, nothing secret."""
    from riskc.engine.daemon.board.status import trading_state

    accounts = []
    for lp in daemon.loops:
        engine = lp.engine
        state = trading_state(engine)
        accounts.append({"id": engine.book.account.id, "trading_state": state["state"], "stale": engine.stale})
    return {"riskc": "alive", "broker": daemon.config.broker.kind, "accounts": accounts}


def _status_line(daemon: Daemon) -> str:
    """``guarding 2 accounts: 13298777 active, 13298778 halted``, for systemd's STATUS=."""
    states = [f"{a['id']} {a['trading_state']}{' (stale)' if a['stale'] else ''}" for a in _summary(daemon)["accounts"]]
    return f"guarding {len(states)} account{'s' if len(states) != 1 else ''}: " + ", ".join(states)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
