"""Event sequences of policy tests: timed Gateway messages run through the engine's book, its
1-second clock and the simulated broker — exactly what `riskc replay` does with a recording.

An event is either written the friendly way, one kind per event with snake_case fields:

```yaml
- {at: 2026-03-10T15:00:00Z, account: {balance: 50000}}
- {at: +1s, position: {contract_id: CON.F.US.MNQ.Z25, size: 2, avg_price: 21000}}
- {at: +1s, order: {id: 7, contract_id: CON.F.US.MNQ.Z25, type: stop, side: sell, size: 2, stop_price: 20990}}
- {at: +1s, trade: {contract_id: CON.F.US.MNQ.Z25, side: sell, size: 1, price: 20995, pnl: -10, fees: 0.37}}
- {at: +1s, quote: {contract_id: CON.F.US.MNQ.Z25, last: 20996}}
```

or as a recording line (PRODUCT.md §6.1) pasted in: `{ts, target, args}` (`hub` optional).
`at` is an instant or `+DURATION` after the previous event. Each becomes the ``Message`` the
Gateway would have sent (numbers as exact decimals, as ``engine.intake`` reads a recording), so
the book cannot tell a fixture from a recording.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import tempfile
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from riskc.engine.adapters.projectx.intake import HUB_OF, Message, parse_time
from riskc.engine.core.snapshot import ORDER_SIDES, ORDER_STATUSES, ORDER_TYPES
from riskc.engine.sim import gateway
from riskc.engine.testing.snapshot_file import line_of, parse_duration

KINDS = ("account", "position", "order", "trade", "quote")
_TARGETS = {
    "account": gateway.ACCOUNT,
    "position": gateway.POSITION,
    "order": gateway.ORDER,
    "trade": gateway.TRADE,
    "quote": gateway.QUOTE,
}


class EventError(ValueError):
    """A mistake in one event, with the line it is on."""

    def __init__(self, message: str, line: int | None):
        super().__init__(message)
        self.line = line


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountEvent(_Model):
    id: int | None = None
    name: str = ""
    balance: Decimal
    can_trade: bool = True


class PositionEvent(_Model):
    contract_id: str
    size: int  # signed: positive long, negative short, 0 flat
    avg_price: Decimal = Decimal("0")
    opened_at: dt.datetime | None = None


class OrderEvent(_Model):
    id: int
    contract_id: str
    type: Literal[ORDER_TYPES] = "limit"  # type: ignore[valid-type]
    side: Literal[ORDER_SIDES] = "buy"  # type: ignore[valid-type]
    size: int = 1
    price: Decimal | None = None
    stop_price: Decimal | None = None
    status: Literal[ORDER_STATUSES] = "open"  # type: ignore[valid-type]


class TradeEvent(_Model):
    id: int | None = None  # numbered from 1 in the case when left out
    contract_id: str
    side: Literal[ORDER_SIDES]  # type: ignore[valid-type]
    size: int
    price: Decimal
    pnl: Decimal | None = None  # none for the opening half of a round trip
    fees: Decimal = Decimal("0")
    voided: bool = False
    order_id: int | None = None


class QuoteEvent(_Model):
    contract_id: str
    last: Decimal | None = None
    bid: Decimal | None = None
    ask: Decimal | None = None


_MODELS = {
    "account": AccountEvent,
    "position": PositionEvent,
    "order": OrderEvent,
    "trade": TradeEvent,
    "quote": QuoteEvent,
}


def read_events(items: list, start: dt.datetime | None = None) -> list[Message]:
    """The messages of an `events:` list, in order; raises EventError naming the line."""
    messages: list[Message] = []
    previous, trade_ids = start, iter(range(1, 1_000_000))
    for index, node in enumerate(items):
        line = line_of(items, (index,))
        if not isinstance(node, Mapping):
            raise EventError(f"events.{index}: an event is a mapping such as {{at: ..., quote: {{...}}}}", line)
        message = _message(_raw(node, index, previous, trade_ids, line), index, line)
        if previous is not None and message.ts < previous:
            raise EventError(
                f"events.{index}: goes back in time ({message.ts.isoformat()} is before the previous event)", line
            )
        previous = message.ts
        messages.append(message)
    return messages


def resolve_time(value: Any, previous: dt.datetime | None, what: str) -> dt.datetime:
    """An instant, or `+DURATION` after ``previous``."""
    if isinstance(value, str) and value.startswith("+"):
        if previous is None:
            raise ValueError(f"`{what}: {value}` is relative, but there is no earlier time to add it to")
        return previous + parse_duration(value[1:])
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        raise ValueError(f"`{what}` needs a timezone, e.g. 2026-03-10T15:00:00Z")
    return moment.astimezone(dt.UTC)


def _raw(node: Mapping, index: int, previous, trade_ids, line) -> dict[str, Any]:
    if "target" in node:
        unknown = set(node) - {"ts", "hub", "target", "args"}
        if unknown:
            raise EventError(f"events.{index}: unknown key `{sorted(unknown)[0]}` in a recording line", line)
        return {**node, "ts": _when(node, "ts", previous, index, line).isoformat()}
    kinds = [k for k in node if k in KINDS]
    unknown = [k for k in node if k not in KINDS and k != "at"]
    if unknown or len(kinds) != 1:
        what = f"unknown key `{unknown[0]}`" if unknown else "give exactly one of " + ", ".join(KINDS)
        raise EventError(f"events.{index}: {what} (an event is `at` and one of {', '.join(KINDS)})", line)
    kind = kinds[0]
    when = _when(node, "at", previous, index, line)
    try:
        fields = _MODELS[kind].model_validate(node[kind])
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
        raise EventError(
            f"events.{index}.{kind}.{where}: {message}", line_of(node[kind], tuple(first["loc"])) or line
        ) from None
    return {"ts": when.isoformat(), "target": _TARGETS[kind], "args": _ARGS[kind](fields, when, trade_ids)}


def _when(node: Mapping, key: str, previous, index: int, line) -> dt.datetime:
    if key not in node:
        raise EventError(
            f"events.{index}: `{key}` is missing (an instant, or +DURATION after the previous event)", line
        )
    try:
        return resolve_time(node[key], previous, key)
    except ValueError as error:
        raise EventError(f"events.{index}: {error}", line_of(node, (key,)) or line) from None


def _account(e: AccountEvent, when, ids) -> list:
    data = gateway.account_data(e.id if e.id is not None else 0, e.name, e.balance, e.can_trade)
    return [{"action": 1, "data": data}]


def _position(e: PositionEvent, when, ids) -> list:
    return [{"action": 1, "data": gateway.position_data(e.contract_id, e.size, e.avg_price, e.opened_at or when)}]


def _order(e: OrderEvent, when, ids) -> list:
    data = gateway.order_data(
        e.id,
        e.contract_id,
        status=e.status,
        type=e.type,
        side=e.side,
        size=e.size,
        price=e.price,
        stop_price=e.stop_price,
        created=when,
        updated=when,
    )
    return [{"action": 1, "data": data}]


def _trade(e: TradeEvent, when, ids) -> list:
    data = gateway.trade_data(
        e.id if e.id is not None else next(ids),
        e.contract_id,
        side=e.side,
        size=e.size,
        price=e.price,
        pnl=e.pnl,
        fees=e.fees,
        voided=e.voided,
        order_id=e.order_id,
        at=when,
    )
    return [{"action": 1, "data": data}]


def _quote(e: QuoteEvent, when, ids) -> list:
    return gateway.quote_args(e.contract_id, e.last, e.bid, e.ask, when)


_ARGS: dict[str, Callable] = {
    "account": _account,
    "position": _position,
    "order": _order,
    "trade": _trade,
    "quote": _quote,
}


def _plain(value: Any) -> Any:
    """YAML values as the Gateway's JSON decodes them here: numbers with a fraction as exact
    decimals, instants as ISO text."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def _message(raw: dict[str, Any], index: int, line: int | None) -> Message:
    target = raw["target"]
    hub = HUB_OF.get(target)
    if hub is None:
        raise EventError(f"events.{index}: unknown target {target!r}; targets are {', '.join(sorted(HUB_OF))}", line)
    if raw.get("hub", hub) != hub:
        raise EventError(f"events.{index}: target {target} belongs to the {hub} hub, not {raw['hub']!r}", line)
    args = raw.get("args")
    if not isinstance(args, list) or not args:
        raise EventError(f"events.{index}: `args` must be a non-empty list (what the hub sent)", line)
    return Message(parse_time(raw["ts"]), hub, target, _plain(args), line or 0)


def run_events(
    program, policy_path: str, source: str, messages: list[Message], until: dt.datetime | None
) -> list[dict[str, Any]]:
    """Every action record the engine emits over ``messages`` (and clock ticks up to ``until``)."""
    from riskc.engine.runner import PolicySet
    from riskc.engine.sim.replay import Replay
    from riskc.engine.store import Store

    policies = PolicySet((program,), ((policy_path, hashlib.sha256(source.encode()).hexdigest()),))
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="riskc-test-") as scratch:
        store = Store.open(Path(scratch) / "state.db", synchronous="OFF")
        try:
            replay = Replay(policies, store, emit=records.append)
            for message in messages:
                replay.feed(message)
            if until is not None and messages:
                replay.tick_until(until)  # the replay's own clock, past the last message
        finally:
            store.close()
    return records
