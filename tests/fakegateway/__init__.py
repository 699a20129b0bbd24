"""Fake ProjectX Gateway for tests: REST + SignalR hubs on 127.0.0.1 (no internet).

    from fakegateway import FakeGateway

    async with FakeGateway() as gw:
        gw.api_url, gw.user_hub_url, gw.market_hub_url
        gw.set_position("CON.F.US.MNQ.Z25", 2, 26246.0)
        await gw.push_user("GatewayUserPosition", {...})
        await gw.push_market("GatewayQuote", "CON.F.US.MNQ.Z25", {...})
        gw.requests, gw.invocations, gw.fail_next(...), await gw.drop_connections()

``fakegateway.sdk`` holds helpers that build the real project-x-py client against it.
See docs/sdk-notes.md.
"""

from .server import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_ACCOUNT_NAME,
    DEFAULT_CONTRACTS,
    FakeGateway,
    HubInvocation,
    RecordedRequest,
    make_jwt,
)

__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_ACCOUNT_NAME",
    "DEFAULT_CONTRACTS",
    "FakeGateway",
    "HubInvocation",
    "RecordedRequest",
    "make_jwt",
]
