"""The board's web server (aiohttp, on the daemon's own event loop): ``/`` the page,
``/api/status`` the JSON document, ``/api/events`` the same document as server-sent events,
pushed when it changes. Read-only: there is no route that changes anything.

Who may read it. By default it listens on 127.0.0.1 and answers only requests whose ``Host`` is
a loopback name (a web page elsewhere that rebinds its DNS name to 127.0.0.1 gets a 403, so it
cannot read balances through the trader's browser). With ``web.token`` set it may listen beyond
the machine, and every request must carry the token (``?token=`` or ``Authorization: Bearer``);
config.py refuses a non-loopback address without one.

A board that cannot start (the port is taken) is reported and the daemon goes on guarding: the
board is a window on the guard, never a reason for it to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from riskc.engine.daemon.board.status import status_json
from riskc.engine.daemon.config import WebConfig, is_loopback

if TYPE_CHECKING:
    from riskc.engine.daemon.daemon import Daemon

log = logging.getLogger("riskc.board")

PUSH_EVERY = 0.5  # seconds between two looks for a change to push
KEEPALIVE_EVERY = 15.0  # an SSE comment line when nothing changed, so proxies keep the stream open
_STATIC = {
    "/": ("index.html", "text/html"),
    "/board.js": ("board.js", "text/javascript"),
    "/board.css": ("board.css", "text/css"),
}
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


class BoardError(Exception):
    """The board could not start (e.g. the address is in use); the message says where and why."""


class Board:
    def __init__(self, daemon: Daemon, web_config: WebConfig) -> None:
        self.daemon = daemon
        self.config = web_config
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._cached: tuple[float, str] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(middlewares=[self._guard])
        for path in _STATIC:
            app.router.add_get(path, self._static)
        app.router.add_get("/api/status", self._status)
        app.router.add_get("/api/events", self._events)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port)
        try:
            await site.start()
        except OSError as error:
            await self._runner.cleanup()
            self._runner = None
            where = f"{self.config.host}:{self.config.port}"
            raise BoardError(f"cannot listen on {where}: {error.strerror or error}") from None
        port = self._runner.addresses[0][1]  # the real port when 0 asked for any free one
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        self.url = f"http://{host}:{port}/"
        return self.url

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None

    # -- the document ------------------------------------------------------------------------

    def text(self) -> str:
        """The status as JSON text, built at most every 0.2 s however many clients watch."""
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > 0.2:
            self._cached = (now, json.dumps(status_json(self.daemon), default=str, separators=(",", ":")))
        return self._cached[1]

    # -- handlers ----------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            return web.Response(status=refusal[0], text=refusal[1] + "\n", headers=_HEADERS)
        if request.method != "GET":
            return web.Response(status=405, text="the status board is read-only\n", headers=_HEADERS)
        response = await handler(request)
        for key, value in _HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    def _refusal(self, request: web.Request) -> tuple[int, str] | None:
        token = self.config.token
        if token is None:
            if not is_loopback(_hostname(request.host or "")):
                return 403, "the status board answers only on this machine (Host must be 127.0.0.1 or localhost)"
            return None
        given = request.query.get("token") or request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            return 401, "the status board needs its token: open the address with ?token=…"
        return None

    async def _static(self, request: web.Request) -> web.Response:
        name, content_type = _STATIC[request.path]
        body = (resources.files("riskc.engine.daemon.board") / "static" / name).read_bytes()
        return web.Response(body=body, content_type=content_type, charset="utf-8")

    async def _status(self, request: web.Request) -> web.Response:
        return web.Response(text=self.text(), content_type="application/json")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        last, quiet_since = None, time.monotonic()
        try:
            while not self._closing.is_set():
                text = self.text()
                if text != last:
                    await response.write(f"data: {text}\n\n".encode())
                    last, quiet_since = text, time.monotonic()
                elif time.monotonic() - quiet_since > KEEPALIVE_EVERY:
                    await response.write(b": keep-alive\n\n")
                    quiet_since = time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), PUSH_EVERY)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response


def _hostname(host: str) -> str:
    """``127.0.0.1:8642`` → ``127.0.0.1``; ``[::1]:8642`` → ``[::1]``."""
    return host if host.endswith("]") or ":" not in host else host.rsplit(":", 1)[0]


async def serve_board(daemon: Daemon) -> None:
    """The daemon service (``Daemon.run(..., services)``): the board, per ``web:``, until the
    daemon stops."""
    board = await start_board(daemon)
    if board is None:
        return
    daemon.board = board
    try:
        await asyncio.Event().wait()
    finally:
        await board.stop()


async def start_board(daemon: Daemon) -> Board | None:
    """Start the board if the config wants one; print and log where it is, or why it is not."""
    web_config = daemon.config.web
    if not web_config.enabled:
        return None
    board = Board(daemon, web_config)
    try:
        url = await board.start()
    except BoardError as error:
        daemon.console.print(f"[yellow]status board off[/yellow]: {error}; riskc goes on guarding without it")
        daemon.log_record({"kind": "board", "event": "unavailable", "detail": str(error)})
        return None
    shown = url + ("?token=…" if web_config.token else "")
    daemon.console.print(f"status board: [bold]{shown}[/bold]")
    daemon.log_record({"kind": "board", "event": "started", "url": url})
    return board
