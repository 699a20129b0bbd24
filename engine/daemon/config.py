"""`riskc.yaml`: where the state lives, which broker, which accounts follow which policies, and
where alerts go (docs/config.md). Loaded with ruamel.yaml, so every mistake is reported as
``path:line:col: message`` at the key or value that is wrong, all of them at once, no traceback.

Credentials are never read from the file: they come from the environment only
(``credentials_from_env``), so a config file can be shared, committed or pasted into a bug
report without leaking anything. A webhook URL carries a token too; write it as ``${VAR}``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from riskc.engine.testing.snapshot_file import parse_duration

CONFIG_ENV = "RISKC_CONFIG"
CONFIG_NAME = "riskc.yaml"
SEVERITIES = ("info", "low", "medium", "high", "critical")
# The embedded demo's files are package data, so an installed riskc finds them as a checkout does.
# The recording is a copy of examples/sessions/demo.jsonl (make_sessions.py writes both).
DEMO_RECORDING = Path(str(resources.files("riskc.engine.sim") / "demo.jsonl"))
DEMO_POLICY = Path(str(resources.files("riskc.policies") / "topstep-50k.risk"))

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# -- errors ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One mistake in a config file; ``line`` and ``col`` are 1-based (0 when unknown)."""

    path: str
    line: int
    col: int
    message: str

    def __str__(self) -> str:
        if self.line:
            return f"{self.path}:{self.line}:{self.col}: {self.message}"
        return f"{self.path}: {self.message}"


class ConfigError(ValueError):
    """Every issue found in one config file, sorted by position; ``str`` is one line each."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = tuple(sorted(issues, key=lambda i: (i.line, i.col)))
        super().__init__("\n".join(map(str, self.issues)))


# -- value types ----------------------------------------------------------------------------


def _positive_duration(value: Any) -> dt.timedelta:
    duration = parse_duration(value)
    if duration <= dt.timedelta(0):
        raise ValueError(f"{value!r} must be longer than zero")
    return duration


Duration = Annotated[dt.timedelta, BeforeValidator(_positive_duration)]
Severity = Literal["info", "low", "medium", "high", "critical"]


def _resolve_path(value: Any, info: ValidationInfo) -> Path:
    """``~`` expanded; a relative path is relative to the config file, not to the directory the
    command happens to run in (a systemd unit and a terminal must read the same files)."""
    path = Path(os.path.expanduser(str(value)))
    base = (info.context or {}).get("base")
    return path if path.is_absolute() or base is None else Path(base) / path


ConfigPath = Annotated[Path, BeforeValidator(_resolve_path)]
# `policies: policies/` is one entry: a single path stands for a list of it.
PolicyPaths = Annotated[list[ConfigPath], BeforeValidator(lambda value: [value] if isinstance(value, str) else value)]


def _resolve_state(value: Any, info: ValidationInfo) -> Path | str:
    """``state:`` is a file (resolved as any path) or a PostgreSQL desk URL, kept as written."""
    from riskc.engine.store.postgres import is_url

    return value if is_url(value) else _resolve_path(value, info)


StateLocation = Annotated[Path | str, BeforeValidator(_resolve_state)]


def redact_url(url: str) -> str:
    """``https://discord.com/…``: enough to tell which service, never the token in the path or
    the query (nor a ``user:password@``). Used wherever a webhook URL could be shown."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<url>"
    return f"{parts.scheme}://{host}{port}/…" if parts.scheme and host else "<url>"


def default_state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$XDG_STATE_HOME/riskc`` (``~/.local/state/riskc``); ``%LOCALAPPDATA%\\riskc`` on Windows."""
    if os.name == "nt" and environ.get("LOCALAPPDATA"):
        return Path(environ["LOCALAPPDATA"]) / "riskc"
    base = environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(base) / "riskc"


# -- the models -----------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


BrokerKind = Literal["projectx", "sim", "dry-run"]


class BrokerConfig(_Model):
    """``projectx`` trades the account; ``dry-run`` follows it live but sends nothing (every
    action is decided, logged and audited as if sent); ``sim`` plays a recording against the
    simulated broker."""

    kind: BrokerKind = "projectx"
    recording: ConfigPath | None = None
    speed: float = Field(default=60.0, ge=0)
    timeout: Duration = dt.timedelta(seconds=15)
    retries: int = Field(default=3, ge=0, le=20)
    # At most one modification per stop per this interval: a trailing stop's moves in between
    # are coalesced into the latest (the Gateway allows about 200 requests a minute per login).
    stop_move_interval: Duration = dt.timedelta(seconds=2)
    # Where the Gateway is (projectx, dry-run); the defaults are TopstepX's.
    api_url: str | None = None
    user_hub_url: str | None = None
    market_hub_url: str | None = None

    @model_validator(mode="after")
    def _sim_fields(self) -> Self:
        if self.kind == "sim" and self.recording is None:
            raise ValueError("a `sim` broker needs `recording:` (the session to play)")
        if self.kind != "sim" and self.recording is not None:
            raise ValueError(f"`recording:` only applies to the `sim` broker, not `{self.kind}`")
        return self

    @property
    def needs_credentials(self) -> bool:
        return self.kind != "sim"


_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class LoginConfig(_Model):
    """A broker login (``logins:``): the environment variables its credentials come from. The
    file names the variables, never the values, so it can still be shared."""

    name: str = Field(min_length=1)
    username_env: str
    api_key_env: str

    @field_validator("username_env", "api_key_env")
    @classmethod
    def _variable_name(cls, value: str) -> str:
        if not re.match(_ENV_NAME, value):
            raise ValueError(f"{value!r} is not an environment variable name (letters, digits, _)")
        return value


class AccountConfig(_Model):
    """One account and its policies. With neither ``name`` nor ``id`` the entry means the account
    the credentials select (``PROJECT_X_ACCOUNT_NAME``, or the only one there is). ``all: true``
    means every account its login can see (docs/config.md, "Logins and `accounts: all`");
    ``login`` names the entry of ``logins:`` whose credentials reach the account."""

    name: str | None = None
    id: int | None = None
    all: bool = False
    login: str | None = None
    policies: PolicyPaths = Field(min_length=1)

    @model_validator(mode="after")
    def _all_alone(self) -> Self:
        if self.all and (self.name is not None or self.id is not None):
            raise ValueError("`all: true` means every account of the login: leave out `name` and `id`")
        return self

    @property
    def label(self) -> str:
        if self.all:
            return f"every account of login {self.login}" if self.login else "every account"
        if self.id is not None and self.name:
            return f"{self.name} ({self.id})"
        return self.name or (str(self.id) if self.id is not None else "the default account")


class GroupConfig(_Model):
    """Accounts guarded together (PRODUCT.md §9): the group's policies (`scope group`) see
    `group.*` over ``accounts`` (names or ids of entries under `accounts:`), and their flatten
    and lockouts act on every one of them (engine/enforce/group.py)."""

    name: str = Field(min_length=1)
    accounts: list[int | str] = Field(min_length=1)
    policies: PolicyPaths = Field(min_length=1)

    @property
    def label(self) -> str:
        return f"group {self.name}"


class WebhookConfig(_Model):
    url: str
    format: Literal["discord", "json"] = "json"
    min_severity: Severity = "info"

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"webhook url must start with http:// or https:// (got {redact_url(url)})")
        return url

    def __repr__(self) -> str:
        return f"WebhookConfig(url={redact_url(self.url)!r}, format={self.format!r})"


class AlertsConfig(_Model):
    console: bool = True
    webhooks: list[WebhookConfig] = []


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost``: only this machine can connect."""
    import ipaddress

    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class WebConfig(_Model):
    """The status board (engine/daemon/board): a read-only page and ``/api/status``. Loopback
    only unless a ``token`` is set: the page shows balances and positions, and it must not be
    readable by whoever shares the network (write the token as ``${VAR}``)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8642, ge=0, le=65535)
    token: str | None = Field(default=None, min_length=16, repr=False)

    @model_validator(mode="after")
    def _token_off_loopback(self) -> Self:
        if self.enabled and not is_loopback(self.host) and self.token is None:
            raise ValueError(
                f"the status board would listen on {self.host}, beyond this machine, without a token: "
                "set `web: {token: ${RISKC_WEB_TOKEN}}` (16+ characters) or keep host 127.0.0.1"
            )
        return self

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


class HeartbeatConfig(_Model):
    """A heartbeat row in the state file every ``every``; with ``url``, a ping to an outside
    monitor (healthchecks-style) too, so something other than riskc notices when it stops."""

    every: Duration = dt.timedelta(seconds=5)
    url: str | None = None
    method: Literal["GET", "POST"] = "GET"

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"heartbeat url must start with http:// or https:// (got {redact_url(url)})")
        return url

    def __repr__(self) -> str:
        shown = redact_url(self.url) if self.url else None
        return f"HeartbeatConfig(every={self.every!r}, url={shown!r}, method={self.method!r})"


EditsMode = Literal["immediately", "next_trading_day"]


class InstrumentOverride(_Model):
    """A spec the trader states (``instruments: {CPE: {tick_size: 0.0005, tick_value: 12.50}}``):
    it wins over the broker's contract data and the built-in table."""

    tick_size: Decimal = Field(gt=0)
    tick_value: Decimal = Field(gt=0)
    name: str = ""


class Config(_Model):
    state: StateLocation = Field(default_factory=lambda: default_state_dir() / "state.db")
    log: ConfigPath | None = Field(default_factory=lambda: default_state_dir() / "riskc.log.jsonl")
    broker: BrokerConfig = BrokerConfig()
    reconcile_every: Duration = dt.timedelta(seconds=30)
    # Broker logins, each naming the environment variables of its credentials; none: the SDK's
    # PROJECT_X_USERNAME / PROJECT_X_API_KEY are the one login.
    logins: list[LoginConfig] = []
    accounts: list[AccountConfig] = Field(min_length=1)
    groups: list[GroupConfig] = []
    alerts: AlertsConfig = AlertsConfig()
    web: WebConfig = WebConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    # `next_trading_day`: a policy edit is checked at once but only takes effect at the next
    # trading-day start (a commitment device against loosening a limit in the heat of the moment).
    edits: EditsMode = "immediately"
    instruments: dict[str, InstrumentOverride] = {}  # by symbol (`MNQ`, or the Gateway's product code `CPE`)
    # How old a price may be before rules that read prices stop treating it as current.
    stale_after: Duration = dt.timedelta(seconds=10)
    # Where the config was read from (None for the built-in demo); not a key of the file.
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("accounts", mode="before")
    @classmethod
    def _all_shorthand(cls, value: Any) -> Any:
        """``accounts: {all: true, policies: [...]}`` is short for a list of that one entry."""
        if isinstance(value, dict) and "all" in value:
            return [value]
        if value == "all":
            raise ValueError("write `accounts: {all: true, policies: [...]}` (every account the logins can see)")
        return value

    @property
    def lists_all(self) -> bool:
        """Some entry is ``all: true``: the accounts are known only after logging in."""
        return any(a.all for a in self.accounts)

    def login_of(self, account: AccountConfig) -> str | None:
        """The login serving ``account``: its ``login:``, else the only one of ``logins:``, else
        None (the SDK's PROJECT_X_USERNAME / PROJECT_X_API_KEY)."""
        if account.login is not None:
            return account.login
        return self.logins[0].name if len(self.logins) == 1 else None

    @field_validator("web", mode="before")
    @classmethod
    def _web_off(cls, value: Any) -> Any:
        return {"enabled": False} if value is False else value  # `web: false`

    @classmethod
    def default_demo(cls) -> Config:
        """The embedded demo `riskc run` falls back to with no config and no credentials: the
        simulated broker plays the bundled session against the Topstep 50K policy. Its state is
        kept apart from a real account's (``demo.db``), so trying the demo never leaves lockouts
        in the file a live daemon uses. The recording is not required to exist here; the daemon
        reports it when it tries to play it."""
        state_dir = default_state_dir()
        return cls(
            state=state_dir / "demo.db",
            log=state_dir / "demo.log.jsonl",
            broker=BrokerConfig(kind="sim", recording=DEMO_RECORDING, speed=60),
            accounts=[AccountConfig(policies=[DEMO_POLICY])],
        )

    @model_validator(mode="before")
    @classmethod
    def _state_per_broker(cls, data: Any) -> Any:
        """Without an explicit ``state:``/``log:``, a dry run and a simulation keep their own
        files (``dry-run.db``, ``sim.db``): a dry-run daily-loss lockout must never flatten
        tomorrow's live account, which reads ``state.db``."""
        if not isinstance(data, dict):
            return data
        broker = data.get("broker")
        kind = broker.get("kind") if isinstance(broker, dict) else getattr(broker, "kind", None)
        if kind in ("dry-run", "sim"):
            data = dict(data)
            data.setdefault("state", default_state_dir() / f"{kind}.db")
            data.setdefault("log", default_state_dir() / f"{kind}.log.jsonl")
        return data

    def instrument_overrides(self) -> dict[str, Any]:
        """``instruments:`` as ``InstrumentSpec``s by symbol."""
        from riskc.engine.core.instruments import InstrumentSpec

        return {
            symbol: InstrumentSpec(symbol, o.tick_size, o.tick_value, o.name or symbol)
            for symbol, o in self.instruments.items()
        }

    def account(self, key: int | str) -> AccountConfig | None:
        """The entry whose id or name is ``key`` (an id may come as text from the command line)."""
        for account in self.accounts:
            if account.name == key or (account.id is not None and str(account.id) == str(key)):
                return account
        return None

    def group(self, name: str) -> GroupConfig | None:
        return next((g for g in self.groups if g.name == name), None)

    def members(self, group: GroupConfig) -> list[AccountConfig]:
        """The account entries of ``group``, in its order (load_config has checked each exists)."""
        return [a for a in (self.account(key) for key in group.accounts) if a is not None]


# -- credentials ----------------------------------------------------------------------------


class CredentialsError(ValueError):
    """Half-set credentials; the message names the variables, never their values."""


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    api_key: str = field(repr=False)
    account_name: str | None = None
    source: str = "PROJECT_X_USERNAME and PROJECT_X_API_KEY"  # the variables they came from

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, api_key='***', account_name={self.account_name!r})"

    __str__ = __repr__


def login_credentials(config: Config, environ: Mapping[str, str] = os.environ) -> dict[str, Credentials]:
    """The credentials of every entry of ``logins:``, by login name, from the variables each one
    names. Raises ``CredentialsError`` naming every variable that is unset or empty (never a
    value)."""
    found, missing = {}, []
    for i, login in enumerate(config.logins):
        username = environ.get(login.username_env, "").strip()
        api_key = environ.get(login.api_key_env, "").strip()
        for variable, value, key in (
            (login.username_env, username, "username_env"),
            (login.api_key_env, api_key, "api_key_env"),
        ):
            if not value:
                missing.append(f"{variable} (logins[{i}].{key}, login `{login.name}`)")
        found[login.name] = Credentials(username, api_key, None, f"{login.username_env} and {login.api_key_env}")
    if missing:
        raise CredentialsError(f"no broker credentials: set {' and '.join(missing)} in the environment")
    return found


def credentials_from_env(environ: Mapping[str, str] = os.environ) -> Credentials | None:
    """``PROJECT_X_USERNAME`` + ``PROJECT_X_API_KEY`` (and optionally ``PROJECT_X_ACCOUNT_NAME``),
    the SDK's own variables. None when neither is set (the daemon then runs the demo); one
    without the other is a mistake worth stopping for, not a reason to fall back to the demo."""
    username = environ.get("PROJECT_X_USERNAME", "").strip()
    api_key = environ.get("PROJECT_X_API_KEY", "").strip()
    if not username and not api_key:
        return None
    if not username or not api_key:
        missing = "PROJECT_X_USERNAME" if not username else "PROJECT_X_API_KEY"
        present = "PROJECT_X_API_KEY" if not username else "PROJECT_X_USERNAME"
        raise CredentialsError(f"{present} is set but {missing} is not: set both, or neither for the demo")
    return Credentials(username, api_key, environ.get("PROJECT_X_ACCOUNT_NAME", "").strip() or None)


# -- finding and loading --------------------------------------------------------------------


def find_config(
    option: str | os.PathLike[str] | None = None, environ: Mapping[str, str] = os.environ, cwd: Path | None = None
) -> Path | None:
    """``--config PATH``, else ``$RISKC_CONFIG``, else ``./riskc.yaml``, else None (the demo).
    A path that was asked for explicitly and does not exist is an error, not a silent demo."""
    for explicit, origin in ((option, "--config"), (environ.get(CONFIG_ENV) or None, f"${CONFIG_ENV}")):
        if explicit is not None:
            path = Path(os.path.expanduser(str(explicit)))
            if not path.is_file():
                raise ConfigError([ConfigIssue(str(path), 0, 0, f"no such config file (from {origin})")])
            return path
    local = (cwd or Path.cwd()) / CONFIG_NAME
    return local if local.is_file() else None


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] = os.environ) -> Config:
    """Read, expand ``${VAR}`` references, validate, and check that the files it names exist.
    Raises ``ConfigError`` with every issue found."""
    path = Path(path)
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigIssue(shown, 0, 0, "no such config file")]) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError([ConfigIssue(shown, 0, 0, f"cannot read: {error}")]) from None
    tree = _parse_yaml(text, shown)
    issues = _expand_env(tree, shown, environ)
    if issues:
        raise ConfigError(issues)
    try:
        config = Config.model_validate(tree, context={"base": path.resolve().parent})
    except ValidationError as error:
        raise ConfigError([_issue(tree, shown, e) for e in error.errors()]) from None
    config = config.model_copy(update={"source": path})
    issues = _repeated_accounts(config, tree, shown) + _login_issues(config, tree, shown)
    issues += _missing_files(config, tree, shown) + _group_issues(config, tree, shown)
    if issues:
        raise ConfigError(issues)
    return config


def _parse_yaml(text: str, shown: str) -> CommentedMap:
    try:
        tree = YAML(typ="rt").load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = error.problem or error.context
        raise ConfigError([ConfigIssue(shown, line, col, f"not valid YAML: {problem}")]) from None
    except YAMLError as error:
        raise ConfigError([ConfigIssue(shown, 0, 0, f"not valid YAML: {error}")]) from None
    if tree is None:
        raise ConfigError([ConfigIssue(shown, 1, 1, "the config file is empty; it needs at least `accounts:`")])
    if not isinstance(tree, CommentedMap):
        message = "the config file must be a mapping of keys (state:, broker:, accounts:, ...)"
        raise ConfigError([ConfigIssue(shown, 1, 1, message)])
    return tree


def _expand_env(node: Any, shown: str, environ: Mapping[str, str]) -> list[ConfigIssue]:
    """Replace ``${VAR}`` in every string value, in place (so positions stay attached)."""
    issues: list[ConfigIssue] = []
    if isinstance(node, CommentedMap):
        items: Iterable[tuple[Any, Any]] = node.items()
    else:
        items = enumerate(node) if isinstance(node, CommentedSeq) else ()
    for key, value in list(items):
        if isinstance(value, str) and "${" in value:
            line, col = _value_position(node, key)
            unset = [name for name in _ENV_REF.findall(value) if name not in environ]
            for name in unset:
                issues.append(ConfigIssue(shown, line, col, f"environment variable {name} is not set"))
            if not unset:
                node[key] = _ENV_REF.sub(lambda m: environ[m.group(1)], value)
        elif isinstance(value, (CommentedMap, CommentedSeq)):
            issues.extend(_expand_env(value, shown, environ))
    return issues


def _value_position(node: Any, key: Any) -> tuple[int, int]:
    line, col = node.lc.value(key) if isinstance(node, CommentedMap) else node.lc.item(key)
    return line + 1, col + 1


def _key_position(node: Any, key: Any) -> tuple[int, int]:
    line, col = node.lc.key(key) if isinstance(node, CommentedMap) else node.lc.item(key)
    return line + 1, col + 1


def _locate(tree: CommentedMap, loc: tuple[Any, ...], at_key: bool) -> tuple[int, int, str]:
    """The position of the deepest part of ``loc`` found in the tree, and its dotted name.
    A wrong scalar points at the value; a missing key at its parent; an unknown key at itself."""
    node: Any = tree
    line, col, name = 1, 1, ""
    for part in loc:
        contained = (isinstance(node, CommentedMap) and part in node) or (
            isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node)
        )
        if not contained:
            continue  # pydantic's own steps (union members, validators) are not keys
        child = node[part]
        scalar = not isinstance(child, (CommentedMap, CommentedSeq))
        line, col = _value_position(node, part) if scalar and not at_key else _key_position(node, part)
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
        node = child
    return line, col, name


_PLAIN_MESSAGES = {
    "model_type": "expected a mapping (`key: value` lines)",
    "dict_type": "expected a mapping (`key: value` lines)",
    "list_type": "expected a list (`[a, b]` or `- a` lines)",
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "float_parsing": "expected a number",
    "bool_parsing": "expected true or false",
}


def _issue(tree: CommentedMap, shown: str, error: Mapping[str, Any]) -> ConfigIssue:
    loc, kind = tuple(error["loc"]), error["type"]
    line, col, name = _locate(tree, loc, at_key=kind == "extra_forbidden")
    if kind == "extra_forbidden":
        message = _unknown_key(loc)
    elif kind == "missing":
        message = f"missing key `{loc[-1]}`" + (f" in {name}" if name else "")
    else:
        text = _PLAIN_MESSAGES.get(kind) or str(error["msg"]).removeprefix("Value error, ")
        if kind == "too_short" and loc and loc[-1] in ("accounts", "policies"):
            text = "needs at least one entry"
        message = f"{name}: {text}" if name else text
    return ConfigIssue(shown, line, col, message)


def _unknown_key(loc: tuple[Any, ...]) -> str:
    """Name the unknown key and, from the model it was found in, the closest known one."""
    model: Any = Config
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue
        info = model.model_fields.get(part)
        inner = getattr(info.annotation, "__args__", (info.annotation,)) if info else ()
        model = next((t for t in inner if isinstance(t, type) and issubclass(t, BaseModel)), None)
    known = [k for k in sorted(model.model_fields) if k != "source"] if model else []
    message = f"unknown key `{loc[-1]}`"
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"{message}; did you mean `{close[0]}`?"
    return f"{message} (expected one of: {', '.join(known)})" if known else message


def _repeated_accounts(config: Config, tree: CommentedMap, shown: str) -> list[ConfigIssue]:
    """An account listed twice would be guarded twice, by two policy sets: refuse it, pointing at
    the second entry."""
    issues, seen = [], set()
    for i, account in enumerate(config.accounts):
        if account.all:
            continue  # _login_issues: one `all` entry per login
        keys = [("id", account.id)] if account.id is not None else []
        keys += [("name", account.name)] if account.name else []
        for what, value in keys or [("", None)]:
            if (what, value) in seen:
                line, col, _ = _locate(tree, ("accounts", i, what) if what else ("accounts", i), at_key=False)
                message = (
                    f"account {what} {value} is listed twice"
                    if what
                    else "only one account may leave out both `name` and `id`"
                )
                issues.append(ConfigIssue(shown, line, col, message))
            seen.add((what, value))
    return issues


def _login_issues(config: Config, tree: CommentedMap, shown: str) -> list[ConfigIssue]:
    """``logins:`` and the accounts' ``login:`` and ``all:``, located: a login named twice, an
    account naming a login that is not listed (or any, with no ``logins:``), an account that
    must say which of several logins serves it, two ``all`` entries for one login, ``all`` on
    the simulated broker (which has no login to list accounts from)."""
    issues: list[ConfigIssue] = []

    def issue(loc: tuple[Any, ...], message: str) -> None:
        line, col, _ = _locate(tree, loc, at_key=False)
        issues.append(ConfigIssue(shown, line, col, message))

    names = [login.name for login in config.logins]
    for i, name in enumerate(names):
        if name in names[:i]:
            issue(("logins", i, "name"), f"login `{name}` is listed twice")
    every: set[str | None] = set()
    for i, account in enumerate(config.accounts):
        if account.login is not None and not names:
            issue(("accounts", i, "login"), f"login `{account.login}` is not defined: there is no `logins:` list")
        elif account.login is not None and account.login not in names:
            issue(
                ("accounts", i, "login"),
                f"no login `{account.login}` in `logins:` (known: {', '.join(dict.fromkeys(names))})",
            )
        elif account.login is None and len(names) > 1:
            issue(("accounts", i), f"name the account's `login:` (one of: {', '.join(dict.fromkeys(names))})")
        if account.all:
            login = config.login_of(account)
            if login in every:
                issue(("accounts", i, "all"), f"`all: true` is given twice for {account.label}")
            every.add(login)
            if config.broker.kind == "sim":
                issue(
                    ("accounts", i, "all"), "`all: true` needs a live broker (projectx, dry-run) to list the accounts"
                )
    return issues


def _missing_files(config: Config, tree: CommentedMap, shown: str) -> list[ConfigIssue]:
    issues = []
    for i, account in enumerate(config.accounts):
        for j, policy in enumerate(account.policies):
            if not policy.exists():
                line, col, _ = _locate(tree, ("accounts", i, "policies", j), at_key=False)
                issues.append(ConfigIssue(shown, line, col, f"no such policy file or directory: {policy}"))
    recording = config.broker.recording
    if recording is not None and not recording.is_file():
        line, col, _ = _locate(tree, ("broker", "recording"), at_key=False)
        issues.append(ConfigIssue(shown, line, col, f"no such recording: {recording}"))
    return issues


def _group_issues(config: Config, tree: CommentedMap, shown: str) -> list[ConfigIssue]:
    """Each group named once; each of its accounts an entry under `accounts:` (by name or id),
    listed once in it; its policy files there."""
    issues, names = [], set()

    def at(*loc: Any) -> tuple[int, int]:
        line, col, _ = _locate(tree, ("groups", *loc), at_key=False)
        return line, col

    for i, group in enumerate(config.groups):
        if group.name in names:
            issues.append(ConfigIssue(shown, *at(i, "name"), f"group {group.name} is listed twice"))
        names.add(group.name)
        seen: set[int] = set()
        for j, key in enumerate(group.accounts):
            account = config.account(key)
            if account is None:
                known = [str(a.name or a.id) for a in config.accounts if a.name or a.id is not None]
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"; did you mean `{close[0]}`?" if close else f" (accounts: {', '.join(known) or 'none named'})"
                message = f"group {group.name}: no account `{key}` under `accounts:`{hint}"
                issues.append(ConfigIssue(shown, *at(i, "accounts", j), message))
            elif id(account) in seen:
                issues.append(ConfigIssue(shown, *at(i, "accounts", j), f"group {group.name} lists `{key}` twice"))
            else:
                seen.add(id(account))
        for j, policy in enumerate(group.policies):
            if not policy.exists():
                issues.append(ConfigIssue(shown, *at(i, "policies", j), f"no such policy file or directory: {policy}"))
    return issues


def policy_files(account: AccountConfig | GroupConfig) -> list[Path]:
    """The account's policy files, directories searched recursively for ``*.risk``, in order."""
    found: list[Path] = []
    for path in account.policies:
        found.extend(sorted(p for p in path.rglob("*.risk") if p.is_file()) if path.is_dir() else [path])
    return list(dict.fromkeys(found))
