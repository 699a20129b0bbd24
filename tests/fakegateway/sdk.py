"""Helpers that build the *real* project-x-py 4.4.1 objects against a :class:`FakeGateway`.

These mirror what the riskc ProjectX adapter has to do (docs/sdk-notes.md §1-§2):
``TradingSuite.create`` cannot be pointed at another host, so the client, the realtime
client and the managers are built by hand from one ``ProjectXConfig``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from project_x_py import ProjectX, ProjectXConfig
    from project_x_py.realtime import ProjectXRealtimeClient

    from .server import FakeGateway


def quiet_sdk_logging(level: int = logging.WARNING) -> None:
    """Silence project-x-py's own stdout handlers (docs/sdk-notes.md §6). The recipe lives in
    production code, ``engine.broker.projectx.quiet_sdk_logging``; the tests use the same one."""
    from riskc.engine.adapters.projectx.sdk import quiet_sdk_logging as quiet

    quiet(level)


def make_config(gw: FakeGateway, **overrides: Any) -> ProjectXConfig:
    """``ProjectXConfig`` pointing every URL at the fake (http:// is allowed for 127.0.0.1)."""
    from project_x_py import ProjectXConfig

    fields: dict[str, Any] = {
        "api_url": gw.api_url,
        "realtime_url": gw.user_hub_url,
        "user_hub_url": gw.user_hub_url,
        "market_hub_url": gw.market_hub_url,
        "timeout_seconds": 5,
        "requests_per_minute": 600,
    }
    fields.update(overrides)
    return ProjectXConfig(**fields)


def make_client(gw: FakeGateway, **config_overrides: Any) -> ProjectX:
    """An unauthenticated ``ProjectX`` for the fake's credentials. Use ``async with``."""
    from project_x_py import ProjectX

    return ProjectX(
        username=gw.username or "trader",
        api_key=gw.api_key or "fake-api-key-0123456789",
        config=make_config(gw, **config_overrides),
    )


def make_realtime(client: ProjectX) -> ProjectXRealtimeClient:
    """A realtime client for an *authenticated* ``client`` (same config -> same hub URLs)."""
    from project_x_py.realtime import ProjectXRealtimeClient

    assert client.account_info is not None, "authenticate() first"
    rt = ProjectXRealtimeClient(
        jwt_token=client.session_token,
        account_id=str(client.account_info.id),
        config=client.config,
    )
    # Turn the stale-market-feed watchdog off: on a quiet market hub it tears both hubs down
    # every 5 s after 30 s of silence (realtime/health_monitoring.py:170-171, 302-346, 647-697;
    # pinned by test_stale_market_feed_watchdog_reconnects_both_hubs_in_a_loop).
    rt.stale_feed_seconds = float("inf")
    return rt
