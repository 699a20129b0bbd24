"""A real browser for the status board's tests: Debian's headless Chromium driven over the
DevTools protocol (a websocket on 127.0.0.1, spoken with aiohttp; no other dependency).

``find_chromium`` installs the ``chromium`` package with apt-get when it is missing and this runs
as root; otherwise it fails loudly, never skips: a board nobody has seen render is not tested.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str:
    found = _which()
    if found:
        return found
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                pytest.fail(f"could not install chromium ({' '.join(command)}):\n{done.stderr[-2000:]}")
        found = _which()
        if found:
            return found
    pytest.fail(
        "the status board's browser tests need Chromium: `apt-get install chromium` (Debian) "
        "or put chromium on PATH; these tests do not skip"
    )


def _which() -> str | None:
    return next((path for name in NAMES if (path := shutil.which(name))), None)


class Browser:
    """One headless Chromium with one page; ``async with Browser(path) as page: ...``."""

    def __init__(self, executable: str, width: int = 430, height: int = 1400) -> None:
        self.executable = executable
        self.size = (width, height)
        self._process: asyncio.subprocess.Process | None = None
        self._profile = tempfile.TemporaryDirectory(prefix="riskc-chromium-")
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._drain: asyncio.Task | None = None

    async def __aenter__(self) -> Browser:
        self._process = await asyncio.create_subprocess_exec(
            self.executable,
            "--headless=new",
            "--no-sandbox",  # tests may run as root, where the sandbox refuses to start
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={self._profile.name}",
            f"--window-size={self.size[0]},{self.size[1]}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        port = await self._devtools_port()
        self._drain = asyncio.create_task(self._discard_stderr())  # a full pipe would stall chromium
        self._session = aiohttp.ClientSession()
        async with self._session.get(f"http://127.0.0.1:{port}/json/list") as response:
            pages = [t for t in await response.json() if t.get("type") == "page"]
        self._ws = await self._session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        return self

    async def _devtools_port(self) -> int:
        assert self._process is not None and self._process.stderr is not None
        async with asyncio.timeout(30):
            while True:
                line = (await self._process.stderr.readline()).decode(errors="replace")
                if not line:
                    raise AssertionError("chromium exited before it opened its DevTools port")
                found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
                if found:
                    return int(found.group(1))

    async def _discard_stderr(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        while await self._process.stderr.read(65536):
            pass

    async def __aexit__(self, *exc: object) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self._process.wait()
            if self._process.returncode is None:
                self._process.kill()
                await self._process.wait()
        if self._drain is not None:
            self._drain.cancel()
        self._profile.cleanup()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        ident = next(self._ids)
        await self._ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        async with asyncio.timeout(30):
            while True:
                message = await self._ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise AssertionError(f"DevTools connection closed ({message.type})")
                data = json.loads(message.data)
                if data.get("id") == ident:
                    if "error" in data:
                        raise AssertionError(f"{method}: {data['error']}")
                    return data.get("result", {})

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 30.0) -> Any:
        """Poll ``expression`` in the page until it is truthy; its value."""
        async with asyncio.timeout(timeout):
            while True:
                value = await self.evaluate(expression)
                if value:
                    return value
                await asyncio.sleep(0.1)

    async def screenshot(self, path: Path) -> Path:
        result = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(result["data"]))
        return path
