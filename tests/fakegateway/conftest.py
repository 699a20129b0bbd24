"""Fixtures: a fake Gateway, the real SDK client authenticated against it, its realtime client.

Everything binds to 127.0.0.1; nothing reaches the internet.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from .server import FakeGateway

MNQ = "CON.F.US.MNQ.Z25"


def bounded(seconds: float = 10.0) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Run an async test body under ``asyncio.wait_for(..., seconds)``."""

    def deco(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.wait_for(fn(*args, **kwargs), seconds)

        return wrapper

    return deco


@pytest.fixture(autouse=True)
def _quiet_sdk() -> None:
    pytest.importorskip("project_x_py")
    from .sdk import quiet_sdk_logging

    quiet_sdk_logging(logging.WARNING)


@pytest.fixture
async def gw() -> AsyncIterator[FakeGateway]:
    async with FakeGateway() as gateway:
        yield gateway


@pytest.fixture
async def px(gw: FakeGateway) -> AsyncIterator[Any]:
    """The real ``project_x_py.ProjectX``, authenticated against the fake."""
    from .sdk import make_client

    async with make_client(gw) as client:
        await asyncio.wait_for(client.authenticate(), 10)
        yield client


@pytest.fixture
async def rt(px: Any) -> AsyncIterator[Any]:
    """A *not yet connected* ``ProjectXRealtimeClient``; always cleaned up (bounded)."""
    from .sdk import make_realtime

    client = make_realtime(px)
    try:
        yield client
    finally:
        await asyncio.wait_for(client.cleanup(), 10)
