"""The ProjectX adapter: riskc's one contact with the project-x-py SDK (PRODUCT.md §2, §8).

Nothing here imports the SDK at module level: ``riskc check/fmt/test/eval/replay`` may import this
module's names without paying for (or being able to break on) the SDK. ``_sdk()`` imports it on
first use and silences its stdout logging.

- ``connect_login(credentials, urls, AccountsWanted(...))`` logs in once, picks the login's
  accounts riskc guards, opens both hubs once and subscribes every account's updates and the
  union of their market data: one login, one token, one user hub, one market hub, one rate
  limit, however many accounts (PRODUCT.md §8). Each account's payloads (routed by the
  Gateway's account id; a quote to every account that holds or watches its contract) reach the
  sink ``attach``ed for it as ``engine.intake.Message``s (the same shape as a recording line),
  in arrival order, interleaved with ``ConnectionEvent``s (``disconnected`` / ``reconnected``
  per hub, ``renewed`` after a fresh login) so each account reconciles from REST after every
  reconnect. ``connect(credentials, urls, account_name, sink=...)`` is the one-account form.
  The SDK has no disconnect event: a watchdog reads the hubs' state, and rebuilds both hubs
  (with a fresh token) when one is dead.
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
import inspect
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from riskc.engine.adapters.admission import Admission, for_login
from riskc.engine.adapters.port import BrokerCall, BrokerError, BrokerState
from riskc.engine.adapters.projectx import decode
from riskc.engine.adapters.projectx.intake import CALLBACK_TARGETS, Message, from_callback
from riskc.engine.adapters.projectx.intake import _decimals as exact_numbers
from riskc.engine.core.instruments import symbol_of

log = logging.getLogger("riskc.projectx")

API_URL = "https://api.topstepx.com/api"
USER_HUB_URL = "https://rtc.topstepx.com/hubs/user"
MARKET_HUB_URL = "https://rtc.topstepx.com/hubs/market"

ORDER_STOP = 4
SIDE = {"buy": 0, "sell": 1}
ORDER_SUSPENDED = 8
_PING_FRAME = '"type":6'  # a SignalR keep-alive ping (JSON protocol)
SETTLE_MARGIN = 2.0  # seconds beyond the SDK's request timeout an effect may still land


# --------------------------------------------------------------------------- configuration


class MissingCredentials(ValueError):
    """The environment does not name a user and an API key."""


class ConnectError(Exception):
    """The Gateway could not be reached, refused the login, or has no such account. The message
    never contains a credential. ``permanent``: trying again will not help (a refused login, no
    such account); otherwise `riskc run` retries with backoff."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str = field(repr=False)
    api_key: str = field(repr=False)
    account_name: str | None = None
    source: str = "PROJECT_X_USERNAME and PROJECT_X_API_KEY"  # what to check when the login is refused

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
    # riskc's own limiter, one per login and enforcement first (engine/adapters/admission.py);
    # the SDK's own (§4.4: it blocks every request, a close included, when full) is set far above.
    requests_per_minute: int = 180
    read_reserve: int = 30  # of those, kept for broker calls: reads may use the rest
    call_timeout: float = 15.0  # bound on one broker call (auth check + the request + SDK lookups)
    read_timeout: float = 20.0  # bound on one state() read (the SDK retries reads 3x, §4.2)
    connect_timeout: float = 30.0
    watch_interval: float = 0.5  # how often the watchdog looks at the hubs
    settle: float = 0.2  # after a hub reopens, time for the SDK to resend subscriptions
    revive_after: float = 10.0  # a hub down this long (or whose task died) is rebuilt
    auth_check_every: float = 60.0  # how often the watchdog looks at the token's expiry (§2)
    refresh_before: float = 600.0  # log in again this long before the token expires
    # A hub that has sent keep-alive pings and then nothing at all for this long is rebuilt: an
    # ASP.NET Core SignalR server pings every 15 s; a half-open socket stays "connected" (§5.7).
    # A hub that never pinged is not judged by this (no evidence that the Gateway pings).
    silent_after: float = 45.0
    include_suspended: bool = True  # state() also reads suspended orders (/Order/v2/query)


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """A hub went down (``disconnected``) or came back (``reconnected``). Events may have been
    missed in between: reconcile from ``ProjectXBroker.state`` on ``reconnected``."""

    ts: dt.datetime
    hub: Literal["user", "market"]
    state: Literal["disconnected", "reconnected", "renewed"]  # renewed: logged in again, hubs up
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
        from project_x_py.realtime.async_hub import invoke_maybe

        quiet_sdk_logging()
        from project_x_py.models import Account

        _SDK = types.SimpleNamespace(
            Account=Account,
            ProjectX=pxp.ProjectX,
            ProjectXConfig=pxp.ProjectXConfig,
            EventBus=pxp.EventBus,
            OrderManager=pxp.OrderManager,
            ProjectXRealtimeClient=ProjectXRealtimeClient,
            invoke_maybe=invoke_maybe,
            errors=exceptions,
        )
    return _SDK


def register_secrets(*secrets: str) -> None:
    """Never show these (a login's user name and API key) in a log line or an error message:
    every login's credentials are registered before it is used (``make_client`` does)."""
    _secrets.update(s for s in secrets if len(s) >= 3)


def make_client(
    credentials: Credentials,
    urls: GatewayUrls = GatewayUrls(),
    account_name: str | None = None,
    options: ConnectOptions = ConnectOptions(),
) -> Any:
    """An unauthenticated ``ProjectX`` for ``urls`` (``TradingSuite.create`` cannot be pointed at
    another host, §1). Enter it with ``async with`` before use."""
    sdk = _sdk()
    register_secrets(credentials.api_key, credentials.username)
    config = sdk.ProjectXConfig(
        api_url=urls.api_url,
        realtime_url=urls.user_hub_url,
        user_hub_url=urls.user_hub_url,
        market_hub_url=urls.market_hub_url,
        timeout_seconds=options.request_timeout,
        requests_per_minute=max(1000, 4 * options.requests_per_minute),
    )
    return sdk.ProjectX(
        username=credentials.username,
        api_key=credentials.api_key,
        config=config,
        account_name=account_name or credentials.account_name,
    )


# --------------------------------------------------------------------------- the session


class LoginRefused(ConnectError):
    """The Gateway answered the login with ``success: false`` (bad user name or API key)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


class Session:
    """One login, shared by the broker port and the hubs of the accounts it serves: riskc's own
    login (not the SDK's ``authenticate()``, §2), a fresh login when the Gateway rejects the
    token (a 401, even while the hubs are up), a refresh ``refresh_before`` seconds before the
    token expires (earlier than the SDK's own 5 minutes, so the SDK never logs in behind riskc's
    back), and the account found among *all* the login's accounts.

    Why not ``authenticate()``: it does not check the login reply's ``success`` (a refused key
    surfaces later as a bare 401), it lists only active accounts (``onlyActiveAccounts: true``),
    so an account that cannot trade (``canTrade: false``, e.g. after a rule breach) is "not found"
    and every re-login fails, and without an account name it takes the first account, which may
    not be the one riskc follows. ``_refresh_authentication`` refreshes only a token near expiry,
    so a revoked token is never replaced (auth.py:96-133)."""

    def __init__(
        self,
        client: Any,
        account_name: str | None = None,
        *,
        refresh_before: float = 600.0,
        account_id: int | None = None,
    ) -> None:
        self.client = client
        self.account_name = account_name
        self.account_id = account_id  # pinned after the first login: a re-login keeps the account
        self.refresh_before = refresh_before
        self.logins = 0
        self.found: list[dict[str, Any]] = []  # every account the last login listed (the Gateway's JSON)
        self._accounts_read: tuple[float, str | None, asyncio.Future] | None = None
        self.listeners: list[Callable[[str], None]] = []  # told each new token (the hubs)
        self.source = "PROJECT_X_USERNAME and PROJECT_X_API_KEY"  # where the credentials came from
        self.refreshing = False  # the login under way replaces a token that was not rejected
        self._lock = asyncio.Lock()

    @property
    def token(self) -> str | None:
        return getattr(self.client, "session_token", None)

    async def login(self) -> None:
        """Log in and select the account. Raises ``LoginRefused``, ``ConnectError`` (no such
        account) or the SDK's transport errors."""
        async with self._lock:
            await self._login()

    async def renew(self, rejected: str | None, *, planned: bool = False) -> bool:
        """Log in again because the Gateway rejected token ``rejected`` (a 401, a
        ``GatewayLogout``), unless another task already did. Never raises: False when it failed.
        ``planned``: a refresh before expiry (``ensure``), not a rejection (``refreshing`` is true
        while the listeners hear of it)."""
        async with self._lock:
            if rejected is not None and self.token != rejected:
                return True
            self.refreshing = planned
            try:
                await self._login()
            except Exception as error:
                _reraise_cancellation()
                log.warning("logging in again failed: %s", _why(error))
                return False
            finally:
                self.refreshing = False
            return True

    async def ensure(self) -> None:
        """Refresh the token before it expires (``refresh_before`` seconds ahead)."""
        expiry = getattr(self.client, "token_expiry", None)
        fresh = (
            isinstance(expiry, dt.datetime) and (expiry - dt.datetime.now(dt.UTC)).total_seconds() > self.refresh_before
        )
        if self.token and fresh:
            return
        await self.renew(self.token, planned=self.token is not None)

    async def _login(self) -> None:
        client = self.client
        body = {"userName": client.username, "apiKey": client.api_key}
        reply = await client._make_request("POST", "/Auth/loginKey", data=body)
        token = reply.get("token") if isinstance(reply, dict) else None
        if not isinstance(reply, dict) or reply.get("success") is not True or not isinstance(token, str) or not token:
            raise LoginRefused(f"the Gateway refused the login ({_rejection(reply)}): check {self.source}")
        client.session_token = token
        client.headers["Authorization"] = f"Bearer {token}"
        client.token_expiry = _token_expiry(token)
        accounts = await client._make_request("POST", "/Account/search", data={"onlyActiveAccounts": False})
        if not isinstance(accounts, dict) or accounts.get("success") is not True:
            raise ConnectError(f"listing the login's accounts failed: {_rejection(accounts)}")
        self.found = [a for a in accounts.get("accounts") or [] if isinstance(a, dict)]
        chosen = self._choose(self.found)
        client.account_info = _sdk().Account.from_api(chosen)
        client._authenticated = True
        self.account_id = chosen.get("id")
        self.logins += 1
        for listener in self.listeners:
            try:
                listener(token)
            except Exception:
                log.exception("a token listener failed")

    def _choose(self, accounts: list[dict[str, Any]]) -> dict[str, Any]:
        return _find(accounts, AccountWanted(self.account_id, self.account_name))

    def recent_accounts(self, within: float = 0.5) -> asyncio.Future | None:
        """The login's account list being read, or read less than ``within`` seconds ago, under
        the current token, for another account's reconciliation to share: the accounts of one
        login reconcile together, and each would read the same list (one request each, against
        the login's one rate limit). Kept short: a reconciliation applies the balance it read as
        current, so a list older than the stream's last account update would set it back."""
        if self._accounts_read is None:
            return None
        at, token, read = self._accounts_read
        failed = read.done() and (read.cancelled() or read.exception() is not None)
        if failed or token != self.token or time.monotonic() - at > within:
            return None
        return read

    def share_accounts(self, read: asyncio.Future) -> None:
        self._accounts_read = (time.monotonic(), self.token, read)

    def listed(self, read: asyncio.Future) -> None:
        """A reconciliation read the login's accounts: ``found`` is that list (new accounts too)."""
        if not read.cancelled() and read.exception() is None and isinstance(read.result(), list):
            self.found = [a for a in read.result() if isinstance(a, dict)]

    def pin(self, account: dict[str, Any]) -> None:
        """The client's account (the SDK's lookups, the realtime client) is ``account``, one of
        those the login listed; a re-login keeps it."""
        if account.get("id") != self.account_id:
            self.client.account_info = _sdk().Account.from_api(account)
            self.account_id = account.get("id")


@dataclass(frozen=True, slots=True)
class AccountWanted:
    """One account riskc.yaml names: by ``id``, by ``name`` (as the platform shows it, in any
    case), or neither: the first that can trade, else the first (the SDK's choice)."""

    id: int | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class AccountsWanted:
    """The accounts a login serves: those ``listed``, and with ``every`` each other account the
    login lists that can trade (``canTrade`` not false when it is listed; ``accounts: all``)."""

    listed: tuple[AccountWanted, ...] = ()
    every: bool = False


def _find(accounts: list[dict[str, Any]], wanted: AccountWanted) -> dict[str, Any]:
    if wanted.id is not None:
        found = [a for a in accounts if a.get("id") == wanted.id]
        what = f"account {wanted.id}"
    elif wanted.name:
        found = [a for a in accounts if str(a.get("name", "")).upper() == wanted.name.upper()]
        what = f"account {wanted.name!r}"
    else:  # the first that can trade, else the first: the SDK's choice, without hiding the others
        found = sorted(accounts, key=lambda a: a.get("canTrade") is False)
        what = "an account"
    if not found:
        names = ", ".join(str(a.get("name")) for a in accounts) or "none"
        raise ConnectError(f"the login has no {what} (its accounts: {names})", permanent=True)
    return found[0]


def select_accounts(found: list[dict[str, Any]], wanted: AccountsWanted) -> list[dict[str, Any]]:
    """The login's accounts riskc guards, in order (the listed ones first). Raises a permanent
    ``ConnectError`` for a listed account the login does not have, or when there is none."""
    chosen: dict[Any, dict[str, Any]] = {}
    for want in wanted.listed:
        account = _find(found, want)
        if account.get("id") in chosen:
            raise ConnectError(f"account {account.get('name')} is listed twice (by name and by id?)", permanent=True)
        chosen[account.get("id")] = account
    if wanted.every:
        for account in found:
            if account.get("canTrade") is not False and isinstance(account.get("id"), int):
                chosen.setdefault(account["id"], account)
    if not chosen:
        names = ", ".join(str(a.get("name")) for a in found) or "none"
        raise ConnectError(f"the login has no account that can trade (its accounts: {names})", permanent=True)
    return list(chosen.values())


def _token_expiry(token: str) -> dt.datetime:
    """The JWT's ``exp``; one hour from now when it cannot be read (the SDK's default, §2)."""
    import base64
    import json

    try:
        payload = token.split(".")[1]
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return dt.datetime.fromtimestamp(float(data["exp"]), dt.UTC)
    except (IndexError, ValueError, KeyError, TypeError):
        return dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)


_COST = {
    "close": 1,
    "partial_close": 1,
    "cancel": 2,
    "modify_stop": 3,
    "place_stop": 2,
}  # requests, SDK lookups included
THROTTLED_PAUSE = 5.0  # after a 429 on a broker call (the SDK keeps no Retry-After for those)


def _unthrottled(client: Any) -> Callable[..., Awaitable[Any]]:
    """The client's request funnel without the SDK's rate-limit decorator, which answers a 429 on
    a read by sleeping 60 s whatever ``Retry-After`` says (error_handler.py:359-419): riskc
    waits the Gateway's own ``Retry-After`` in its admission instead. The funnel itself when the
    decorator is not there."""
    inner = getattr(type(client)._make_request, "__wrapped__", None)
    if inner is None:
        return client._make_request
    return lambda *args, **kwargs: inner(client, *args, **kwargs)


def _retry_after(error: BaseException) -> float:
    """The seconds in the SDK's "retry after Ns" (the 429's ``Retry-After``, http.py:358-369)."""
    found = re.search(r"retry after (\d+(?:\.\d+)?)s", str(error))
    return float(found.group(1)) if found else 60.0


def _throttled(error: BaseException) -> bool:
    """A broker call refused with 429 (http.py:358-364)."""
    return isinstance(error, _sdk().errors.OrderSubmissionUncertainError) and "rate-limited" in str(error)


def _unauthorized(error: BaseException) -> bool:
    """The Gateway answered 401: a read's ``ProjectXAuthenticationError``, or a mutating call's
    ``OrderSubmissionUncertainError`` that says so (http.py:389-411)."""
    errors = _sdk().errors
    if isinstance(error, errors.ProjectXAuthenticationError):
        return True
    return isinstance(error, errors.OrderSubmissionUncertainError) and "401" in str(error)


# --------------------------------------------------------------------------- the broker port


class _AccountView:
    """The shared client as the SDK's ``OrderManager`` sees it for one of the login's accounts:
    that account's ``account_info``, everything else the client's. ``place_order`` refuses an
    account other than ``client.account_info``'s, and ``modify_order`` sends that account's id
    whatever the order's (order_manager/core.py:589-601, 1387-1390), so with one client per login
    the second account's stops would be refused or sent for the first."""

    def __init__(self, client: Any, account_id: int) -> None:
        self.__dict__["_client"] = client
        self.__dict__["_account_id"] = account_id

    @property
    def account_info(self) -> Any:
        info = self._client.account_info
        if info is None or info.id == self._account_id:
            return info
        return dataclasses.replace(info, id=self._account_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_client"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._client, name, value)


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
        session: Session | None = None,
        admission: Admission | None = None,
    ) -> None:
        sdk = _sdk()
        self.client = client
        self.admission = admission if admission is not None else Admission()
        self.session = session if session is not None else Session(client, account_id=account_id)
        self.optional_failures = 0  # reads of an optional endpoint that failed (degraded, not fatal)
        self._read_token: str | None = None
        self.account_id = account_id
        self.call_timeout = call_timeout
        self.read_timeout = read_timeout
        self.include_suspended = include_suspended
        self._errors = sdk.errors
        self._orders = sdk.OrderManager(_AccountView(client, account_id), sdk.EventBus())

    @property
    def settle_window(self) -> float:
        """How long after a send whose outcome is unknown its effect may still land: the SDK's own
        request timeout (``timeout_seconds``, §4.2) plus a margin. The executor does not resend
        before it has passed, even when its own ``timeout`` is shorter (PRODUCT.md §8)."""
        request = getattr(getattr(self.client, "config", None), "timeout_seconds", None)
        return float(request if isinstance(request, int | float) else 10) + SETTLE_MARGIN

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
        token = self.session.token
        try:
            async with deadline:
                await self.session.ensure()  # mutating calls do not refresh the token (§2)
                token = self.session.token
                await self.admission.acquire(_COST.get(call.kind, 1), urgent=True)
                return await sender(self, call)
        except BrokerError:
            raise
        except Exception as error:
            _reraise_cancellation()  # the SDK turns a cancelled mutating request into an error (§4.2)
            if deadline.expired():
                raise BrokerError(
                    f"{call.describe()}: no answer within {self.call_timeout:g}s; outcome unknown"
                ) from None
            if _throttled(error):
                self.admission.retry_after(THROTTLED_PAUSE)
                raise BrokerError(
                    f"{call.describe()}: the Gateway refused it (429, rate limited); sent again once verified",
                    unsent=True,
                ) from None
            if _unauthorized(error):
                renewed = await self.session.renew(token)
                raise BrokerError(
                    f"{call.describe()}: the Gateway rejected the session token (401); "
                    + ("logged in again" if renewed else "logging in again failed"),
                    unsent=True,
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

    # -- contract data ----------------------------------------------------------------------

    async def contract(self, contract_id: str) -> dict[str, Any] | None:
        """The Gateway's data of ``contract_id`` (``id``, ``name``, ``tickSize``, ``tickValue``)
        through the SDK's ``get_instrument`` (``/Contract/searchById``, falling back to
        ``/Contract/search`` by product, §3), or None when the Gateway has no such contract, the
        answer is for another product, or the call fails (logged). Never raises."""
        try:
            async with asyncio.timeout(self.read_timeout):
                await self.admission.acquire(2)
                found = await self.client.get_instrument(contract_id)
        except Exception as error:
            _reraise_cancellation()
            log.warning("the Gateway's contract data for %s: %s", contract_id, _why(error))
            return None
        found_id = str(getattr(found, "id", "") or "")
        if found_id != contract_id and symbol_of(found_id) != symbol_of(contract_id):
            log.warning("the Gateway answered %s for contract %s; not used", found_id or "nothing", contract_id)
            return None
        return {
            "id": found_id,
            "name": str(getattr(found, "description", "") or getattr(found, "name", "") or ""),
            "tickSize": getattr(found, "tickSize", None),
            "tickValue": getattr(found, "tickValue", None),
        }

    # -- state ------------------------------------------------------------------------------

    async def state(self, account_id: int, *, trades_since: dt.datetime | None = None) -> BrokerState:
        """Open positions, working orders (open, and suspended when the Gateway lists them), the
        account, and the trades since ``trades_since`` (not read when None: verification does not
        need them). A rejected token (401) is replaced by a fresh login and the read done once
        more. Raises ``BrokerError`` when a required read fails or times out; a failing optional
        read (suspended orders) is left out and said so in ``extra``."""
        results = await self._read(account_id, trades_since)
        # A token revoked, or a session ended elsewhere, while the hubs may stay up: the SDK does
        # not log in again for a token that is not near its expiry (§2).
        rejected = any(_unauthorized(v) for v in results.values() if isinstance(v, BaseException))
        if rejected and await self.session.renew(self._read_token):
            results = await self._read(account_id, trades_since)
        suspended = results.get("suspended")
        if isinstance(suspended, Exception) and not isinstance(suspended, asyncio.CancelledError):
            self.optional_failures += 1
            log.warning("reading suspended orders failed; the state is read without them: %s", _why(suspended))
            del results["suspended"]
        for name, value in results.items():
            if isinstance(value, BaseException):
                if isinstance(value, asyncio.CancelledError):
                    raise value
                raise BrokerError(
                    f"reading {name}: {value}" if isinstance(value, BrokerError) else f"reading {name}: {_why(value)}"
                )
        return _state(account_id, results)

    async def _read(self, account_id: int, trades_since: dt.datetime | None) -> dict[str, Any]:
        """Every read at once; a failed one is its exception in the result. The wait for the
        login's rate limit comes first and is not bounded by ``read_timeout``: a reconciliation
        (``trades_since``) waits its turn behind the other accounts' reads, however long, rather
        than fail and leave its account paused; a verification (a broker call's outcome) goes
        before any reconciliation, as enforcement goes first."""
        reconciling = trades_since is not None
        reads = {
            "positions": self._search("/Position/searchOpen", {"accountId": account_id}, "positions"),
            "orders": self._search("/Order/searchOpen", {"accountId": account_id}, "orders"),
        }
        if reconciling:  # a verification needs neither
            reads["trades"] = self._search(
                "/Trade/search", {"accountId": account_id, "startTimestamp": trades_since.isoformat()}, "trades"
            )
        if self.include_suspended:
            reads["suspended"] = self._suspended(account_id)
        try:
            await self.admission.acquire(len(reads) + reconciling, urgent=not reconciling)
        except BaseException:
            for read in reads.values():
                read.close()
            raise
        if reconciling:
            shared = self.session.recent_accounts()
            if shared is not None:
                self.admission.refund(1)
            reads["accounts"] = asyncio.shield(shared) if shared is not None else self._list_accounts()
        try:
            async with asyncio.timeout(self.read_timeout):
                await self.session.ensure()
                self._read_token = self.session.token
                values = await asyncio.gather(*reads.values(), return_exceptions=True)
                return dict(zip(reads, values, strict=True))
        except TimeoutError:
            raise BrokerError(f"reading the account state took longer than {self.read_timeout:g}s") from None
        except Exception as error:
            _reraise_cancellation()
            raise BrokerError(f"reading the account state: {_why(error)}") from None
        finally:
            for read in reads.values():  # never started (ensure() failed): no "never awaited" warning
                if inspect.iscoroutine(read) and inspect.getcoroutinestate(read) == inspect.CORO_CREATED:
                    read.close()

    def _list_accounts(self) -> asyncio.Future:
        """The login's accounts (each one's balance), read once for every account of the login
        that reconciles within a moment of another (``Session.recent_accounts``)."""
        read = asyncio.ensure_future(self._search("/Account/search", {"onlyActiveAccounts": False}, "accounts"))
        self.session.share_accounts(read)
        read.add_done_callback(self.session.listed)
        return read

    async def _search(self, path: str, body: dict[str, Any], key: str) -> list[dict[str, Any]]:
        try:
            reply = await _unthrottled(self.client)("POST", path, data=body)
        except self._errors.ProjectXRateLimitError as error:
            wait = _retry_after(error)
            self.admission.retry_after(wait)
            raise BrokerError(f"{path}: the Gateway is rate limiting (429); nothing is sent for {wait:g}s") from None
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
    accounts = results.get("accounts", ())
    account = next((a for a in accounts if isinstance(a, dict) and a.get("id") == account_id), None)
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
    heard_at: float = field(default_factory=time.monotonic)  # the last frame received, pings included
    pinged: bool = False  # the server has sent a keep-alive ping since the hub opened

    def opened(self) -> None:  # runs inside pysignalr: must not raise
        self.opens += 1
        self.heard_at, self.pinged = time.monotonic(), False
        self.wake.set()

    def heard(self, raw: Any) -> None:
        self.heard_at = time.monotonic()
        if not self.pinged and isinstance(raw, str | bytes) and _PING_FRAME in str(raw).replace(" ", ""):
            self.pinged = True

    def closed(self) -> None:
        self.closes += 1
        self.wake.set()


@dataclass
class _Outlet:
    """One account's share of the connection: its payloads and the connection's events, in
    arrival order, wait in ``queue`` until its consumer is attached (so nothing that arrives while
    the daemon builds its loops is lost); ``contracts`` is the market data it holds or watches."""

    account_id: int
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    contracts: set[str] = field(default_factory=set)
    task: asyncio.Task | None = None
    released: bool = False


class ProjectXConnection:
    """A live, supervised connection of one login, serving every account it was built for (one
    token, one user hub, one market hub, one rate limit). Built by ``connect_login`` or
    ``connect``; use ``async with`` or ``await close()``. ``account_id``/``account``/``broker``
    are the first account's (the one the SDK's client and realtime client are bound to);
    ``brokers`` has one ``BrokerPort`` per account, all through the one session."""

    def __init__(
        self,
        client: Any,
        sink: Sink | None,
        options: ConnectOptions,
        session: Session | None = None,
        accounts: Iterable[dict[str, Any]] = (),
    ) -> None:
        self.client = client
        self.options = options
        self.account: dict[str, Any] = exact_numbers(dataclasses.asdict(client.account_info))
        self.account_id: int = client.account_info.id
        self.accounts: dict[int, dict[str, Any]] = {self.account_id: self.account}
        for found in accounts:
            if isinstance(found.get("id"), int) and found["id"] != self.account_id:
                self.accounts[found["id"]] = exact_numbers(found)
        self.session = session if session is not None else Session(client, account_id=self.account_id)
        self.session.listeners.append(self._new_token)
        admission = for_login(
            str(getattr(client.config, "api_url", "")),
            str(getattr(client, "username", "")),
            options.requests_per_minute,
            options.read_reserve,
        )
        self.brokers = {
            account_id: ProjectXBroker(
                client,
                account_id,
                call_timeout=options.call_timeout,
                read_timeout=options.read_timeout,
                include_suspended=options.include_suspended,
                session=self.session,
                admission=admission,
            )
            for account_id in self.accounts
        }
        self.broker = self.brokers[self.account_id]
        self.logouts = 0  # GatewayLogout invocations received
        self.received = 0  # hub payloads delivered
        self.unreadable = 0  # payloads from_callback could not wrap (logged, skipped)
        self.foreign = 0  # user-hub payloads of an account this connection does not serve (dropped)
        self.revivals = 0  # full hub rebuilds by the watchdog
        self.ignored: set[int] = set()  # accounts of the login the caller chose not to serve (unguarded)
        self._outlets = {account_id: _Outlet(account_id) for account_id in self.accounts}
        self._wake = asyncio.Event()
        self._hubs = {name: _Hub(name, self._wake) for name in ("user", "market")}
        self._hooked: dict[str, Any] = {}
        self._contracts: set[str] = set()
        self._unsubscribed: set[str] = set()  # wanted, but the SDK's subscribe failed: retried
        self._user_subscribed = False
        self._follow = True
        self._rt: Any = None
        self._watchdog: asyncio.Task | None = None
        self._next_revival = 0.0
        self._revival_backoff = 1.0
        self._last_auth_check = time.monotonic()
        self._closing = False
        self._reviving = False
        self._logged_out = False  # a GatewayLogout arrived: log in again and rebuild the hubs
        if sink is not None:
            self.attach(self.account_id, sink)

    # -- public -----------------------------------------------------------------------------

    @property
    def contracts(self) -> frozenset[str]:
        """Contracts whose market data is (to be) subscribed: the union of the accounts'."""
        return frozenset(self._contracts)

    def health(self) -> dict[str, bool]:
        """Whether each hub is up right now (flag *and* its run task alive, §5.4)."""
        return {name: self._live(name) for name in self._hubs}

    @property
    def connected(self) -> bool:
        return all(self.health().values())

    def attach(self, account_id: int, sink: Sink) -> None:
        """Deliver ``account_id``'s items to ``sink`` from now on, those queued so far first."""
        outlet = self._outlets[account_id]
        if outlet.task is None:
            outlet.task = asyncio.create_task(self._pump(outlet, sink), name=f"riskc:projectx-pump-{account_id}")

    async def subscribe(self, contract_ids: Iterable[str], account_id: int | None = None) -> None:
        """Add market data (quotes, trades) for ``contract_ids``, delivered to ``account_id`` (None:
        every account); kept across reconnects. If the market hub is down now, the watchdog
        subscribes when it is back."""
        wanted = [c for c in dict.fromkeys(contract_ids) if c]
        for outlet in self._outlets.values() if account_id is None else [self._outlets[account_id]]:
            outlet.contracts.update(wanted)
        new = [c for c in wanted if c not in self._contracts]
        if not new:
            return
        self._contracts.update(new)
        if not await self._rt.subscribe_market_data(new):
            self._unsubscribed.update(new)

    def follow(self, account_id: int, contract_ids: Iterable[str]) -> None:
        """``account_id`` holds or watches these contracts (its reconciliation said so): their
        market data goes to it, subscribed by the watchdog at once if no account had them."""
        outlet = self._outlets.get(account_id)
        if outlet is None:
            return
        for contract in contract_ids:
            if not contract:
                continue
            outlet.contracts.add(contract)
            if contract not in self._contracts:
                self._contracts.add(contract)
                self._unsubscribed.add(contract)
                self._wake.set()

    def unguarded(self) -> list[dict[str, Any]]:
        """Accounts the login listed last (at login or a reconciliation) that can trade and that
        this connection does not serve yet: a new account (a new Combine) since it started."""
        return [
            a
            for a in self.session.found
            if isinstance(a.get("id"), int)
            and a["id"] not in self.accounts
            and a["id"] not in self.ignored
            and a.get("canTrade") is not False
        ]

    def add_account(self, found: dict[str, Any]) -> int:
        """Serve one more account of the login: its broker port (the same session and rate limit),
        its outlet (``attach`` it), and its updates subscribed on the user hub by the watchdog,
        at once. Returns its id."""
        account_id = int(found["id"])
        if account_id in self.accounts:
            return account_id
        self.accounts[account_id] = exact_numbers(found)
        self.brokers[account_id] = ProjectXBroker(
            self.client,
            account_id,
            call_timeout=self.options.call_timeout,
            read_timeout=self.options.read_timeout,
            include_suspended=self.options.include_suspended,
            session=self.session,
            admission=self.broker.admission,
        )
        self._outlets[account_id] = _Outlet(account_id)
        self._user_subscribed = False  # _resubscribe sends every account's subscriptions again
        self._wake.set()
        return account_id

    async def release(self, account_id: int) -> None:
        """``account_id``'s consumer is done (the daemon stops it): the connection closes when the
        last of its accounts is released, so one account's shutdown never cuts another's calls."""
        outlet = self._outlets.get(account_id)
        if outlet is not None:
            outlet.released = True
        if all(o.released for o in self._outlets.values()):
            await self.close()

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
        for outlet in self._outlets.values():
            if outlet.task is None:
                continue
            outlet.queue.put_nowait(None)
            try:
                async with asyncio.timeout(5):
                    await outlet.task
            except Exception:
                outlet.task.cancel()
        await self.client.__aexit__(None, None, None)

    async def __aenter__(self) -> ProjectXConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- start ------------------------------------------------------------------------------

    async def _start(self, contracts: Iterable[str], follow_contracts: bool, read_contracts: bool = True) -> None:
        sdk = _sdk()
        self._follow = follow_contracts
        self._rt = rt = sdk.ProjectXRealtimeClient(
            jwt_token=self.client.session_token, account_id=str(self.account_id), config=self.client.config
        )
        rt.stale_feed_seconds = float("inf")  # its reconnect loop on a quiet market hub never settles (§5.5)
        for name in CALLBACK_TARGETS:
            await rt.add_callback(name, self._callback(name))
        await rt.setup_connections()
        self._install_hooks()
        if not await rt.connect():
            raise ConnectError(f"the Gateway's hubs ({rt.user_hub_url}, {rt.market_hub_url}) did not come up in time")
        if not await self._subscribe_accounts():
            raise ConnectError("subscribing to the accounts' updates failed")
        self._user_subscribed = True
        for hub in self._hubs.values():
            hub.live, hub.seen_opens, hub.seen_closes = True, hub.opens, hub.closes
        await self.subscribe(contracts)
        if follow_contracts and read_contracts:
            for account_id, broker in self.brokers.items():
                state = await broker.state(account_id)
                await self.subscribe([item.contract_id for item in (*state.positions, *state.orders)], account_id)
        quiet_sdk_logging()  # objects built since the import may have made new loggers
        self._watchdog = asyncio.create_task(self._watch(), name="riskc:projectx-watchdog")

    async def _subscribe_accounts(self) -> bool:
        """Every account's updates on the one user hub. The SDK's ``subscribe_user_updates`` sends
        ``SubscribeAccounts`` and the first account's ``SubscribeOrders/Positions/Trades``
        (realtime/subscriptions.py:170-180); the Gateway takes the account id as the argument of
        each, so the other accounts' three are sent here the same way, on the same connection."""
        rt = self._rt
        if not await rt.subscribe_user_updates():
            return False
        others = [account_id for account_id in self.accounts if account_id != self.account_id]
        try:
            for account_id in others:
                for method in ("SubscribeOrders", "SubscribePositions", "SubscribeTrades"):
                    await _sdk().invoke_maybe(rt.user_connection.send, method, [account_id])
        except Exception as error:
            _reraise_cancellation()
            log.warning("subscribing the other accounts' updates failed: %s", _why(error))
            return False
        return True

    def _callback(self, name: str) -> Callable[[Any], Awaitable[None]]:
        # A plain ``async def``: the SDK awaits only what ``iscoroutinefunction`` says it should (§5.3).
        async def callback(payload: Any) -> None:
            self._receive(name, payload)

        return callback

    def _receive(self, name: str, payload: Any) -> None:
        """Wrap, route to the accounts it concerns, and queue; never await here, so messages keep
        their arrival order."""
        try:
            message = from_callback(name, payload, dt.datetime.now(dt.UTC))
        except Exception as error:
            self.unreadable += 1
            log.warning("skipped a %s payload riskc cannot read (%s): %s", name, error, redact(payload)[:500])
            return
        self.received += 1
        if message.hub == "market":
            contract = message.args[0] if message.args and isinstance(message.args[0], str) else None
            for outlet in self._outlets.values():
                if contract is None or contract in outlet.contracts:
                    outlet.queue.put_nowait(message)
            return
        for account_id, part in _by_account(message):
            if account_id is None and len(self._outlets) > 1:
                self.unreadable += 1  # whose it is cannot be told: never apply it to every account
                log.warning("skipped a %s payload with no account id: %s", message.target, redact(part.args)[:500])
                continue
            outlet = self._outlets.get(self.account_id if account_id is None else account_id)
            if outlet is None:
                self.foreign += 1  # SubscribeAccounts reports every account of the login
                continue
            outlet.queue.put_nowait(part)
            if self._follow:
                self._follow_contract(outlet, part)

    def _follow_contract(self, outlet: _Outlet, message: Message) -> None:
        """Subscribe the market data of every contract the account's positions and orders name,
        whatever the payload's shape (wrapped, bare, a list)."""
        if message.target not in ("GatewayUserPosition", "GatewayUserOrder"):
            return
        try:
            contracts = [event.contract_id for event in decode.decode(message)]
        except decode.DECODE_ERRORS:
            return  # the consumer reports it as malformed
        self.follow(outlet.account_id, contracts)

    async def _pump(self, outlet: _Outlet, sink: Sink) -> None:
        """Hand an account's queued items to its sink one at a time, in order; a failing sink loses
        nothing else."""
        while (item := await outlet.queue.get()) is not None:
            try:
                if isinstance(sink, asyncio.Queue):
                    await sink.put(item)
                else:
                    await sink(item)
            except Exception:
                log.exception("the message consumer failed on %s", getattr(item, "target", item))

    def _emit(self, hub: _Hub, state: Literal["disconnected", "reconnected"], detail: str) -> None:
        log.info("%s hub %s%s", hub.name, state, f": {detail}" if detail else "")
        self._broadcast(ConnectionEvent(dt.datetime.now(dt.UTC), hub.name, state, detail))

    def _broadcast(self, event: ConnectionEvent) -> None:
        for outlet in self._outlets.values():
            outlet.queue.put_nowait(event)

    # -- watchdog ---------------------------------------------------------------------------

    def _install_hooks(self) -> None:
        """Count opens and closes of the current hub objects (lost when they are rebuilt, §5.6)."""
        for name, hub in self._hubs.items():
            connection = getattr(self._rt, f"{name}_connection", None)
            if connection is None or self._hooked.get(name) is connection:
                continue
            connection.on_open(_opened(connection, hub))
            connection.on_close(hub.closed)
            connection.on("GatewayLogout", self._gateway_logout)  # the SDK only logs it (§5.3)
            self._hooked[name] = connection

    def _gateway_logout(self, *args: Any) -> None:  # runs inside pysignalr: must not raise
        self.logouts += 1
        self._logged_out = True
        self._wake.set()

    def _new_token(self, token: str) -> None:
        """A fresh login (a 401, a refresh, a logout): the hubs reconnect with the new token. After
        a rejected token every account reconciles (``renewed``): whatever the rejected session
        kept from the stream is read from REST before rules act on it again. A refresh before
        expiry replaced a valid token (nothing was missed); a rebuild reports its own."""
        if self._rt is not None:
            self._rt.jwt_token = token
        if self._watchdog is not None and not self._reviving and not self._closing and not self.session.refreshing:
            log.info("logged in again: every account of the login reconciles")
            self._broadcast(ConnectionEvent(dt.datetime.now(dt.UTC), "user", "renewed", "logged in again"))

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
            silent = now - hub.heard_at
            if live and hub.live and hub.pinged and silent >= self.options.silent_after:
                # Connected by every flag, yet not even a keep-alive ping: a half-open socket.
                hub.live, hub.down_since = False, now - self.options.revive_after
                self._emit(hub, "disconnected", f"silent for {silent:.0f}s (no keep-alive pings)")
                hub.heard_at = now
                self._next_revival = 0.0
                revive = True
                continue
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
        if self._logged_out:
            # The Gateway ended the session: the hubs' token is dead even if the sockets look up.
            self._logged_out = False
            log.warning("the Gateway sent GatewayLogout: logging in again and rebuilding the hubs")
            self._next_revival = 0.0
            revive = True
        if revive and now >= self._next_revival:
            await self._revive()
        await self._resubscribe()
        if now - self._last_auth_check >= self.options.auth_check_every:
            self._last_auth_check = now
            async with asyncio.timeout(self.options.read_timeout):
                await self.session.ensure()

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
            self._user_subscribed = await self._subscribe_accounts()
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
        self._reviving = True
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                await rt.disconnect()
                await self.session.login()  # the old token may be why the hub died
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
        finally:
            self._reviving = False
        for hub in self._hubs.values():
            hub.down_since = time.monotonic()

    async def _resubscribe(self) -> None:
        if not self._user_subscribed and self._live("user"):
            self._user_subscribed = await self._subscribe_accounts()
        if self._unsubscribed and self._live("market"):
            pending = sorted(self._unsubscribed)
            self._unsubscribed.clear()
            if not await self._rt.subscribe_market_data(pending):
                self._unsubscribed.update(pending)


def _opened(connection: Any, hub: _Hub) -> Callable[[], None]:
    """The hub's open hook: count the open, and listen to the (new) pysignalr client's frames
    (``AsyncHubConnection.start`` builds a new client each time, async_hub.py:121-138)."""

    def opened() -> None:  # runs inside pysignalr: must not raise
        hub.opened()
        try:
            _listen(connection, hub.heard)
        except Exception:
            log.exception("watching the %s hub for silence", hub.name)

    return opened


def _listen(connection: Any, heard: Callable[[Any], None]) -> None:
    """Call ``heard`` on every frame the hub receives, keep-alive pings included: pysignalr does
    not time out a server that stops pinging (its transport's ``_on_raw_message`` is the one
    place every frame passes, pysignalr/transport/websocket.py:288-296, §5.7)."""
    try:
        transport = connection._ensure_client()._transport
        original = transport._on_raw_message
    except AttributeError:
        log.warning("cannot watch the hub for silence: pysignalr's transport has changed")
        return
    if getattr(original, "riskc_listens", False):
        return

    async def on_raw_message(raw: Any) -> None:
        heard(raw)
        await original(raw)

    on_raw_message.riskc_listens = True  # type: ignore[attr-defined]
    transport._on_raw_message = on_raw_message


def _by_account(message: Message) -> list[tuple[int | None, Message]]:
    """A user-hub message split by the account each entity belongs to (``accountId``; an
    account update's own ``id``), in order; the message itself when it is one account's (the
    usual case). None: an entity that does not say."""
    payload = message.args[0] if message.args else None
    items = payload if type(payload) is list else [payload]
    key = "id" if message.target == "GatewayUserAccount" else "accountId"
    groups: dict[int | None, list[Any]] = {}
    for item in items:
        data = item.get("data", item) if type(item) is dict else None
        account = data.get(key) if type(data) is dict else None
        try:
            account = None if account is None or isinstance(account, bool) else int(account)
        except (TypeError, ValueError, ArithmeticError):
            account = None
        groups.setdefault(account, []).append(item)
    if len(groups) == 1:
        return [(next(iter(groups)), message)]
    return [(account, Message(message.ts, message.hub, message.target, [part])) for account, part in groups.items()]


async def connect_login(
    credentials: Credentials,
    urls: GatewayUrls = GatewayUrls(),
    wanted: AccountsWanted = AccountsWanted((AccountWanted(),)),
    *,
    contracts: Iterable[str] = (),
    follow_contracts: bool = True,
    read_contracts: bool = True,
    options: ConnectOptions = ConnectOptions(),
    client: Any = None,
) -> ProjectXConnection:
    """Log in once, select the login's accounts (``wanted``), open both hubs once and subscribe
    every account's updates, market data for ``contracts`` and (``follow_contracts``) every
    contract an account holds or has a working order in, now (``read_contracts``: read from REST
    here; else the caller's ``follow``) or later. ``attach`` a sink per account to receive its
    items. ``client`` replaces the SDK client (tests). Raises ``ConnectError``."""
    px = client if client is not None else make_client(credentials, urls, None, options)
    errors = _sdk().errors
    await px.__aenter__()
    connection: ProjectXConnection | None = None
    first = wanted.listed[0] if wanted.listed else AccountWanted()
    session = Session(px, first.name, account_id=first.id, refresh_before=options.refresh_before)
    session.source = credentials.source
    try:
        try:
            async with asyncio.timeout(options.connect_timeout):
                await session.login()
                chosen = select_accounts(session.found, wanted)
                session.pin(chosen[0])  # `accounts: all` alone: the first found that can trade
        except ConnectError as error:
            raise ConnectError(f"logging in at {urls.api_url}: {error}", permanent=error.permanent) from None
        except errors.ProjectXAuthenticationError:
            raise ConnectError(
                f"the Gateway at {urls.api_url} refused the login: check {credentials.source}",
                permanent=True,
            ) from None
        except (TimeoutError, errors.ProjectXError, OSError) as error:
            raise ConnectError(
                f"cannot log in at {urls.api_url}: {_why(error)}; check the network and broker.api_url"
            ) from None
        px.account_name = px.account_info.name  # the SDK's own lookups see the same account
        connection = ProjectXConnection(px, None, options, session, chosen)
        async with asyncio.timeout(options.connect_timeout):
            await connection._start(contracts, follow_contracts, read_contracts)
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
    """One account: ``account_name``, else the credentials', else the first active one, its
    items to ``sink`` (``connect_login`` with one account). Raises ``ConnectError``."""
    wanted = AccountsWanted((AccountWanted(name=account_name or credentials.account_name),))
    connection = await connect_login(
        credentials,
        urls,
        wanted,
        contracts=contracts,
        follow_contracts=follow_contracts,
        options=options,
        client=client,
    )
    connection.attach(connection.account_id, sink)
    return connection
