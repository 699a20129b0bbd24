"""Alerts: what the daemon tells the trader, on the console, in the JSON log and over webhooks.

The one promise: ``Alerts.send`` never blocks and never raises. Enforcement calls it in the middle
of flattening an account, and a slow or dead webhook must not delay a broker call by a
millisecond. So the console and the log are written synchronously (local and fast), and a webhook
is only *queued*: a background task posts it, with retries and exponential backoff, honouring
``429 Retry-After``. The queue is bounded; when it is full the oldest alert is dropped, because
the newest says most about the account now. Shutdown drains the queue for a bounded time.

Webhook URLs carry their token in the path, so they are shown only as ``https://host/…``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import os
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from riskc.engine.core.timefmt import human_time
from riskc.engine.daemon.config import SEVERITIES, redact_url

if TYPE_CHECKING:
    import aiohttp
    from rich.console import Console

    from riskc.engine.daemon.config import Config

log = logging.getLogger("riskc.alerts")

Severity = Literal["info", "low", "medium", "high", "critical"]
_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
DISCORD_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class Alert:
    """One notification. ``rule`` is the rule id that raised it (None for the daemon's own
    alerts: a broken policy edit, a lost connection); ``account`` an id or name; ``action`` the
    kind of the enforcement action it reports (``close``, ``alert``...), None when it reports
    none (drift found by a reconciliation, a failed broker call): the daemon already shows every
    action on its console, so the console sink can leave those out."""

    ts: datetime
    severity: Severity
    rule: str | None
    text: str
    account: int | str | None = None
    action: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in _RANK:
            raise ValueError(f"unknown severity {self.severity!r}; expected one of {', '.join(SEVERITIES)}")
        if self.ts.tzinfo is None:
            raise ValueError("an alert's time must be tz-aware")

    @classmethod
    def now(
        cls,
        severity: Severity,
        text: str,
        *,
        rule: str | None = None,
        account: int | str | None = None,
        action: str | None = None,
    ) -> Alert:
        return cls(datetime.now(UTC), severity, rule, text, account, action)

    def at_least(self, severity: str) -> bool:
        return _RANK[self.severity] >= _RANK[severity]

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": self.ts.astimezone(UTC).isoformat(),
            "severity": self.severity,
            "rule": self.rule,
            "text": self.text,
            "account": self.account,
        }

    def headline(self) -> str:
        """``CRITICAL daily_loss [13298777]``: who and how bad, without the text."""
        parts = [self.severity.upper()]
        if self.rule:
            parts.append(self.rule)
        if self.account is not None:
            parts.append(f"[{self.account}]")
        return " ".join(parts)


class Sink(Protocol):
    def send(self, alert: Alert) -> None:
        """Deliver or queue; must neither block on the network nor raise."""

    async def aclose(self, timeout: float) -> None:
        """Flush what can be flushed within ``timeout`` seconds, then release resources."""


# -- console --------------------------------------------------------------------------------

_STYLES = {"info": "dim", "low": "cyan", "medium": "yellow", "high": "bold red", "critical": "bold white on red"}


class ConsoleSink:
    """One line per alert. With ``actions=False`` it leaves out the alerts that report an action,
    for a console where the actions are shown already (`riskc run`'s lines or live view): one
    line per action there, not an action line and an alert line saying the same."""

    def __init__(
        self, console: Console | None = None, min_severity: Severity = "info", *, actions: bool = True
    ) -> None:
        if console is None:
            from riskc.engine.daemon.console import make_console

            console = make_console(stderr=True)
        self.console = console
        self.min_severity = min_severity
        self.actions = actions
        self.zone: tzinfo | None = None  # the account's timezone (the daemon sets it); None: the machine's

    def send(self, alert: Alert) -> None:
        if not alert.at_least(self.min_severity) or (alert.action is not None and not self.actions):
            return
        from rich.text import Text

        # Text, not markup: a rule's alert string may contain [brackets].
        line = Text(human_time(alert.ts, self.zone) + " ", style="dim")
        line.append(alert.headline(), style=_STYLES[alert.severity])
        line.append(f"  {alert.text}")
        self.console.print(line, soft_wrap=True)

    async def aclose(self, timeout: float = 0) -> None:
        return None


# -- JSON log -------------------------------------------------------------------------------


class JsonLogSink:
    """One JSON object per line, appended and flushed at once, so ``tail -f`` and a crash both
    see every alert. The file is reopened when it was rotated away (moved or deleted), so
    logrotate works without ``copytruncate``. It is created 0600: alerts name accounts and P&L."""

    def __init__(self, path: str | os.PathLike[str], min_severity: Severity = "info") -> None:
        self.path = Path(path)
        self.min_severity = min_severity
        self._file: Any = None
        self._identity: tuple[int, int] | None = None

    def send(self, alert: Alert) -> None:
        if alert.at_least(self.min_severity):
            self.write({"kind": "alert"} | alert.to_json())

    def write(self, record: dict[str, Any]) -> None:
        """Append any record (the daemon may log more than alerts here); errors are logged."""
        try:
            line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
            handle = self._handle()
            handle.write(line)
            handle.flush()
        except (OSError, TypeError, ValueError) as error:
            log.error("cannot write to the JSON log %s: %s", self.path, error)

    def _handle(self) -> Any:
        try:
            stat = os.stat(self.path)
            current = (stat.st_dev, stat.st_ino)
        except FileNotFoundError:
            current = None
        if self._file is None or current != self._identity:
            self.close()
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._file = os.fdopen(fd, "a", encoding="utf-8")
            stat = os.fstat(fd)
            self._identity = (stat.st_dev, stat.st_ino)
        return self._file

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    async def aclose(self, timeout: float = 0) -> None:
        self.close()


# -- webhooks -------------------------------------------------------------------------------

WebhookFormat = Literal["json", "discord"]


def discord_body(alert: Alert) -> dict[str, Any]:
    """A Discord-compatible message: ``content`` at most 2000 characters, and no pings (a rule's
    text could contain ``@everyone``)."""
    content = f"**{alert.headline()}**\n{alert.text}"
    if len(content) > DISCORD_LIMIT:
        content = content[: DISCORD_LIMIT - 1] + "…"
    return {"content": content, "allowed_mentions": {"parse": []}}


@dataclass(slots=True)
class WebhookStats:
    sent: int = 0
    failed: int = 0  # given up after the last retry, or refused for good (4xx)
    dropped: int = 0  # pushed out of a full queue
    undelivered: int = 0  # still queued when shutdown's wait ran out
    last_error: str | None = field(default=None)


class WebhookSink:
    """POSTs alerts from a bounded queue in a background task; see the module docstring.

    The task starts on the first ``send`` made inside a running event loop (an alert sent before
    there is one waits in the queue until then)."""

    def __init__(
        self,
        url: str,
        format: WebhookFormat = "json",
        *,
        min_severity: Severity = "info",
        max_queue: int = 100,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        timeout: float = 5.0,
        max_retry_after: float = 60.0,
    ) -> None:
        if format not in ("json", "discord"):
            raise ValueError(f"unknown webhook format {format!r}")
        if max_queue < 1:
            raise ValueError("the webhook queue needs room for at least one alert")
        self._url = url
        self.format = format
        self.min_severity = min_severity
        self.retries, self.backoff, self.max_backoff = retries, backoff, max_backoff
        self.timeout, self.max_retry_after = timeout, max_retry_after
        self.stats = WebhookStats()
        self._queue: deque[Alert] = deque(maxlen=max_queue)
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._in_flight = False
        self._closing = False

    def __repr__(self) -> str:
        return f"WebhookSink({redact_url(self._url)!r}, format={self.format!r})"

    @property
    def shown_url(self) -> str:
        return redact_url(self._url)

    @property
    def pending(self) -> int:
        return len(self._queue) + self._in_flight

    # -- the caller's side: never waits -------------------------------------------------------

    def send(self, alert: Alert) -> None:
        if self._closing or not alert.at_least(self.min_severity):
            return
        if len(self._queue) == self._queue.maxlen:
            self.stats.dropped += 1
            log.warning("webhook %s: queue full, dropping the oldest alert", self.shown_url)
        self._queue.append(alert)
        self._start()

    def _start(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run(), name=f"webhook {self.shown_url}")
        assert self._wake is not None
        self._wake.set()

    # -- the background task ----------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            alert = self._queue.popleft()
            self._in_flight = True
            try:
                await self._deliver(alert)
            except Exception as error:
                self.stats.failed += 1
                self._note_error(f"unexpected {type(error).__name__}")
            finally:
                self._in_flight = False

    async def _deliver(self, alert: Alert) -> None:
        body = discord_body(alert) if self.format == "discord" else alert.to_json()
        for attempt in range(self.retries + 1):
            delay, problem = await self._post(body, attempt)
            if problem is None:
                self.stats.sent += 1
                return
            if delay is None or attempt == self.retries:
                break
            log.warning("webhook %s: %s; retrying in %.1fs", self.shown_url, problem, delay)
            await asyncio.sleep(delay)
        self.stats.failed += 1
        self._note_error(problem)

    async def _post(self, body: dict[str, Any], attempt: int) -> tuple[float | None, str | None]:
        """One attempt: (delay before the next, problem) with problem None on success and delay
        None when retrying cannot help (a 4xx other than 408/429)."""
        import aiohttp

        backoff = min(self.max_backoff, self.backoff * 2**attempt)
        try:
            session = await self._client()
            async with session.post(self._url, json=body, timeout=aiohttp.ClientTimeout(total=self.timeout)) as reply:
                if 200 <= reply.status < 300:
                    return None, None
                if reply.status == 429:
                    return await self._retry_after(reply, backoff), "HTTP 429 (rate limited)"
                if reply.status >= 500 or reply.status == 408:
                    return backoff, f"HTTP {reply.status}"
                return None, f"HTTP {reply.status} (not retried)"
        except (aiohttp.ClientError, TimeoutError) as error:
            return backoff, self._describe(error)

    async def _retry_after(self, reply: aiohttp.ClientResponse, fallback: float) -> float:
        """``Retry-After`` (seconds or an HTTP date), else Discord's JSON ``retry_after``."""
        header = reply.headers.get("Retry-After")
        seconds: float | None = None
        if header:
            try:
                seconds = float(header)
            except ValueError:
                when = email.utils.parsedate_to_datetime(header) if header else None
                seconds = (when - datetime.now(UTC)).total_seconds() if when and when.tzinfo else None
        if seconds is None:
            with contextlib.suppress(Exception):
                seconds = float((await reply.json(content_type=None))["retry_after"])
        if seconds is None:
            return fallback
        return min(self.max_retry_after, max(0.0, seconds))

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            import aiohttp

            self._session = aiohttp.ClientSession()
        return self._session

    def _describe(self, error: BaseException) -> str:
        text = str(error).replace(self._url, self.shown_url)
        path = self._url.split("://", 1)[-1].split("/", 1)[-1]
        if len(path) > 3:
            text = text.replace(path, "…")
        return f"{type(error).__name__}: {text}" if text else type(error).__name__

    def _note_error(self, problem: str | None) -> None:
        self.stats.last_error = problem
        log.error("webhook %s: alert not delivered: %s", self.shown_url, problem)

    # -- shutdown ---------------------------------------------------------------------------

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop taking alerts, give the queue up to ``timeout`` seconds to drain, then cancel."""
        self._closing = True
        if self._queue and (self._task is None or self._task.done()):
            self._start()
        if self._task is not None:
            assert self._wake is not None
            self._wake.set()
            done, _ = await asyncio.wait({self._task}, timeout=max(0.0, timeout))
            if not done:
                self.stats.undelivered = self.pending
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                log.warning("webhook %s: %d alert(s) not delivered at shutdown", self.shown_url, self.stats.undelivered)
        if self._session is not None:
            await self._session.close()


# -- fan-out --------------------------------------------------------------------------------


class Alerts:
    """What the daemon holds: ``send`` to every sink, ``aclose`` at shutdown."""

    def __init__(self, sinks: Iterable[Sink] = ()) -> None:
        self.sinks = list(sinks)

    @classmethod
    def from_config(cls, config: Config, *, console: Console | None = None, console_actions: bool = True) -> Alerts:
        """``console_actions=False`` when ``console`` shows the actions already (the daemon's)."""
        sinks: list[Sink] = []
        if config.alerts.console:
            sinks.append(ConsoleSink(console, actions=console_actions))
        if config.log is not None:
            sinks.append(JsonLogSink(config.log))
        for hook in config.alerts.webhooks:
            sinks.append(WebhookSink(hook.url, hook.format, min_severity=hook.min_severity))
        return cls(sinks)

    def send(self, alert: Alert) -> None:
        for sink in self.sinks:
            try:
                sink.send(alert)
            except Exception:
                log.exception("alert sink %r failed", sink)

    def alert(
        self,
        severity: Severity,
        text: str,
        *,
        rule: str | None = None,
        account: int | str | None = None,
        ts: datetime | None = None,
        action: str | None = None,
    ) -> None:
        try:
            alert = Alert(ts or datetime.now(UTC), severity, rule, text, account, action)
        except ValueError:
            log.exception("malformed alert (%s): %s", severity, text)
            alert = Alert(datetime.now(UTC), "high", rule, text, account, action)
        self.send(alert)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Close every sink within one shared deadline of ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for sink in self.sinks:
            try:
                await sink.aclose(max(0.0, deadline - loop.time()))
            except Exception:
                log.exception("closing alert sink %r failed", sink)
