"""A small fake ProjectX Gateway (REST + SignalR JSON hubs) on 127.0.0.1.

It speaks exactly what project-x-py 4.4.1 sends (see docs/sdk-notes.md):

* REST under ``/api``: ``/Auth/loginKey``, ``/Auth/validate``, ``/Account/search``,
  ``/Position/searchOpen``, ``/Position/closeContract``, ``/Position/partialCloseContract``,
  ``/Order/place``, ``/Order/modify``, ``/Order/cancel``, ``/Order/searchOpen``,
  ``/Order/search``, ``/Order/searchById``, ``/Order/v2/query``, ``/Trade/search``,
  ``/Contract/searchById``, ``/Contract/search``, ``/Contract/available``, ``GET /Status/ping``.
  Every request is recorded in :attr:`FakeGateway.requests`.
* SignalR (JSON protocol, WebSocket transport) on ``/hubs/user`` and ``/hubs/market``:
  ``POST <hub>/negotiate`` (pysignalr always negotiates), the handshake
  ``{"protocol":"json","version":1}\\x1e`` -> ``{}\\x1e``, pings (type 6), client
  invocations (type 1, recorded in :attr:`FakeGateway.invocations`), server pushes
  ``{"type":1,"target":...,"arguments":[...]}`` and close messages (type 7).

State is in memory (accounts, positions, open orders, order history, trades, contracts,
last prices). Several logins (:meth:`FakeGateway.add_login`) with several accounts each
(:meth:`FakeGateway.add_account`), kept apart as the real Gateway keeps them: a login's token
lists, reads and trades only its own accounts, and a user-hub connection hears an account's
orders, positions and trades only once it subscribed that account's id (``SubscribeOrders(id)``,
...), and only if the account is its login's; ``SubscribeAccounts`` brings the login's accounts.
Broker mutations (close, partial close, market order, cancel, ...) change the
state and, like the real Gateway, push ``GatewayUserOrder`` / ``GatewayUserTrade`` /
``GatewayUserPosition`` / ``GatewayUserAccount`` to subscribed user-hub connections
(``emit_events=True``).

Faults: :meth:`FakeGateway.fail_next` (HTTP status, delay -> client timeout,
``success: false`` replies, with or without the mutation taking effect),
:meth:`FakeGateway.drop_connections` (server closes hub sockets, several ways),
:meth:`FakeGateway.reject_hub_connections`, :meth:`FakeGateway.revoke_tokens`, and
``strict_connection_ids=True`` (a negotiated connection id is single-use, as in ASP.NET Core).

Nothing here imports project-x-py.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import itertools
import json
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

RS = "\x1e"  # SignalR record separator
DEFAULT_LOGIN = ""  # the owner of the accounts of the constructor's login (``username``/``api_key``)
_USER: contextvars.ContextVar[str] = contextvars.ContextVar("fake_gateway_user", default=DEFAULT_LOGIN)

# SignalR message types
INVOCATION = 1
STREAM_ITEM = 2
COMPLETION = 3
STREAM_INVOCATION = 4
CANCEL_INVOCATION = 5
PING = 6
CLOSE = 7

# Gateway enums (PRODUCT.md §6.1)
BUY, SELL = 0, 1
LIMIT, MARKET, STOP_LIMIT, STOP, TRAILING_STOP, JOIN_BID, JOIN_ASK = 1, 2, 3, 4, 5, 6, 7
ST_OPEN, ST_FILLED, ST_CANCELLED, ST_EXPIRED, ST_REJECTED, ST_PENDING = 1, 2, 3, 4, 5, 6
ST_SUSPENDED = 8  # a bracket child waiting for its parent: not listed by /Order/searchOpen
POS_UNDEFINED, POS_LONG, POS_SHORT = 0, 1, 2

DEFAULT_ACCOUNT_ID = 13298777
DEFAULT_ACCOUNT_NAME = "50KTC-V2-1234567"

DEFAULT_CONTRACTS: list[dict[str, Any]] = [
    {
        "id": "CON.F.US.MNQ.Z25",
        "name": "MNQZ5",
        "description": "Micro E-mini Nasdaq-100: December 2025",
        "tickSize": 0.25,
        "tickValue": 0.5,
        "activeContract": True,
        "symbolId": "F.US.MNQ",
    },
    {
        "id": "CON.F.US.MES.Z25",
        "name": "MESZ5",
        "description": "Micro E-mini S&P 500: December 2025",
        "tickSize": 0.25,
        "tickValue": 1.25,
        "activeContract": True,
        "symbolId": "F.US.MES",
    },
    {
        "id": "CON.F.US.ENQ.Z25",
        "name": "NQZ5",
        "description": "E-mini Nasdaq-100: December 2025",
        "tickSize": 0.25,
        "tickValue": 5.0,
        "activeContract": True,
        "symbolId": "F.US.ENQ",
    },
    {
        "id": "CON.F.US.EP.Z25",
        "name": "ESZ5",
        "description": "E-mini S&P 500: December 2025",
        "tickSize": 0.25,
        "tickValue": 12.5,
        "activeContract": True,
        "symbolId": "F.US.EP",
    },
    {
        "id": "CON.F.US.CLE.Z25",
        "name": "CLZ5",
        "description": "Crude Light: December 2025",
        "tickSize": 0.01,
        "tickValue": 10.0,
        "activeContract": True,
        "symbolId": "F.US.CLE",
    },
    {
        "id": "CON.F.US.GCE.Z25",
        "name": "GCZ5",
        "description": "Gold: December 2025",
        "tickSize": 0.1,
        "tickValue": 10.0,
        "activeContract": True,
        "symbolId": "F.US.GCE",
    },
]

# Which client subscription makes a connection receive a pushed target.
_USER_TARGET_SUBSCRIPTION = {
    "GatewayUserAccount": "SubscribeAccounts",
    "GatewayUserOrder": "SubscribeOrders",
    "GatewayUserPosition": "SubscribePositions",
    "GatewayUserTrade": "SubscribeTrades",
}
_MARKET_TARGET_SUBSCRIPTION = {
    "GatewayQuote": "SubscribeContractQuotes",
    "GatewayTrade": "SubscribeContractTrades",
    "GatewayDepth": "SubscribeContractMarketDepth",
}


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def make_jwt(subject: str = "trader", ttl_seconds: int = 3600) -> str:
    """An unsigned JWT whose payload carries ``exp`` (the SDK decodes it for expiry)."""

    def b64(obj: dict[str, Any]) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = b64({"alg": "none", "typ": "JWT"})
    payload = b64({"sub": subject, "jti": uuid.uuid4().hex, "exp": int(time.time()) + ttl_seconds})
    return f"{header}.{payload}.fakesignature"


def ok(**fields: Any) -> dict[str, Any]:
    return {**fields, "success": True, "errorCode": 0, "errorMessage": None}


def fail(error_code: int, message: str, **fields: Any) -> dict[str, Any]:
    return {**fields, "success": False, "errorCode": error_code, "errorMessage": message}


@dataclass
class RecordedRequest:
    """One REST request as received. ``path`` is relative to the API root (no ``/api``)."""

    method: str
    path: str
    json: Any
    headers: dict[str, str]
    query: dict[str, str]
    ts: float = field(default_factory=time.monotonic)


@dataclass
class HubInvocation:
    """One client -> server hub message of type 1 (e.g. ``SubscribeOrders``)."""

    hub: str
    target: str
    arguments: list[Any]
    connection_id: str
    invocation_id: str | None
    ts: float = field(default_factory=time.monotonic)


@dataclass
class Fault:
    status: int = 200
    delay: float = 0.0
    body: Any = None
    then_apply: bool = False
    detached: bool = False  # the effect happens after ``delay`` whether or not the client still waits
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class HubConnection:
    hub: str
    connection_id: str
    ws: web.WebSocketResponse
    request: web.Request
    subscriptions: set[tuple[str, Any]] = field(default_factory=set)
    handshaken: bool = False
    silent: bool = False  # sends nothing any more (pings, pushes): a half-open socket
    user: str = DEFAULT_LOGIN  # the login whose token opened it: it hears only that login's accounts


class FakeGateway:
    """In-memory fake of the ProjectX Gateway. Use ``async with FakeGateway() as gw``."""

    def __init__(
        self,
        *,
        username: str | None = "trader",
        api_key: str | None = "fake-api-key-0123456789",
        account_id: int = DEFAULT_ACCOUNT_ID,
        account_name: str = DEFAULT_ACCOUNT_NAME,
        balance: float = 50000.0,
        contracts: list[dict[str, Any]] | None = None,
        token_ttl_seconds: int = 24 * 3600,
        require_subscription: bool = True,
        strict_connection_ids: bool = False,
        emit_events: bool = True,
        keepalive_interval: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        # The real Gateway (ASP.NET Core SignalR) sends a ping ``{"type":6}`` every 15 s on each
        # hub connection; ``keepalive_interval`` makes the fake do the same (None: no pings).
        self.keepalive_interval = keepalive_interval
        self.username = username
        self.api_key = api_key
        self.token_ttl_seconds = token_ttl_seconds
        self.require_subscription = require_subscription
        self.strict_connection_ids = strict_connection_ids
        self.emit_events = emit_events
        self.host = host
        self._port = port

        self.account_id = account_id
        self.accounts: list[dict[str, Any]] = [
            {
                "id": account_id,
                "name": account_name,
                "balance": balance,
                "canTrade": True,
                "isVisible": True,
                "simulated": True,
            },
        ]
        # Several logins, several accounts each, as the real Gateway has them: a login sees (in
        # /Account/search), trades and hears (on the user hub) only its own accounts.
        self.logins: dict[str, str] = {}  # user name -> API key, beyond the constructor's login
        self.owner: dict[int, str] = {account_id: DEFAULT_LOGIN}  # account id -> user name
        self.token_user: dict[str, str] = {}
        self.contracts: dict[str, dict[str, Any]] = {
            c["id"]: dict(c) for c in (contracts if contracts is not None else DEFAULT_CONTRACTS)
        }
        # keyed by (accountId, contractId)
        self.positions: dict[tuple[int, str], dict[str, Any]] = {}
        self.orders: dict[int, dict[str, Any]] = {}  # every order ever (history)
        self.trades: list[dict[str, Any]] = []
        self.last_price: dict[str, float] = {}

        self.requests: list[RecordedRequest] = []
        self.invocations: list[HubInvocation] = []
        self.negotiations: list[dict[str, Any]] = []  # {"hub", "connection_id", "query"}
        self.ws_attempts: list[dict[str, Any]] = []  # {"hub", "connection_id", "query", "status"}
        self.tokens: set[str] = set()
        self.token_expiry: dict[str, float] = {}  # token -> epoch seconds (REST answers 401 after)

        self._faults: dict[str, deque[Fault]] = {}
        self._hub_reject: dict[str, deque[int]] = {"user": deque(), "market": deque()}
        self._negotiated: dict[str, str] = {}  # connection id -> hub (unused ids)
        self._connections: dict[str, list[HubConnection]] = {"user": [], "market": []}
        self._ids = itertools.count(1000)
        self._changed = asyncio.Condition()
        self._late: set[asyncio.Future[Any]] = set()  # effects still to land (act_late)
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> FakeGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{path:.*}", self._rest)
        for hub in ("user", "market"):
            app.router.add_post(f"/hubs/{hub}/negotiate", self._negotiate)
            app.router.add_get(f"/hubs/{hub}", self._hub)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        for conns in self._connections.values():
            for conn in list(conns):
                await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ URLs
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api"

    @property
    def user_hub_url(self) -> str:
        return f"{self.base_url}/hubs/user"

    @property
    def market_hub_url(self) -> str:
        return f"{self.base_url}/hubs/market"

    # ------------------------------------------------------------------ state helpers (tests)
    def contract(self, contract_id: str) -> dict[str, Any]:
        return self.contracts[contract_id]

    def set_contract(self, **contract: Any) -> dict[str, Any]:
        self.contracts[contract["id"]] = contract
        return contract

    def add_login(self, username: str, api_key: str) -> None:
        """Another login (user name and API key) of this Gateway; it owns no account yet."""
        self.logins[username] = api_key

    def add_account(
        self,
        account_id: int,
        name: str,
        *,
        balance: float = 50000.0,
        can_trade: bool = True,
        login: str | None = None,
    ) -> dict[str, Any]:
        """An account of ``login`` (a user name given to ``add_login``; None: the constructor's)."""
        account = {
            "id": account_id,
            "name": name,
            "balance": balance,
            "canTrade": can_trade,
            "isVisible": True,
            "simulated": True,
        }
        self.accounts.append(account)
        self.owner[account_id] = DEFAULT_LOGIN if login is None else login
        return account

    def set_price(self, contract_id: str, price: float) -> None:
        """Price used to fill market orders / closes for ``contract_id``."""
        self.last_price[contract_id] = price

    def set_position(
        self,
        contract_id: str,
        size: int,
        average_price: float = 0.0,
        *,
        account_id: int | None = None,
        type: int | None = None,
        id: int | None = None,
    ) -> dict[str, Any] | None:
        """Set the position for ``contract_id``: ``size`` > 0 long, < 0 short, 0 flat.

        Only changes the state (no hub push); use :meth:`push_user` to also announce it.
        """
        acct = self.account_id if account_id is None else account_id
        key = (acct, contract_id)
        if size == 0:
            self.positions.pop(key, None)
            return None
        existing = self.positions.get(key)
        pos = {
            "id": id if id is not None else (existing["id"] if existing else next(self._ids)),
            "accountId": acct,
            "contractId": contract_id,
            "creationTimestamp": existing["creationTimestamp"] if existing else now_iso(),
            "type": type if type is not None else (POS_LONG if size > 0 else POS_SHORT),
            "size": abs(size),
            "averagePrice": average_price,
        }
        self.positions[key] = pos
        return pos

    def position(self, contract_id: str, account_id: int | None = None) -> dict[str, Any] | None:
        return self.positions.get((self.account_id if account_id is None else account_id, contract_id))

    def signed_size(self, contract_id: str, account_id: int | None = None) -> int:
        pos = self.position(contract_id, account_id)
        if pos is None:
            return 0
        return pos["size"] if pos["type"] == POS_LONG else -pos["size"]

    def add_order(
        self,
        contract_id: str,
        *,
        type: int,
        side: int,
        size: int,
        limit_price: float | None = None,
        stop_price: float | None = None,
        status: int = ST_OPEN,
        account_id: int | None = None,
        custom_tag: str | None = None,
    ) -> dict[str, Any]:
        """Add a working (or any status) order to the book without a hub push."""
        oid = next(self._ids)
        contract = self.contracts.get(contract_id, {})
        order = {
            "id": oid,
            "accountId": self.account_id if account_id is None else account_id,
            "contractId": contract_id,
            "symbolId": contract.get("symbolId"),
            "creationTimestamp": now_iso(),
            "updateTimestamp": now_iso(),
            "status": status,
            "type": type,
            "side": side,
            "size": size,
            "limitPrice": limit_price,
            "stopPrice": stop_price,
            "fillVolume": 0,
            "filledPrice": None,
            "customTag": custom_tag,
        }
        self.orders[oid] = order
        return order

    def open_orders(self, account_id: int | None = None) -> list[dict[str, Any]]:
        acct = self.account_id if account_id is None else account_id
        return [o for o in self.orders.values() if o["accountId"] == acct and o["status"] in (ST_OPEN, ST_PENDING)]

    def add_trade(self, **trade: Any) -> dict[str, Any]:
        base = {
            "id": next(self._ids),
            "accountId": self.account_id,
            "contractId": "",
            "creationTimestamp": now_iso(),
            "price": 0.0,
            "profitAndLoss": None,
            "fees": 0.0,
            "side": BUY,
            "size": 1,
            "voided": False,
            "orderId": 0,
        }
        base.update(trade)
        self.trades.append(base)
        return base

    # ------------------------------------------------------------------ faults
    def fail_next(
        self,
        path: str,
        *,
        status: int = 500,
        times: int = 1,
        delay: float = 0.0,
        body: Any = None,
        success: bool | None = None,
        error_code: int = 1,
        error_message: str = "Injected failure",
        then_apply: bool = False,
    ) -> None:
        """Make the next ``times`` requests to ``path`` (e.g. ``"/Position/closeContract"``) fail.

        * ``status=500`` (default): HTTP error with a text body.
        * ``success=False``: HTTP 200 with ``{"success": false, "errorCode", "errorMessage"}``.
        * ``body=...``: HTTP ``status`` with this JSON body verbatim.
        * ``delay=s``: sleep before answering (beyond the SDK's ``timeout_seconds`` -> client
          timeout). With ``status=200`` and no body (see :meth:`delay_next`) the normal reply
          follows the delay.
        * ``then_apply=True``: the mutation still takes effect (the broker acted but the reply
          was lost or wrong) - the case riskc must verify against broker state.
        """
        if success is False:
            status, body = 200, fail(error_code, error_message)
        if status == 200 and body is None:
            then_apply = True  # a pure delay: the normal reply follows it
        fault = Fault(status=status, delay=delay, body=body, then_apply=then_apply)
        q = self._faults.setdefault(path, deque())
        for _ in range(times):
            q.append(fault)

    def delay_next(self, path: str, seconds: float, *, times: int = 1) -> None:
        """Answer the next request(s) to ``path`` normally, but only after ``seconds``."""
        q = self._faults.setdefault(path, deque())
        for _ in range(times):
            q.append(Fault(status=200, delay=seconds, body=None, then_apply=True))

    def rate_limit_next(self, path: str, *, retry_after: int = 2, times: int = 1) -> None:
        """Answer the next request(s) to ``path`` with ``429`` and ``Retry-After`` (the request
        is not processed), as the Gateway does past about 200 requests a minute per login."""
        q = self._faults.setdefault(path, deque())
        for _ in range(times):
            q.append(Fault(status=429, headers={"Retry-After": str(retry_after)}))

    def act_late(self, path: str, seconds: float, *, times: int = 1) -> None:
        """The next request(s) to ``path`` take effect ``seconds`` after they arrive, as the real
        Gateway does with a slow order: the broker acts on what it received even when the client
        has given up waiting (timed out, disconnected); the reply follows the effect."""
        q = self._faults.setdefault(path, deque())
        for _ in range(times):
            q.append(Fault(status=200, delay=seconds, body=None, then_apply=True, detached=True))

    def reject_hub_connections(self, hub: str, status: int = 503, times: int = 1) -> None:
        """Refuse the next ``times`` WebSocket upgrades on ``hub`` with HTTP ``status``."""
        for _ in range(times):
            self._hub_reject[hub].append(status)

    def silence(self, hub: str) -> int:
        """The hub's open sockets stay open but send nothing any more, not even keep-alive pings
        (a half-open connection: a dead NAT entry, a stuck proxy). Returns how many."""
        conns = self.connections(hub)
        for conn in conns:
            conn.silent = True
        return len(conns)

    def revoke_tokens(self) -> None:
        """Invalidate every issued session token (REST then answers 401, hubs refuse)."""
        self.tokens.clear()

    # ------------------------------------------------------------------ hub API (tests)
    def connections(self, hub: str) -> list[HubConnection]:
        return [c for c in self._connections[hub] if not c.ws.closed]

    async def push_user(self, target: str, data: dict[str, Any], *, action: int = 1) -> int:
        """Push ``target`` with ``args = [{"action": action, "data": data}]`` (as recorded).

        Returns how many user-hub connections received it (only those that subscribed to the
        matching ``Subscribe*`` method, unless ``require_subscription=False``).
        """
        return await self.push_raw("user", target, [{"action": action, "data": data}])

    async def push_market(self, target: str, contract_id: str, data: Any) -> int:
        """Push ``target`` with ``args = [contract_id, data]`` (as recorded)."""
        return await self.push_raw("market", target, [contract_id, data])

    async def push_raw(self, hub: str, target: str, args: list[Any]) -> int:
        """Push an invocation with exactly ``args`` (e.g. a line of a recording)."""
        frame = json.dumps({"type": INVOCATION, "target": target, "arguments": args}) + RS
        delivered = 0
        for conn in self.connections(hub):
            if conn.silent or not self._wants(conn, target, args):
                continue
            try:
                await conn.ws.send_str(frame)
                delivered += 1
            except (ConnectionError, RuntimeError):
                continue
        return delivered

    async def push_recording_line(self, line: str | dict[str, Any]) -> int:
        """Push one recorded JSONL line (PRODUCT.md §6.1) to its hub."""
        rec = json.loads(line) if isinstance(line, str) else line
        return await self.push_raw(rec["hub"], rec["target"], rec["args"])

    def _wants(self, conn: HubConnection, target: str, args: list[Any]) -> bool:
        if not self.require_subscription:
            return True
        if conn.hub == "user":
            method = _USER_TARGET_SUBSCRIPTION.get(target)
            if method is None:
                return True  # e.g. GatewayLogout
            data = args[0].get("data", args[0]) if args and isinstance(args[0], dict) else {}
            if method == "SubscribeAccounts":  # every account of the connection's login
                acct = data.get("id") if isinstance(data, dict) else None
                return (method, None) in conn.subscriptions and self._hears(conn, acct)
            acct = data.get("accountId") if isinstance(data, dict) else None
            # Per account, as subscribed (SubscribeOrders(accountId), ...), and only the login's own.
            return ((method, acct) in conn.subscriptions and self._hears(conn, acct)) or (
                acct is None and any(m == method for m, _ in conn.subscriptions)
            )
        method = _MARKET_TARGET_SUBSCRIPTION.get(target)
        if method is None:
            return True
        cid = args[0] if args else None
        return (method, cid) in conn.subscriptions

    def _hears(self, conn: HubConnection, account_id: Any) -> bool:
        return account_id is None or self.owner.get(account_id, DEFAULT_LOGIN) == conn.user

    def subscribed_accounts(self, conn: HubConnection) -> set[Any]:
        """The account ids a user-hub connection subscribed (orders, positions and trades each)."""
        methods = ("SubscribeOrders", "SubscribePositions", "SubscribeTrades")
        return {
            acct for acct in {a for m, a in conn.subscriptions} if all((m, acct) in conn.subscriptions for m in methods)
        }

    async def drop_connections(self, hub: str | None = None, *, mode: str = "close") -> int:
        """Server-side disconnect of every hub socket (``hub`` = "user", "market" or both).

        ``mode``: ``"close"`` WebSocket close frame (1001); ``"abort"`` TCP abort, no close
        frame; ``"signalr_close"`` SignalR close message ``{"type":7}`` then close;
        ``"signalr_close_error"`` ``{"type":7,"error":"..."}`` then close.
        Returns the number of sockets dropped.
        """
        hubs = [hub] if hub else ["user", "market"]
        dropped = 0
        for h in hubs:
            for conn in self.connections(h):
                dropped += 1
                try:
                    if mode == "signalr_close":
                        await conn.ws.send_str(json.dumps({"type": CLOSE, "allowReconnect": True}) + RS)
                    elif mode == "signalr_close_error":
                        await conn.ws.send_str(
                            json.dumps({"type": CLOSE, "error": "Server dropped the connection"}) + RS
                        )
                    if mode == "abort":
                        transport = conn.request.transport
                        if transport is not None:
                            transport.abort()
                        continue
                    await conn.ws.close(code=1001, message=b"going away")
                except (ConnectionError, RuntimeError):
                    pass
        return dropped

    async def wait_for(self, predicate: Any, timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` is true (re-checked on every request/invocation)."""

        async def _wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(_wait(), timeout)

    def invocations_of(self, target: str, hub: str | None = None) -> list[HubInvocation]:
        return [i for i in self.invocations if i.target == target and (hub is None or i.hub == hub)]

    async def wait_for_invocation(
        self, target: str, *, hub: str | None = None, count: int = 1, timeout: float = 5.0
    ) -> list[HubInvocation]:
        await self.wait_for(lambda: len(self.invocations_of(target, hub)) >= count, timeout)
        return self.invocations_of(target, hub)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    async def wait_for_request(self, path: str, *, count: int = 1, timeout: float = 5.0) -> list[RecordedRequest]:
        await self.wait_for(lambda: len(self.requests_to(path)) >= count, timeout)
        return self.requests_to(path)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------------ REST
    def _request_user(self, request: web.Request) -> str:
        auth = request.headers.get("Authorization", "")
        return self.token_user.get(auth[7:] if auth.startswith("Bearer ") else "", DEFAULT_LOGIN)

    def _token_ok(self, request: web.Request) -> bool:
        """A token the fake issued, not revoked and not expired (the real Gateway answers 401)."""
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        return token in self.tokens and time.time() < self.token_expiry.get(token, float("inf"))

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
        self.requests.append(RecordedRequest(request.method, path, body, dict(request.headers), dict(request.query)))
        await self._notify()

        fault = None
        q = self._faults.get(path)
        if q:
            fault = q.popleft()
            if fault.detached and path != "/Auth/loginKey" and self._token_ok(request):
                _USER.set(self._request_user(request))
                handler = self._routes().get(path)
                if handler is not None:
                    late = asyncio.ensure_future(self._after(fault.delay, handler, body or {}))
                    self._late.add(late)
                    late.add_done_callback(self._late.discard)
                    status, payload = await asyncio.shield(late)
                    return web.json_response(payload, status=status)
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if not fault.then_apply:
                return self._fault_response(fault)

        if path == "/Status/ping":
            return web.json_response("pong")
        if path == "/Auth/loginKey":
            result: tuple[int, Any] = self._login(body or {})
        elif not self._token_ok(request):
            result = (401, None)
        else:
            _USER.set(self._request_user(request))
            handler = self._routes().get(path)
            result = (404, None) if handler is None else await handler(body or {})
        status, payload = result

        if fault is not None and (fault.status != 200 or fault.body is not None):
            return self._fault_response(fault)
        if status == 401:
            return web.Response(status=401)
        if status == 404:
            return web.Response(status=404, text="Not Found")
        return web.json_response(payload, status=status)

    @staticmethod
    async def _after(seconds: float, handler: Any, body: dict[str, Any]) -> tuple[int, Any]:
        await asyncio.sleep(seconds)
        return await handler(body)

    @staticmethod
    def _fault_response(fault: Fault) -> web.Response:
        if fault.body is not None:
            return web.json_response(fault.body, status=fault.status, headers=fault.headers)
        if fault.status >= 400:
            return web.Response(status=fault.status, text=f"Injected HTTP {fault.status}", headers=fault.headers)
        return web.json_response(ok(), status=fault.status)

    def _routes(self) -> dict[str, Any]:
        return {
            "/Auth/validate": self._validate,
            "/Auth/logout": self._logout,
            "/Account/search": self._account_search,
            "/Position/searchOpen": self._position_search_open,
            "/Position/closeContract": self._position_close,
            "/Position/partialCloseContract": self._position_partial_close,
            "/Order/place": self._order_place,
            "/Order/modify": self._order_modify,
            "/Order/cancel": self._order_cancel,
            "/Order/searchOpen": self._order_search_open,
            "/Order/search": self._order_search,
            "/Order/searchById": self._order_search_by_id,
            "/Order/v2/query": self._order_query,
            "/Trade/search": self._trade_search,
            "/Contract/searchById": self._contract_search_by_id,
            "/Contract/search": self._contract_search,
            "/Contract/available": self._contract_available,
        }

    def _issue_token(self, user: str = DEFAULT_LOGIN) -> str:
        token = make_jwt(user or self.username or "trader", self.token_ttl_seconds)
        self.tokens.add(token)
        self.token_user[token] = user
        self.token_expiry[token] = time.time() + self.token_ttl_seconds
        return token

    def _login(self, body: dict[str, Any]) -> tuple[int, Any]:
        user = body.get("userName")
        if isinstance(user, str) and user in self.logins:
            if body.get("apiKey") != self.logins[user]:
                return 200, fail(3, "Invalid credentials", token=None)
            return 200, ok(token=self._issue_token(user))
        if (self.username is not None and body.get("userName") != self.username) or (
            self.api_key is not None and body.get("apiKey") != self.api_key
        ):
            return 200, fail(3, "Invalid credentials", token=None)
        return 200, ok(token=self._issue_token())

    async def _validate(self, body: dict[str, Any]) -> tuple[int, Any]:
        return 200, ok(newToken=self._issue_token(_USER.get()))

    async def _logout(self, body: dict[str, Any]) -> tuple[int, Any]:
        return 200, ok()

    async def _account_search(self, body: dict[str, Any]) -> tuple[int, Any]:
        accounts = [a for a in self.accounts if self.owner.get(a["id"], DEFAULT_LOGIN) == _USER.get()]
        if body.get("onlyActiveAccounts"):
            accounts = [a for a in accounts if a.get("canTrade", True)]
        return 200, ok(accounts=[dict(a) for a in accounts])

    def _account_ok(self, body: dict[str, Any]) -> bool:
        """The account exists and belongs to the login whose token made the request."""
        account_id = body.get("accountId")
        return (
            any(a["id"] == account_id for a in self.accounts)
            and self.owner.get(account_id, DEFAULT_LOGIN) == _USER.get()
        )

    async def _position_search_open(self, body: dict[str, Any]) -> tuple[int, Any]:
        if not self._account_ok(body):
            return 200, fail(1, "Account not found", positions=[])
        acct = body["accountId"]
        return 200, ok(positions=[dict(p) for (a, _), p in self.positions.items() if a == acct])

    async def _position_close(self, body: dict[str, Any]) -> tuple[int, Any]:
        if not self._account_ok(body):
            return 200, fail(1, "Account not found")
        pos = self.position(body.get("contractId", ""), body["accountId"])
        if pos is None:
            return 200, fail(2, "Position not found")
        side = SELL if pos["type"] == POS_LONG else BUY
        await self._fill_market(body["accountId"], pos["contractId"], side, pos["size"])
        return 200, ok()

    async def _position_partial_close(self, body: dict[str, Any]) -> tuple[int, Any]:
        if not self._account_ok(body):
            return 200, fail(1, "Account not found")
        pos = self.position(body.get("contractId", ""), body["accountId"])
        size = body.get("size")
        if pos is None:
            return 200, fail(2, "Position not found")
        if not isinstance(size, int) or size <= 0 or size > pos["size"]:
            return 200, fail(2, "Invalid size")
        side = SELL if pos["type"] == POS_LONG else BUY
        await self._fill_market(body["accountId"], pos["contractId"], side, size)
        return 200, ok()

    async def _order_place(self, body: dict[str, Any]) -> tuple[int, Any]:
        if not self._account_ok(body):
            return 200, fail(1, "Account not found", orderId=None)
        cid = body.get("contractId")
        if cid not in self.contracts:
            return 200, fail(2, "Contract not found", orderId=None)
        otype, side, size = body.get("type"), body.get("side"), body.get("size")
        if otype not in (1, 2, 3, 4, 5, 6, 7) or side not in (0, 1) or not isinstance(size, int) or size <= 0:
            return 200, fail(2, "Invalid order", orderId=None)
        if otype == STOP and body.get("stopPrice") is None:
            return 200, fail(2, "Stop price required", orderId=None)
        if otype == MARKET:
            order = await self._fill_market(body["accountId"], cid, side, size, custom_tag=body.get("customTag"))
            return 200, ok(orderId=order["id"])
        order = self.add_order(
            cid,
            type=otype,
            side=side,
            size=size,
            limit_price=body.get("limitPrice"),
            stop_price=body.get("stopPrice"),
            account_id=body["accountId"],
            custom_tag=body.get("customTag"),
        )
        await self._emit_user("GatewayUserOrder", order)
        return 200, ok(orderId=order["id"])

    def _find_open_order(self, body: dict[str, Any]) -> dict[str, Any] | None:
        order = self.orders.get(body.get("orderId"))  # type: ignore[arg-type]
        if (
            order is None
            or not self._account_ok(body)
            or order["accountId"] != body.get("accountId")
            or order["status"] not in (ST_OPEN, ST_PENDING)
        ):
            return None
        return order

    async def _order_modify(self, body: dict[str, Any]) -> tuple[int, Any]:
        order = self._find_open_order(body)
        if order is None:
            return 200, fail(2, "Order not found")
        for src, dst in (
            ("size", "size"),
            ("limitPrice", "limitPrice"),
            ("stopPrice", "stopPrice"),
            ("trailPrice", "trailPrice"),
        ):
            if body.get(src) is not None:
                order[dst] = body[src]
        order["updateTimestamp"] = now_iso()
        await self._emit_user("GatewayUserOrder", order)
        return 200, ok()

    async def _order_cancel(self, body: dict[str, Any]) -> tuple[int, Any]:
        order = self._find_open_order(body)
        if order is None:
            return 200, fail(2, "Order not found")
        order["status"] = ST_CANCELLED
        order["updateTimestamp"] = now_iso()
        await self._emit_user("GatewayUserOrder", order)
        return 200, ok()

    async def _order_search_open(self, body: dict[str, Any]) -> tuple[int, Any]:
        if not self._account_ok(body):
            return 200, fail(1, "Account not found", orders=[])
        return 200, ok(orders=[dict(o) for o in self.open_orders(body["accountId"])])

    async def _order_search(self, body: dict[str, Any]) -> tuple[int, Any]:
        if not self._account_ok(body):
            return 200, fail(1, "Account not found", orders=[])
        acct = body["accountId"]
        return 200, ok(orders=[dict(o) for o in self.orders.values() if o["accountId"] == acct])

    async def _order_query(self, body: dict[str, Any]) -> tuple[int, Any]:
        """``/Order/v2/query`` (project-x-py's ``query_orders``): ``{"filter": {"accountId",
        "statuses"?, "contractId"?}, "pageSize", "pageOffset", "includeTotalCount"}``."""
        flt = body.get("filter") or {}
        if not self._account_ok(flt):
            return 200, fail(1, "Account not found", orders=[])
        statuses, cid = flt.get("statuses"), flt.get("contractId")
        found = [
            dict(o)
            for o in self.orders.values()
            if o["accountId"] == flt["accountId"]
            and (not statuses or o["status"] in statuses)
            and (not cid or o["contractId"] == cid)
        ]
        start, size = int(body.get("pageOffset") or 0), int(body.get("pageSize") or 50)
        extra = {"totalCount": len(found)} if body.get("includeTotalCount") else {}
        return 200, ok(orders=found[start : start + size], **extra)

    async def _order_search_by_id(self, body: dict[str, Any]) -> tuple[int, Any]:
        order = self.orders.get(body.get("orderId"))  # type: ignore[arg-type]
        if order is None or order["accountId"] != body.get("accountId") or not self._account_ok(body):
            return 200, fail(2, "Order not found", order=None)
        return 200, ok(order=dict(order))

    async def _trade_search(self, body: dict[str, Any]) -> tuple[int, Any]:
        if not self._account_ok(body):
            return 200, fail(1, "Account not found", trades=[])
        acct = body["accountId"]
        start = body.get("startTimestamp")
        end = body.get("endTimestamp")
        out = []
        for t in self.trades:
            if t["accountId"] != acct:
                continue
            ts = datetime.fromisoformat(t["creationTimestamp"])
            if start and ts < datetime.fromisoformat(start):
                continue
            if end and ts > datetime.fromisoformat(end):
                continue
            out.append(dict(t))
        return 200, ok(trades=out)

    async def _contract_search_by_id(self, body: dict[str, Any]) -> tuple[int, Any]:
        contract = self.contracts.get(body.get("contractId", ""))
        if contract is None:
            return 200, fail(1, "Contract not found", contract=None)
        return 200, ok(contract=dict(contract))

    async def _contract_search(self, body: dict[str, Any]) -> tuple[int, Any]:
        text = str(body.get("searchText", "")).upper()
        found = [
            dict(c)
            for c in self.contracts.values()
            if text in c["name"].upper() or text in c["id"].upper() or text in str(c.get("symbolId", "")).upper()
        ]
        return 200, ok(contracts=found)

    async def _contract_available(self, body: dict[str, Any]) -> tuple[int, Any]:
        return 200, ok(contracts=[dict(c) for c in self.contracts.values()])

    # ------------------------------------------------------------------ broker simulation
    async def _emit_user(self, target: str, data: dict[str, Any]) -> None:
        if self.emit_events:
            await self.push_user(target, dict(data))

    async def _fill_market(
        self, account_id: int, contract_id: str, side: int, size: int, *, custom_tag: str | None = None
    ) -> dict[str, Any]:
        """Fill a market order now: order FILLED, trade, position update, account update."""
        price = self.last_price.get(contract_id)
        before = self.position(contract_id, account_id)
        if price is None:
            price = before["averagePrice"] if before else 0.0
        order = self.add_order(
            contract_id, type=MARKET, side=side, size=size, account_id=account_id, custom_tag=custom_tag
        )
        order.update(status=ST_FILLED, fillVolume=size, filledPrice=price, updateTimestamp=now_iso())

        signed_before = self.signed_size(contract_id, account_id)
        delta = size if side == BUY else -size
        signed_after = signed_before + delta
        contract = self.contracts.get(contract_id, {})
        point_value = contract.get("tickValue", 1.0) / contract.get("tickSize", 1.0)
        pnl = None
        avg = before["averagePrice"] if before else price
        closing = signed_before != 0 and (signed_before > 0) != (delta > 0)
        if closing:
            closed_qty = min(abs(delta), abs(signed_before))
            direction = 1 if signed_before > 0 else -1
            pnl = round((price - avg) * direction * closed_qty * point_value, 2)
        if signed_after == 0:
            new_avg = avg
        elif signed_before == 0 or (signed_before > 0) != (signed_after > 0):
            new_avg = price
        elif closing:
            new_avg = avg
        else:
            new_avg = (avg * abs(signed_before) + price * abs(delta)) / abs(signed_after)

        trade = self.add_trade(
            accountId=account_id,
            contractId=contract_id,
            price=price,
            profitAndLoss=pnl,
            fees=0.37 * size,
            side=side,
            size=size,
            orderId=order["id"],
        )
        if signed_after == 0:
            pos_event = dict(before or {}, type=POS_UNDEFINED, size=0, averagePrice=avg) if before else None
            self.set_position(contract_id, 0, account_id=account_id)
        else:
            pos = self.set_position(contract_id, signed_after, new_avg, account_id=account_id)
            pos_event = dict(pos) if pos else None
        for acct in self.accounts:
            if acct["id"] == account_id:
                acct["balance"] = round(acct["balance"] + (pnl or 0.0) - trade["fees"], 2)
        await self._emit_user("GatewayUserOrder", order)
        await self._emit_user("GatewayUserTrade", trade)
        if pos_event is not None:
            await self._emit_user("GatewayUserPosition", pos_event)
        for acct in self.accounts:
            if acct["id"] == account_id:
                await self._emit_user("GatewayUserAccount", acct)
        return order

    # ------------------------------------------------------------------ SignalR
    def _hub_name(self, request: web.Request) -> str:
        return "user" if request.path.startswith("/hubs/user") else "market"

    async def _negotiate(self, request: web.Request) -> web.StreamResponse:
        hub = self._hub_name(request)
        token = request.query.get("access_token") or request.headers.get("Authorization", "")[7:]
        if token not in self.tokens:
            self.negotiations.append({"hub": hub, "connection_id": None, "query": dict(request.query)})
            await self._notify()
            return web.Response(status=401)
        cid = uuid.uuid4().hex
        self._negotiated[cid] = hub
        self.negotiations.append({"hub": hub, "connection_id": cid, "query": dict(request.query)})
        await self._notify()
        return web.json_response(
            {
                "negotiateVersion": 0,
                "connectionId": cid,
                "availableTransports": [{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}],
            }
        )

    async def _hub(self, request: web.Request) -> web.StreamResponse:
        hub = self._hub_name(request)
        cid = request.query.get("id") or uuid.uuid4().hex
        attempt = {"hub": hub, "connection_id": cid, "query": dict(request.query), "status": 101}
        self.ws_attempts.append(attempt)
        token = request.query.get("access_token") or request.headers.get("Authorization", "")[7:]
        status = None
        if self._hub_reject[hub]:
            status = self._hub_reject[hub].popleft()
        elif token not in self.tokens:
            status = 401
        elif self._negotiated.pop(cid, None) != hub and self.strict_connection_ids:
            status = 404  # ASP.NET Core: "No Connection with that ID" (ids are single-use)
        if status is not None:
            attempt["status"] = status
            await self._notify()
            return web.Response(status=status)

        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = HubConnection(hub, cid, ws, request, user=self.token_user.get(token, DEFAULT_LOGIN))
        self._connections[hub].append(conn)
        await self._notify()
        pinging = asyncio.ensure_future(self._keepalive(conn)) if self.keepalive_interval else None
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        continue
                    break
                for record in msg.data.split(RS):
                    if not record:
                        continue
                    await self._on_hub_record(conn, record)
        finally:
            if pinging is not None:
                pinging.cancel()
            self._connections[hub] = [c for c in self._connections[hub] if c is not conn]
            await self._notify()
        return ws

    async def _keepalive(self, conn: HubConnection) -> None:
        while not conn.ws.closed:
            await asyncio.sleep(self.keepalive_interval or 15.0)
            if conn.handshaken and not conn.silent:
                try:
                    await conn.ws.send_str(json.dumps({"type": PING}) + RS)
                except (ConnectionError, RuntimeError):
                    return

    async def _on_hub_record(self, conn: HubConnection, record: str) -> None:
        message = json.loads(record)
        if not conn.handshaken:
            # {"protocol":"json","version":1}
            conn.handshaken = True
            if message.get("protocol") != "json":
                await conn.ws.send_str(json.dumps({"error": "Only the JSON protocol is supported"}) + RS)
                await conn.ws.close()
                return
            await conn.ws.send_str("{}" + RS)
            return
        mtype = message.get("type")
        if mtype == PING:
            return
        if mtype == CLOSE:
            await conn.ws.close()
            return
        if mtype != INVOCATION:
            return
        target = message.get("target", "")
        args = list(message.get("arguments") or [])
        inv = HubInvocation(conn.hub, target, args, conn.connection_id, message.get("invocationId"))
        self.invocations.append(inv)
        if target.startswith("Subscribe"):
            conn.subscriptions.add((target, args[0] if args else None))
        elif target.startswith("Unsubscribe"):
            conn.subscriptions.discard(("Subscribe" + target[len("Unsubscribe") :], args[0] if args else None))
        if inv.invocation_id is not None:
            await conn.ws.send_str(
                json.dumps({"type": COMPLETION, "invocationId": inv.invocation_id, "result": None}) + RS
            )
        await self._notify()
