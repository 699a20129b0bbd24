"""Account groups (PRODUCT.md §9): policies that guard several accounts together.

A trader who copies trades across five accounts blows them together; a group policy (`scope
group` in its header, listed under `groups:` in riskc.yaml) sees the accounts summed
(`group.realized_pnl`, `group.net_pnl`, `group.open_contracts`) and each of them
(`group.accounts`, each `a` with the account's fields and its day's P&L), and what it decides
acts on every account of the group: `flatten` closes each account's positions and cancels its
orders, a lockout is stored for each account (so each one goes `halted`, with a reason naming the
group), `cancel_orders` and `block` apply to each. `alert` is sent once for the group.

``GroupGuard`` holds no book of its own: it reads the member engines, which whoever drives them
(`riskc replay`, the daemon's account loops) keeps applying their own events to. After a member
applied an event (or the clock ticked), the driver calls ``evaluate`` and hands each member's
``Effects`` to that member's executor: the calls carry the member's own idempotency keys
(``<account>:<target>``), so the exactly-once protocol is the account's, unchanged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from riskc.dsl.decision import Action, plan
from riskc.dsl.runtime import Reason
from riskc.engine.core.calendar import TradingCalendar
from riskc.engine.core.events import AccountUpdate, Fill, OrderUpdate, PositionUpdate, Quote
from riskc.engine.core.instruments import symbol_of
from riskc.engine.core.snapshot import WEEKDAYS, ZERO, Event, Group, GroupAccount, GroupSnapshot, Session
from riskc.engine.enforce.enforcer import Effects

if TYPE_CHECKING:
    from riskc.engine.runner import Engine, PolicySet


class GroupGuard:
    """One group: its policies over its member engines (in the order `groups:` lists them)."""

    def __init__(self, name: str, policies: PolicySet, members: Sequence[Engine]) -> None:
        self.name = name
        self.policies = policies
        self.members = list(members)
        self.paths: list = []  # the group's `policies:` entries in riskc.yaml, for hot reload
        self.commitment: Any = None  # `edits: next_trading_day` (daemon/commitment.py), set by the daemon
        zone, starts = policies.clock
        self.calendar = TradingCalendar(zone, starts)
        self.zone = ZoneInfo(zone)
        self._firing: set[tuple[str, str | None]] = set()
        self._steady: tuple | None = None
        self._session: tuple[int, Session, dt.datetime, dt.datetime] | None = None
        self.evaluations = 0

    def swap(self, policies: PolicySet) -> None:
        """New group policies between two evaluations (hot reload). The group has no book, so
        its clock may change with them."""
        self.policies = policies
        zone, starts = policies.clock
        self.calendar = TradingCalendar(zone, starts)
        self.zone = ZoneInfo(zone)
        self._session = self._steady = None

    def holds(self, engine: Engine) -> bool:
        return any(member is engine for member in self.members)

    def replace(self, old: Engine, new: Engine) -> None:
        """A member's engine was rebuilt (a desk worker took the account over)."""
        self.members = [new if member is old else member for member in self.members]

    # -- one evaluation ------------------------------------------------------------------------

    def evaluate(self, event: Event) -> list[tuple[Engine, Effects]]:
        """The group policies on the members as they are now; each member's effects (only the
        members something happened to). ``event`` is what one member just saw, or the clock."""
        now = max((m.book.now for m in self.members if m.book.day is not None), default=None)
        if now is None:
            return []  # no member has seen anything yet
        self.evaluations += 1
        snapshot = self.snapshot(event, now)
        decisions = [program.evaluate(snapshot) for program in self.policies.programs]
        if not any(d.hits for d in decisions):
            self._firing, self._steady = set(), None
            return []
        steady = self._steady_key(decisions)
        if steady is not None and steady == self._steady:
            return []  # the same breach on the same books: its effects are all there already
        actions: list[Action] = []
        firings: set[tuple[str, str | None]] = set()
        for decision in decisions:
            actions += decision.actions
            firings.update((f.rule, f.target) for f in (*decision.fired, *decision.errors))
        rising = {rule for rule, _ in firings - self._firing}
        self._firing = firings
        planned = list(plan(actions))
        acting = [self._named(a) for a in planned if a.kind != "alert"]
        alerts = [self._named(a) for a in planned if a.kind == "alert" and a.rule in rising]
        results = []
        for index, member in enumerate(self.members):
            effects = member.enforce_for_group(acting, event, self.name, self.policies.digest) if acting else Effects()
            for alert in alerts:
                record = alert.to_record(member.book.now)
                effects.records.append(record)
                if index == 0:  # one message for the group, not one per account
                    effects.alerts.append(record | {"severity": alert.severity})
            if effects:
                results.append((member, effects))
        self._steady = None if results else self._steady_key(decisions)
        return results

    def _named(self, action: Action) -> Action:
        """The group's action as each member records it: the rule as `<group>.<rule>` (a lockout
        is stored under it, and the account's trading state names it), the reason naming the group."""
        prefix = f"group {self.name}: "
        return action._replace(rule=f"{self.name}.{action.rule}", why=Reason(lambda why: prefix + str(why), action.why))

    def _steady_key(self, decisions) -> tuple | None:
        try:
            values = tuple(d.values() for d in decisions)
        except Exception:
            return None
        if any(index < 0 for d in decisions for index, _ in d.hits):
            return None
        members = tuple(
            (m.book.version, m.enforcer.version, m.trading.version, m.enforcer.retrying(m.book.now))
            for m in self.members
        )
        return values, members, self.policies.digest

    # -- the snapshot --------------------------------------------------------------------------

    def group(self) -> Group:
        """`group` as the group's policies see it now: its members summed, exactly, and each one."""
        accounts = tuple(member_view(m) for m in self.members)
        return Group(
            self.name,
            sum((a.realized_pnl for a in accounts), ZERO),
            sum((a.unrealized_pnl for a in accounts), ZERO),
            sum((a.net_pnl for a in accounts), ZERO),
            sum(a.open_contracts for a in accounts),
            sum(a.trades for a in accounts),
            accounts,
        )

    def snapshot(self, event: Event, now: dt.datetime) -> GroupSnapshot:
        group = self.group()
        session, following, week = self._clock(now)
        if event.time is None:
            event = Event(kind=event.kind, time=now)
        return GroupSnapshot(group, session, following, week, event, self.calendar)

    def _clock(self, now: dt.datetime) -> tuple[Session, dt.datetime, dt.datetime]:
        second = int(now.timestamp())
        cached = self._session
        if cached is not None and cached[0] == second:
            return cached[1], cached[2], cached[3]
        local = now.astimezone(self.zone)
        calendar = self.calendar
        session = Session(
            now,
            local.time().replace(second=0, microsecond=0),
            WEEKDAYS[local.weekday()],
            calendar.trading_day(now),
            calendar.is_session_open(now),
        )
        following, week = calendar.next_trading_day_start(now), calendar.next_trading_week_start(now)
        self._session = (second, session, following, week)
        return session, following, week


def member_view(engine: Engine) -> GroupAccount:
    """One account as a group policy sees it (`a` in `group.accounts`), read from its engine."""
    book = engine.book
    account = book.account
    realized = unrealized = Decimal(0)
    gross = net = trades = 0
    if book.day is not None:
        for p in book.position_views():
            unrealized += p.unrealized_pnl
            gross += p.qty
            net += p.size
        realized, trades = book.day.realized, book.day.trades
    return GroupAccount(
        account.id,
        account.name,
        account.balance,
        account.can_trade,
        gross,
        net,
        account.high_water_balance,
        realized,
        unrealized,
        realized + unrealized,
        trades,
        str(engine.trading.state),
    )


def group_event(update: Any) -> Event | None:
    """The event a group policy sees for what one member applied (the kinds of `on`), with the
    fields a group rule can read; None for what is not an event (depth, market trades)."""
    kind = type(update)
    if kind is Quote:
        c = update.contract_id
        return Event.quote(update.time, symbol_of(c), c, update.last or ZERO, update.bid or ZERO, update.ask or ZERO)
    if kind is Fill:
        pnl = update.pnl
        return Event(
            "fill",
            update.time,
            symbol_of(update.contract_id),
            update.contract_id,
            update.side,
            update.size,
            update.price,
            pnl if pnl is not None else ZERO,
            update.fees,
            pnl is not None,
        )
    if kind is OrderUpdate:
        c = update.contract_id
        return Event("order", update.time, symbol_of(c), c, update.side, update.size, status=update.status)
    if kind is PositionUpdate:
        c = update.contract_id
        return Event("position", update.time, symbol_of(c), c, size=update.size)
    if kind is AccountUpdate:
        return Event("account", update.time, balance=update.balance, can_trade=update.can_trade)
    return None


def moves_group(guard: GroupGuard, update: Any) -> bool:
    """Whether a member's update can change what the group sees: anything but a quote of a
    contract no member holds (most of the feed), which moves no P&L."""
    if type(update) is not Quote:
        return True
    return any(update.contract_id in m.book.positions for m in guard.members)
