"""The ProjectX adapter: riskc's one contact with the project-x-py SDK (PRODUCT.md §2, §8).

Nothing here imports the SDK at module level: ``riskc check/fmt/test/eval/replay`` may import this
module's names without paying for (or being able to break on) the SDK. ``_sdk()`` imports it on
first use and silences its stdout logging.

- ``connect(credentials, urls, account_name, sink=...)`` logs in, picks the account, opens both
  hubs, subscribes the account's updates and market data, and delivers every hub payload as an
  ``engine.intake.Message`` (the same shape as a recording line) to ``sink``, in arrival order,
  interleaved with ``ConnectionEvent``s (``disconnected`` / ``reconnected`` per hub) so the
  engine can reconcile from REST after every reconnect. The SDK has no disconnect event: a
  watchdog reads the hubs' state, and rebuilds both hubs (with a fresh token) when one is dead.
- ``ProjectXBroker`` is the ``BrokerPort``: ``send`` makes one attempt and raises ``BrokerError``
  when the call failed or its outcome is unknown; ``state`` reads the account from REST in the
  Gateway's JSON shape. Retries and verification are the executor's (``engine.broker.executor``).

docs/sdk-notes.md maps the SDK behaviour relied on here (section numbers below refer to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from riskc.engine.adapters.port import BrokerCall, BrokerError, BrokerState
from riskc.engine.adapters.projectx import decode
from riskc.engine.adapters.projectx.intake import CALLBACK_TARGETS, Message, from_callback
from riskc.engine.adapters.projectx.intake import _decimals as exact_numbers

log = logging.getLogger("riskc.projectx")

API_URL = "https://api.topstepx.com/api"
USER_HUB_URL = "https://rtc.topstepx.com/hubs/user"
MARKET_HUB_URL = "https://rtc.topstepx.com/hubs/market"

ORDER_STOP = 4
SIDE = {"buy": 0, "sell": 1}
ORDER_SUSPENDED = 8


# --------------------------------------------------------------------------- configuration


class MissingCredentials(ValueError):
    """The environment does not name a user and an API key."""


class ConnectError(Exception):
    """The Gateway could not be reached, refused the login, or has no such account. The message
    never contains a credential."""


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str = field(repr=False)
    api_key: str = field(repr=False)
    account_name: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Credentials:
        """``PROJECT_X_USERNAME``, ``PROJECT_X_API_KEY`` and optionally ``PROJECT_X_ACCOUNT_NAME``."""
        env = os.environ if environ is None else environ
        username, api_key = env.get("PROJECT_X_USERNAME", "").strip(), env.get("PROJECT_X_API_KEY", "").strip()
        missing = [
            name for name, value in (("PROJECT_X_USERNAME", username), ("PROJECT_X_API_KEY", api_key)) if not value
        ]
        if missing:
            raise MissingCredentials(f"no broker credentials: set {' and '.join(missing)} in the environment")
        return cls(username, api_key, env.get("PROJECT_X_ACCOUNT_NAME", "").strip() or None)


@dataclass(frozen=True, slots=True)
class GatewayUrls:
    """Where the Gateway is. The defaults are TopstepX's; tests point them at the fake gateway."""

    api_url: str = API_URL
    user_hub_url: str = USER_HUB_URL
    market_hub_url: str = MARKET_HUB_URL


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    request_timeout: int = 10  # httpx read/write timeout of one request (the SDK wants an int)
    requests_per_minute: int = 180  # the SDK's client-side limiter blocks every request when full (§4.4)
    call_timeout: float = 15.0  # bound on one broker call (auth check + the request + SDK lookups)
    read_timeout: float = 20.0  # bound on one state() read (the SDK retries reads 3x, §4.2)
    connect_timeout: float = 30.0
    watch_interval: float = 0.5  # how often the watchdog looks at the hubs
    settle: float = 0.2  # after a hub reopens, time for the SDK to resend subscriptions
    revive_after: float = 10.0  # a hub down this long (or whose task died) is rebuilt
    auth_check_every: float = 60.0  # refresh the token before it expires (§2)
    include_suspended: bool = True  # state() also reads suspended orders (/Order/v2/query)


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """A hub went down (``disconnected``) or came back (``reconnected``). Events may have been
    missed in between: reconcile from ``ProjectXBroker.state`` on ``reconnected``."""

    ts: dt.datetime
    hub: Literal["user", "market"]
    state: Literal["disconnected", "reconnected"]
    detail: str = ""


Item = Message | ConnectionEvent
Sink = asyncio.Queue | Callable[[Item], Awaitable[None]]


# --------------------------------------------------------------------------- SDK and logging


_JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]*")
_TOKEN_FIELD = re.compile(r"(access_token=|Bearer\s+)[^\s&'\"]+", re.IGNORECASE)
_secrets: set[str] = set()


def redact(text: object) -> str:
    """``text`` without tokens (JWTs, ``access_token=``, ``Bearer``) or the credentials in use."""
    out = _TOKEN_FIELD.sub(r"\1***", _JWT.sub("***", str(text)))
    for secret in _secrets:
        out = out.replace(secret, "***")
    return out


class _Redact(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg, record.args = redact(record.getMessage()), None
            if record.exc_info:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        except Exception:  # a malformed record is logging's problem, not a reason to raise into the SDK
            pass
        return True


_REDACT = _Redact()
log.addFilter(_REDACT)
_TRANSPORT_LOGGERS = (
    "pysignalr",
    "pysignalr.client",
    "pysignalr.transport",
    "websockets",
    "websockets.client",
    "httpx",
    "httpcore",
)


_sdk_log_level = logging.WARNING


def quiet_sdk_logging(level: int | None = None) -> None:
    """Silence project-x-py's stdout handlers and let its records propagate, redacted (§6), at
    ``level`` and above (default: the last level asked for, else WARNING).

    At import every SDK module gets a ``StreamHandler(sys.stdout)`` and ``propagate = False``
    unless its logger already has a handler; so every SDK module logger gets a ``NullHandler``
    (modules imported later keep it), propagation back, and the redaction filter. pysignalr logs
    the hub URL with ``?access_token=<JWT>`` at INFO, so transport loggers are capped at WARNING.
    Idempotent; call again after building SDK objects (some create loggers with dynamic names).
    """
    import pkgutil

    import project_x_py

    global _sdk_log_level
    level = _sdk_log_level = _sdk_log_level if level is None else level
    names = {"project_x_py", *(m.name for m in pkgutil.walk_packages(project_x_py.__path__, "project_x_py."))}
    names.update(n for n in logging.root.manager.loggerDict if n.startswith("project_x_py."))
    for name in names:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if not isinstance(handler, logging.NullHandler):
                logger.removeHandler(handler)
        if not logger.handlers:
            logger.addHandler(logging.NullHandler())
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)
    logging.getLogger("project_x_py").setLevel(level)
    for name in _TRANSPORT_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(max(level, logging.WARNING))
        if _REDACT not in logger.filters:
            logger.addFilter(_REDACT)


_SDK: Any = None


def _sdk() -> Any:
    """The SDK's names riskc uses, imported on first use (with its logging quieted)."""
    global _SDK
    if _SDK is None:
        import types

        import project_x_py as pxp
        from project_x_py import exceptions
        from project_x_py.realtime import ProjectXRealtimeClient

        quiet_sdk_logging()
        _SDK = types.SimpleNamespace(
            ProjectX=pxp.ProjectX,
            ProjectXConfig=pxp.ProjectXConfig,
            EventBus=pxp.EventBus,
            OrderManager=pxp.OrderManager,
            ProjectXRealtimeClient=ProjectXRealtimeClient,
            errors=exceptions,
        )
    return _SDK


def make_client(
    credentials: Credentials,
    urls: GatewayUrls = GatewayUrls(),
    account_name: str | None = None,
    options: ConnectOptions = ConnectOptions(),
) -> Any:
    """An unauthenticated ``ProjectX`` for ``urls`` (``TradingSuite.create`` cannot be pointed at
    another host, §1). Enter it with ``async with`` before use."""
    sdk = _sdk()
    _secrets.update(s for s in (credentials.api_key, credentials.username) if len(s) >= 3)
    config = sdk.ProjectXConfig(
        api_url=urls.api_url,
        realtime_url=urls.user_hub_url,
        user_hub_url=urls.user_hub_url,
        market_hub_url=urls.market_hub_url,
        timeout_seconds=options.request_timeout,
        requests_per_minute=options.requests_per_minute,
    )
    return sdk.ProjectX(
        username=credentials.username,
        api_key=credentials.api_key,
        config=config,
        account_name=account_name or credentials.account_name,
    )


# --------------------------------------------------------------------------- the broker port


class ProjectXBroker:
    """``BrokerPort`` over an authenticated ``ProjectX`` client, for one account.

    Closes go through the client's request funnel (``_make_request``) rather than
    ``PositionManager.close_position_direct``/``partially_close_position``: those swallow every
    error into ``{"success": false}`` and re-read positions after a hidden sleep (§4.3), while the
    funnel keeps "rejected" (a ``success: false`` reply) apart from "outcome unknown"
    (``OrderSubmissionUncertainError``). Order calls use ``OrderManager``'s public methods, which
    raise. ``state`` uses the funnel too, to keep the Gateway's JSON verbatim (the SDK's models
    drop fields and ``search_trades`` slices to 100 trades client-side).
    """

    name = "projectx"

    def __init__(
        self,
        client: Any,
        account_id: int,
        *,
        call_timeout: float = 15.0,
        read_timeout: float = 20.0,
        include_suspended: bool = True,
    ) -> None:
        sdk = _sdk()
        self.client = client
        self.account_id = account_id
        self.call_timeout = call_timeout
        self.read_timeout = read_timeout
        self.include_suspended = include_suspended
        self._errors = sdk.errors
        self._orders = sdk.OrderManager(client, sdk.EventBus())

    # -- send -------------------------------------------------------------------------------

    async def send(self, call: BrokerCall) -> dict[str, Any] | None:
        """One attempt. Raises ``BrokerError``: ``retryable=False`` when the Gateway rejected the
        call, ``True`` when it failed before reaching the broker or its outcome is unknown."""
        if call.account_id != self.account_id:
            raise BrokerError(
                f"{call.describe()}: account {call.account_id} is not the connected account {self.account_id}",
                retryable=False,
            )
        sender = self._SENDERS.get(call.kind)
        if sender is None:
            raise BrokerError(f"{call.describe()}: not a call the ProjectX adapter knows", retryable=False)
        deadline = asyncio.timeout(self.call_timeout)
        try:
            async with deadline:
                await self.client._ensure_authenticated()  # mutating calls do not refresh the token (§2)
                return await sender(self, call)
        except BrokerError:
            raise
        except Exception as error:
            _reraise_cancellation()  # the SDK turns a cancelled mutating request into an error (§4.2)
            if deadline.expired():
                raise BrokerError(
                    f"{call.describe()}: no answer within {self.call_timeout:g}s; outcome unknown"
                ) from None
            raise self._broker_error(call, error) from None

    async def _close(self, call: BrokerCall) -> dict[str, Any]:
        body = {"accountId": call.account_id, "contractId": call.contract_id}
        return _accepted(call, await self.client._make_request("POST", "/Position/closeContract", data=body))

    async def _partial_close(self, call: BrokerCall) -> dict[str, Any]:
        if not call.size or call.size <= 0:
            raise BrokerError(f"{call.describe()}: the size to close must be positive", retryable=False)
        body = {"accountId": call.account_id, "contractId": call.contract_id, "size": call.size}
        return _accepted(call, await self.client._make_request("POST", "/Position/partialCloseContract", data=body))

    async def _cancel(self, call: BrokerCall) -> dict[str, Any]:
        cancelled = await self._orders.cancel_order(call.order_id, account_id=call.account_id)
        # False: already filled, expired or rejected (the SDK looked it up): not working either way.
        return {"success": True, "cancelled": bool(cancelled)}

    async def _modify_stop(self, call: BrokerCall) -> dict[str, Any]:
        if call.order_id is None or call.stop_price is None:
            raise BrokerError(f"{call.describe()}: needs an order id and a stop price", retryable=False)
        await self._orders.modify_order(call.order_id, stop_price=float(call.stop_price))
        return {"success": True}

    async def _place_stop(self, call: BrokerCall) -> dict[str, Any]:
        if call.side not in SIDE or not call.size or call.stop_price is None or not call.contract_id:
            raise BrokerError(f"{call.describe()}: needs a contract, a side, a size and a stop price", retryable=False)
        reply = await self._orders.place_stop_order(
            call.contract_id, SIDE[call.side], call.size, float(call.stop_price), account_id=call.account_id
        )
        return {"success": True, "order_id": reply.orderId}

    async def _place_target(self, call: BrokerCall) -> dict[str, Any]:
        if call.side not in SIDE or not call.size or call.limit_price is None or not call.contract_id:
            raise BrokerError(f"{call.describe()}: needs a contract, a side, a size and a price", retryable=False)
        reply = await self._orders.place_limit_order(
            call.contract_id, SIDE[call.side], call.size, float(call.limit_price), account_id=call.account_id
        )
        return {"success": True, "orderId": reply.orderId}

    _SENDERS = {
        "close": _close,
        "partial_close": _partial_close,
        "cancel": _cancel,
        "modify_stop": _modify_stop,
        "place_stop": _place_stop,
        "place_target": _place_target,
    }

    def _broker_error(self, call: BrokerCall, error: Exception) -> BrokerError:
        errors = self._errors
        if isinstance(error, errors.OrderSubmissionUncertainError):
            return BrokerError(
                f"{call.describe()}: outcome unknown (the request may have reached the broker): {redact(error)}"
            )
        if isinstance(error, errors.ProjectXOrderError):
            return BrokerError(f"{call.describe()}: rejected: {redact(error) or type(error).__name__}", retryable=False)
        return BrokerError(f"{call.describe()}: {_why(error)}")

    # -- state ------------------------------------------------------------------------------

    async def state(self, account_id: int, *, trades_since: dt.datetime | None = None) -> BrokerState:
        """Open positions, working orders (open, and suspended when the Gateway lists them), the
        account, and the trades since ``trades_since`` (not read when None: verification does not
        need them). Raises ``BrokerError`` when any read fails or times out."""
        reads = {
            "positions": self._search("/Position/searchOpen", {"accountId": account_id}, "positions"),
            "orders": self._search("/Order/searchOpen", {"accountId": account_id}, "orders"),
            "accounts": self._search("/Account/search", {"onlyActiveAccounts": False}, "accounts"),
        }
        if trades_since is not None:
            reads["trades"] = self._search(
                "/Trade/search", {"accountId": account_id, "startTimestamp": trades_since.isoformat()}, "trades"
            )
        if self.include_suspended:
            reads["suspended"] = self._suspended(account_id)
        try:
            async with asyncio.timeout(self.read_timeout):
                await self.client._ensure_authenticated()
                results = dict(zip(reads, await asyncio.gather(*reads.values(), return_exceptions=True), strict=True))
        except TimeoutError:
            raise BrokerError(f"reading the account state took longer than {self.read_timeout:g}s") from None
        except Exception as error:
            _reraise_cancellation()
            raise BrokerError(f"reading the account state: {_why(error)}") from None
        for name, value in results.items():
            if isinstance(value, BaseException):
                if isinstance(value, asyncio.CancelledError):
                    raise value
                raise BrokerError(
                    f"reading {name}: {value}" if isinstance(value, BrokerError) else f"reading {name}: {_why(value)}"
                )
        return _state(account_id, results)

    async def _search(self, path: str, body: dict[str, Any], key: str) -> list[dict[str, Any]]:
        reply = await self.client._make_request("POST", path, data=body)
        if isinstance(reply, list):  # /Position/searchOpen may answer a bare list (§3)
            return reply
        if not isinstance(reply, dict) or reply.get("success") is not True:
            raise BrokerError(f"{path}: {_rejection(reply)}")
        return list(reply.get(key) or [])

    async def _suspended(self, account_id: int) -> list[dict[str, Any]]:
        """Suspended orders (bracket children waiting on their parent): ``/Order/searchOpen`` lists
        only open ones (order_manager/core.py:917-960). A Gateway without the endpoint (404) is
        remembered and not asked again."""
        body = {
            "filter": {"accountId": account_id, "statuses": [ORDER_SUSPENDED]},
            "pageSize": 100,
            "pageOffset": 0,
            "includeTotalCount": False,
        }
        try:
            return await self._search("/Order/v2/query", body, "orders")
        except self._errors.ProjectXDataError:
            log.info("the Gateway has no /Order/v2/query; suspended orders are not read")
            self.include_suspended = False
            return []


def _state(account_id: int, results: dict[str, Any]) -> BrokerState:
    orders = {o.get("id"): o for o in (*results["orders"], *results.get("suspended", ())) if isinstance(o, dict)}
    account = next((a for a in results["accounts"] if isinstance(a, dict) and a.get("id") == account_id), None)
    extra = {"trades_read": "trades" in results, "suspended_read": "suspended" in results}
    try:
        return decode.broker_state(
            exact_numbers(results["positions"]),
            exact_numbers(list(orders.values())),
            exact_numbers(list(results.get("trades", ()))),
            None if account is None else exact_numbers(account),
            dt.datetime.now(dt.UTC),
            extra,
        )
    except decode.DECODE_ERRORS as error:
        raise BrokerError(f"the account state has an entity riskc cannot read: {error}") from None


def _accepted(call: BrokerCall, reply: Any) -> dict[str, Any]:
    if isinstance(reply, dict) and reply.get("success") is True:
        return dict(reply)
    raise BrokerError(f"{call.describe()}: rejected: {_rejection(reply)}", retryable=False)


def _rejection(reply: Any) -> str:
    if isinstance(reply, dict):
        return f"{redact(reply.get('errorMessage') or 'no reason given')} (errorCode {reply.get('errorCode')})"
    return f"unexpected reply {redact(reply)[:200]}"


def _why(error: BaseException) -> str:
    text = redact(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _reraise_cancellation() -> None:
    """Re-raise a cancellation of the current task that the SDK swallowed or converted."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


# --------------------------------------------------------------------------- the live connection


@dataclass
class _Hub:
    """What the watchdog knows of one hub. ``opens``/``closes`` are counted by hooks that run
    inside pysignalr on every (re)open and close; ``live`` is what was last reported."""

    name: Literal["user", "market"]
    wake: asyncio.Event
    opens: int = 0
    closes: int = 0
    seen_opens: int = 0
    seen_closes: int = 0
    live: bool = False
    down_since: float = 0.0

    def opened(self) -> None:  # runs inside pysignalr: must not raise
        self.opens += 1
        self.wake.set()

    def closed(self) -> None:
        self.closes += 1
        self.wake.set()


class ProjectXConnection:
    """A live, supervised connection to one account. Built by ``connect``; use ``async with`` or
    ``await close()``."""

    def __init__(self, client: Any, sink: Sink, options: ConnectOptions) -> None:
        self.client = client
        self.options = options
        self.account: dict[str, Any] = exact_numbers(dataclasses.asdict(client.account_info))
        self.account_id: int = client.account_info.id
        self.broker = ProjectXBroker(
            client,
            self.account_id,
            call_timeout=options.call_timeout,
            read_timeout=options.read_timeout,
            include_suspended=options.include_suspended,
        )
        self.received = 0  # hub payloads delivered
        self.unreadable = 0  # payloads from_callback could not wrap (logged, skipped)
        self.revivals = 0  # full hub rebuilds by the watchdog
        self._sink = sink
        self._queue: asyncio.Queue[Item | None] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._hubs = {name: _Hub(name, self._wake) for name in ("user", "market")}
        self._hooked: dict[str, Any] = {}
        self._contracts: set[str] = set()
        self._unsubscribed: set[str] = set()  # wanted, but the SDK's subscribe failed: retried
        self._user_subscribed = False
        self._follow = True
        self._rt: Any = None
        self._watchdog: asyncio.Task | None = None
        self._pumping: asyncio.Task | None = None
        self._next_revival = 0.0
        self._revival_backoff = 1.0
        self._last_auth_check = time.monotonic()
        self._closing = False

    # -- public -----------------------------------------------------------------------------

    @property
    def contracts(self) -> frozenset[str]:
        """Contracts whose market data is (to be) subscribed."""
        return frozenset(self._contracts)

    def health(self) -> dict[str, bool]:
        """Whether each hub is up right now (flag *and* its run task alive, §5.4)."""
        return {name: self._live(name) for name in self._hubs}

    @property
    def connected(self) -> bool:
        return all(self.health().values())

    async def subscribe(self, contract_ids: Iterable[str]) -> None:
        """Add market data (quotes, trades) for ``contract_ids``; kept across reconnects. If the
        market hub is down now, the watchdog subscribes when it is back."""
        new = [c for c in dict.fromkeys(contract_ids) if c and c not in self._contracts]
        if not new:
            return
        self._contracts.update(new)
        if not await self._rt.subscribe_market_data(new):
            self._unsubscribed.update(new)

    async def close(self) -> None:
        """Stop the watchdog, close the hubs, deliver what was received, close the HTTP client."""
        if self._closing:
            return
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        if self._rt is not None:
            try:
                async with asyncio.timeout(10):
                    await self._rt.cleanup()
            except Exception as error:  # closing must finish: the hubs are going away anyway
                log.warning("closing the hubs: %s", redact(error))
        if self._pumping is not None:
            self._queue.put_nowait(None)
            try:
                async with asyncio.timeout(5):
                    await self._pumping
            except Exception:
                self._pumping.cancel()
        await self.client.__aexit__(None, None, None)

    async def __aenter__(self) -> ProjectXConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- start ------------------------------------------------------------------------------

    async def _start(self, contracts: Iterable[str], follow_contracts: bool) -> None:
        sdk = _sdk()
        self._follow = follow_contracts
        self._rt = rt = sdk.ProjectXRealtimeClient(
            jwt_token=self.client.session_token, account_id=str(self.account_id), config=self.client.config
        )
        rt.stale_feed_seconds = float("inf")  # its reconnect loop on a quiet market hub never settles (§5.5)
        for name in CALLBACK_TARGETS:
            await rt.add_callback(name, self._callback(name))
        self._pumping = asyncio.create_task(self._pump(), name="riskc:projectx-pump")
        await rt.setup_connections()
        self._install_hooks()
        if not await rt.connect():
            raise ConnectError(f"the Gateway's hubs ({rt.user_hub_url}, {rt.market_hub_url}) did not come up in time")
        if not await rt.subscribe_user_updates():
            raise ConnectError("subscribing to the account's updates failed")
        self._user_subscribed = True
        for hub in self._hubs.values():
            hub.live, hub.seen_opens, hub.seen_closes = True, hub.opens, hub.closes
        wanted = list(contracts)
        if follow_contracts:
            state = await self.broker.state(self.account_id)
            wanted += [item.contract_id for item in (*state.positions, *state.orders)]
        await self.subscribe(wanted)
        quiet_sdk_logging()  # objects built since the import may have made new loggers
        self._watchdog = asyncio.create_task(self._watch(), name="riskc:projectx-watchdog")

    def _callback(self, name: str) -> Callable[[Any], Awaitable[None]]:
        # A plain ``async def``: the SDK awaits only what ``iscoroutinefunction`` says it should (§5.3).
        async def callback(payload: Any) -> None:
            self._receive(name, payload)

        return callback

    def _receive(self, name: str, payload: Any) -> None:
        """Wrap and queue; never await here, so messages keep their arrival order."""
        try:
            message = from_callback(name, payload, dt.datetime.now(dt.UTC))
        except Exception as error:
            self.unreadable += 1
            log.warning("skipped a %s payload riskc cannot read (%s): %s", name, error, redact(payload)[:500])
            return
        self.received += 1
        self._queue.put_nowait(message)
        if self._follow and message.hub == "user":
            self._follow_contract(message)

    def _follow_contract(self, message: Message) -> None:
        """Subscribe the market data of every contract the account's positions and orders name,
        whatever the payload's shape (wrapped, bare, a list)."""
        if message.target not in ("GatewayUserPosition", "GatewayUserOrder"):
            return
        try:
            contracts = [event.contract_id for event in decode.decode(message)]
        except decode.DECODE_ERRORS:
            return  # the consumer reports it as malformed
        for contract in contracts:
            if contract not in self._contracts:
                self._contracts.add(contract)
                self._unsubscribed.add(contract)
                self._wake.set()

    async def _pump(self) -> None:
        """Hand queued items to the sink one at a time, in order; a failing sink loses nothing else."""
        while (item := await self._queue.get()) is not None:
            try:
                if isinstance(self._sink, asyncio.Queue):
                    await self._sink.put(item)
                else:
                    await self._sink(item)
            except Exception:
                log.exception("the message consumer failed on %s", getattr(item, "target", item))

    def _emit(self, hub: _Hub, state: Literal["disconnected", "reconnected"], detail: str) -> None:
        log.info("%s hub %s%s", hub.name, state, f": {detail}" if detail else "")
        self._queue.put_nowait(ConnectionEvent(dt.datetime.now(dt.UTC), hub.name, state, detail))

    # -- watchdog ---------------------------------------------------------------------------

    def _install_hooks(self) -> None:
        """Count opens and closes of the current hub objects (lost when they are rebuilt, §5.6)."""
        for name, hub in self._hubs.items():
            connection = getattr(self._rt, f"{name}_connection", None)
            if connection is None or self._hooked.get(name) is connection:
                continue
            connection.on_open(hub.opened)
            connection.on_close(hub.closed)
            self._hooked[name] = connection

    def _live(self, name: str) -> bool:
        return self._rt is not None and bool(self._rt._hub_is_live(name))

    def _dead(self, name: str) -> bool:
        """Nothing will bring this hub back: its pysignalr run task ended (an error close,
        an exhausted retry budget, an unreachable Gateway, §5.5)."""
        task = getattr(getattr(self._rt, f"{name}_connection", None), "_run_task", None)
        return task is None or task.done()

    async def _watch(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.options.watch_interval)
            self._wake.clear()
            try:
                await self._check()
            except Exception:  # the watchdog must outlive anything it watches
                log.exception("connection watchdog")

    async def _check(self) -> None:
        now = time.monotonic()
        revive = False
        for hub in self._hubs.values():
            live = self._live(hub.name)
            bounced = hub.opens != hub.seen_opens or hub.closes != hub.seen_closes
            if hub.live and (not live or bounced):
                hub.live, hub.down_since = False, now
                self._emit(hub, "disconnected", "" if not live else "the hub reconnected by itself")
            if not hub.live and live:
                await self._settle()
                await self._subscribe_again(hub.name)
                hub.live = True
                self._revival_backoff = 1.0
                self._emit(hub, "reconnected", "")
            hub.seen_opens, hub.seen_closes = hub.opens, hub.closes
            if not live and (self._dead(hub.name) or now - hub.down_since >= self.options.revive_after):
                revive = True
        if revive and now >= self._next_revival:
            await self._revive()
        await self._resubscribe()
        if now - self._last_auth_check >= self.options.auth_check_every:
            self._last_auth_check = now
            async with asyncio.timeout(self.options.read_timeout):
                await self.client._ensure_authenticated()

    async def _settle(self) -> None:
        """Let the SDK's own restore of a reopened hub's subscriptions finish (§5.5): riskc reports
        the hub back only once subscribed, so a REST reconcile started on ``reconnected`` misses
        nothing the stream will not bring."""
        await asyncio.sleep(self.options.settle)
        deadline = time.monotonic() + 2.0
        while getattr(self._rt, "_restore_in_flight", False) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    async def _subscribe_again(self, name: str) -> None:
        """The SDK restores a reopened hub's subscriptions, but drops a restore while another is in
        flight (connection_management.py:413-456), so when both hubs come back together one can be
        left unsubscribed. Send them again: the SDK itself sends them twice in that case (§5.5)."""
        if name == "user":
            self._user_subscribed = bool(await self._rt.subscribe_user_updates())
        elif self._contracts and not await self._rt.subscribe_market_data(sorted(self._contracts)):
            self._unsubscribed.update(self._contracts)

    async def _revive(self) -> None:
        """Rebuild both hubs after a fresh login: the only reliable way back from a dead run task,
        an exhausted retry budget, or a token the hubs no longer accept (§5.5-5.6)."""
        self.revivals += 1
        self._next_revival = time.monotonic() + self._revival_backoff
        self._revival_backoff = min(self._revival_backoff * 2, 30.0)
        for hub in self._hubs.values():
            if hub.live:
                hub.live, hub.down_since = False, time.monotonic()
                self._emit(hub, "disconnected", "rebuilding the hub connections")
        rt = self._rt
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                await rt.disconnect()
                await self.client.authenticate()  # the old token may be why the hub died
                rt.jwt_token = self.client.session_token
                rt.setup_complete = False
                rt.user_hub_ready.clear()  # disconnect() leaves them set: connect() would not wait
                rt.market_hub_ready.clear()
                await rt.setup_connections()
                self._install_hooks()
                await rt.connect()
        except Exception as error:
            _reraise_cancellation()
            log.warning("rebuilding the hub connections failed: %s", _why(error))
        for hub in self._hubs.values():
            hub.down_since = time.monotonic()

    async def _resubscribe(self) -> None:
        if not self._user_subscribed and self._live("user"):
            self._user_subscribed = bool(await self._rt.subscribe_user_updates())
        if self._unsubscribed and self._live("market"):
            pending = sorted(self._unsubscribed)
            self._unsubscribed.clear()
            if not await self._rt.subscribe_market_data(pending):
                self._unsubscribed.update(pending)


async def connect(
    credentials: Credentials,
    urls: GatewayUrls = GatewayUrls(),
    account_name: str | None = None,
    *,
    sink: Sink,
    contracts: Iterable[str] = (),
    follow_contracts: bool = True,
    options: ConnectOptions = ConnectOptions(),
    client: Any = None,
) -> ProjectXConnection:
    """Log in, pick the account (``account_name``, else the credentials', else the first active
    one), open both hubs and subscribe: the account's updates, and market data for ``contracts``
    plus (``follow_contracts``) every contract with an open position or working order now or
    later. Every hub payload reaches ``sink`` as a ``Message``, interleaved in order with
    ``ConnectionEvent``s. ``client`` replaces the SDK client (tests). Raises ``ConnectError``."""
    px = client if client is not None else make_client(credentials, urls, account_name, options)
    errors = _sdk().errors
    await px.__aenter__()
    connection: ProjectXConnection | None = None
    try:
        try:
            async with asyncio.timeout(options.connect_timeout):
                await px.authenticate()
        except errors.ProjectXAuthenticationError:
            raise ConnectError(
                "the Gateway refused the login: check PROJECT_X_USERNAME and PROJECT_X_API_KEY"
            ) from None
        except ValueError as error:  # the named account is not among the active ones
            raise ConnectError(redact(error)) from None
        except (TimeoutError, errors.ProjectXError) as error:
            raise ConnectError(f"cannot log in at {urls.api_url}: {_why(error)}") from None
        px.account_name = px.account_info.name  # a later re-login picks the same account
        connection = ProjectXConnection(px, sink, options)
        async with asyncio.timeout(options.connect_timeout):
            await connection._start(contracts, follow_contracts)
        return connection
    except BaseException as error:
        if connection is not None:
            await connection.close()
        else:
            await px.__aexit__(None, None, None)
        if isinstance(error, TimeoutError):
            raise ConnectError(f"connecting took longer than {options.connect_timeout:g}s") from None
        if isinstance(error, BrokerError):
            raise ConnectError(str(error)) from None
        raise
