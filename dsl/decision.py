"""What one evaluation decided: the actions (PRODUCT.md §3.4) and why (§3.5).

``plan`` deduplicates and escalates the actions of one evaluation: `flatten` subsumes `close`,
`reduce` and `cancel`; `close p` subsumes `reduce p`; the most restrictive `reduce` and the
longest lockout or block win; a stop only ever moves to the tighter of two prices, and of two
targets for one position the nearer one (the sooner exit) wins.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from operator import itemgetter
from typing import NamedTuple

from riskc.dsl.runtime import Reason

SEVERITY_RANK = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
KIND_ORDER = (
    "flatten",
    "close",
    "reduce",
    "reduce_total",
    "cancel_orders",
    "cancel",
    "lockout",
    "block",
    "move_stop",
    "place_stop",
    "place_target",
    "alert",
)


class Action(NamedTuple):
    """One action a rule asks for. A named tuple rather than a frozen dataclass: immutable all
    the same, and built in a quarter of the time (0.4 µs, not 2), which counts while a breach
    keeps firing on every event (the engine compares the actions to know nothing changed)."""

    kind: str
    rule: str
    severity: str
    why: str | Reason  # the reason: its text is made when ``reason`` is first read (see runtime.Reason)
    symbol: str | None = None
    contract_id: str | None = None
    order_id: int | None = None
    to: int | None = None
    until: dt.datetime | None = None
    condition: str | None = None  # "manual" or "while" for lockouts without an end time
    price: Decimal | None = None
    side: str | None = None  # long/short, for stop actions: which way is "tighter"
    message: str | None = None

    @property
    def reason(self) -> str:
        """Why the rule asked for it (PRODUCT.md §3.5), as text."""
        why = self.why
        return why if type(why) is str else str(why)

    def to_record(self, ts: dt.datetime | None) -> dict[str, object]:
        """The action record of PRODUCT.md §6.2 (`replay --json`, the audit log)."""
        record: dict[str, object] = {"ts": ts.isoformat() if ts else None, "rule": self.rule, "action": self.kind}
        if self.symbol is not None:
            record["symbol"] = self.symbol
        if self.contract_id is not None:
            record["contract_id"] = self.contract_id
        if self.order_id is not None:
            record["order_id"] = self.order_id
        if self.to is not None:
            record["to"] = self.to
        if self.until is not None:
            record["until"] = self.until.astimezone(dt.UTC).isoformat()
        if self.condition is not None:
            record["condition"] = self.condition
        if self.price is not None:
            record["price"] = str(self.price)
        if self.message is not None:
            record["message"] = self.message
        record["reason"] = self.reason
        return record


class Firing(NamedTuple):
    """One rule whose condition held, with the values that made it hold. (A named tuple: built
    for every rule that fires, each time a decision is explained.)"""

    rule: str
    severity: str
    why: str | Reason  # the reason: made text when ``reason`` is first read
    target: str | None = None  # contract or order the rule fired for

    @property
    def reason(self) -> str:
        why = self.why
        return why if type(why) is str else str(why)


Built = tuple[tuple[Action, ...], tuple[Firing, ...], tuple[Firing, ...]]


class Decision:
    """What a policy decided on one snapshot. ``hits`` — ``(rule index, target)`` for each rule
    that held, a negative index (with the error as target) for one that raised — is known at
    once; the planned ``actions``, the ``fired`` rules and the ``errors``, with their reasons,
    are built the first time one of them is read, and ``values()`` gives the actions unplanned
    and unexplained. A caller that already knows the outcome (the engine, while a breach keeps
    firing) pays for no explanation."""

    __slots__ = ("hits", "_build", "_values", "_built")

    def __init__(
        self,
        hits: list[tuple[int, object]] | tuple = (),
        build: Callable[[], Built] | None = None,
        values: Callable[[], tuple[Action, ...]] | None = None,
    ) -> None:
        self.hits = hits
        self._build, self._values = build, values
        self._built: Built | None = None

    @classmethod
    def of(cls, actions: tuple[Action, ...], fired: tuple[Firing, ...], errors: tuple[Firing, ...] = ()) -> Decision:
        """A decision already made."""
        decision = cls()
        decision._built = (tuple(actions), tuple(fired), tuple(errors))
        return decision

    def _made(self) -> Built:
        if self._built is None:
            self._built = self._build() if self._build is not None else ((), (), ())
        return self._built

    @property
    def actions(self) -> tuple[Action, ...]:
        return self._made()[0]

    @property
    def fired(self) -> tuple[Firing, ...]:
        return self._made()[1]

    @property
    def errors(self) -> tuple[Firing, ...]:
        """Rules that could not be evaluated, with the error (and where it was raised)."""
        return self._made()[2]

    def values(self) -> tuple[Action, ...]:
        """The actions of the rules that held, unplanned and without reasons: for comparing."""
        return self._values() if self._values is not None else self.actions

    @property
    def empty(self) -> bool:
        return not self.actions and not self.fired

    def records(self, ts: dt.datetime | None) -> list[dict[str, object]]:
        return [a.to_record(ts) for a in self.actions]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Decision) and self._made() == other._made()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        actions, fired, errors = self._made()
        return f"Decision(actions={actions!r}, fired={fired!r}, errors={errors!r})"


def plan(actions: list[Action]) -> tuple[Action, ...]:
    """Deduplicate and escalate the actions of one evaluation (see module docstring). Which of
    them are kept, and in which order, depends on their values alone (not on the reasons) and
    on their order: it is remembered for the same values, which a breach repeats."""
    return plan_keyed(actions, tuple([a[:3] + a[4:] for a in actions]), _PLANS)  # every value but the reason


_PLANS: dict[tuple, Callable[[list], tuple]] = {}  # the actions' values (no reasons) -> what plan keeps


def plan_keyed(actions: list[Action], key: tuple, memo: dict[tuple, Callable[[list], tuple]]) -> tuple[Action, ...]:
    """``plan`` remembered in ``memo`` by ``key``, which the caller makes and which must tell
    apart any two lists of actions whose values (all but the reasons) differ (a compiled
    program's: the rules that held and what is not a literal in their actions). What is
    remembered picks the planned actions out of the list by their places."""
    try:
        pick = memo.get(key)
    except TypeError:  # a value that cannot be hashed (a signaling NaN): planned, not remembered
        return _plan(actions)
    if pick is None:
        position = {id(a): n for n, a in enumerate(actions)}
        pick = _picker(tuple([position[id(a)] for a in _plan(actions)]))
        if len(memo) >= 1024:
            memo.clear()
        memo[key] = pick
    return pick(actions)


def _picker(places: tuple[int, ...]) -> Callable[[list], tuple]:
    """A function of a list that gives the tuple of its items at ``places`` (itemgetter, in C)."""
    if len(places) >= 2:
        return itemgetter(*places)
    if places:
        return lambda items, place=places[0]: (items[place],)
    return lambda items: ()


def _plan(actions: list[Action]) -> tuple[Action, ...]:
    flatten = _strongest([a for a in actions if a.kind == "flatten"])
    kept: list[Action] = [flatten] if flatten else []
    if flatten is None:
        kept += _positions(actions)
        kept += _cancels(actions)
    kept += _lockouts([a for a in actions if a.kind == "lockout"])
    kept += _longest_per_symbol([a for a in actions if a.kind == "block"])
    kept += _stops([a for a in actions if a.kind in ("move_stop", "place_stop", "place_target")], flatten, actions)
    kept += _unique([a for a in actions if a.kind == "alert"])
    return tuple(sorted(kept, key=lambda a: (KIND_ORDER.index(a.kind), a.symbol or "", a.contract_id or "", a.rule)))


def _strongest(candidates: list[Action]) -> Action | None:
    if not candidates:
        return None
    return max(candidates, key=lambda a: SEVERITY_RANK.get(a.severity, 0))


def _positions(actions: list[Action]) -> list[Action]:
    closed = {a.contract_id: a for a in actions if a.kind == "close"}
    kept = list(_unique(list(closed.values())))
    reductions: dict[str, Action] = {}
    for a in actions:
        if a.kind == "reduce" and a.contract_id not in closed:
            best = reductions.get(a.contract_id)
            if best is None or a.to < best.to:
                reductions[a.contract_id] = a
    kept += reductions.values()
    # The smallest total of each count; a gross cut to N leaves the net within N as well.
    gross = [a for a in actions if a.kind == "reduce_total" and a.condition != "net"]
    net = [a for a in actions if a.kind == "reduce_total" and a.condition == "net"]
    best_gross = min(gross, key=lambda a: a.to) if gross else None
    best_net = min(net, key=lambda a: a.to) if net else None
    if best_gross is not None:
        kept.append(best_gross)
    if best_net is not None and (best_gross is None or best_net.to < best_gross.to):
        kept.append(best_net)
    return kept


def _cancels(actions: list[Action]) -> list[Action]:
    everything = [a for a in actions if a.kind == "cancel_orders" and a.symbol is None]
    if everything:
        return [_strongest(everything)]
    per_symbol = {a.symbol: a for a in actions if a.kind == "cancel_orders"}
    singles = {a.order_id: a for a in actions if a.kind == "cancel"}
    return list(per_symbol.values()) + list(singles.values())


def _lockouts(lockouts: list[Action]) -> list[Action]:
    """One account lockout: manual beats any end time, else the latest end wins. A `while`
    lockout is kept beside it: it ends on a condition, not at a time."""
    manual = [a for a in lockouts if a.condition == "manual"]
    timed = [a for a in lockouts if a.until is not None]
    kept = [_strongest(manual)] if manual else ([max(timed, key=lambda a: a.until)] if timed else [])
    kept += _unique([a for a in lockouts if a.condition == "while"])[:1] if not manual else []
    return kept


def _longest_per_symbol(blocks: list[Action]) -> list[Action]:
    best: dict[str, Action] = {}
    for a in blocks:
        current = best.get(a.symbol)
        if current is None or _later(a.until, current.until):
            best[a.symbol] = a
    return list(best.values())


def _later(a: dt.datetime | None, b: dt.datetime | None) -> bool:
    if a is None:  # no end: until the next trading day or manual; the engine fills it in
        return b is not None
    return b is not None and a > b


def _stops(stops: list[Action], flatten: Action | None, actions: list[Action]) -> list[Action]:
    closed = {a.contract_id for a in actions if a.kind == "close"}
    best: dict[tuple[str, str | None], Action] = {}
    for a in stops:
        if flatten is not None or a.contract_id in closed:
            continue
        key = (a.kind, a.contract_id)
        current = best.get(key)
        if current is None or _tighter(a, current):
            best[key] = a
    return list(best.values())


def _tighter(a: Action, b: Action) -> bool:
    """A stop nearer the market (higher under a long); a target nearer too (lower over a long)."""
    if a.price is None or b.price is None:
        return False
    higher = a.price > b.price if a.side == "long" else a.price < b.price
    return not higher if a.kind == "place_target" else higher


def _unique(actions: list[Action]) -> list[Action]:
    seen: dict[tuple, Action] = {}
    for a in actions:
        key = a._replace(rule="", severity="", why="")
        seen.setdefault(key, a)
    return list(seen.values())
