"""Which fields of the snapshot move with time inside one second (``engine/core/snapshot.py``).

The engine skips evaluating a quote inside the second of an evaluation that did nothing
(``Engine._settle``) on the premise that, besides the prices, only these move with time inside a
second: a position's `uncovered_for` and `age`, an order's `age` (``dsl.compiler.TIME_FIELDS``,
whose thresholds tell it when one can matter) and `day.fills_within` (never skipped while there
are fills). The session and the trading days are per second. This test takes two snapshots of
one book 0.4 s apart in the same second and lists every schema field and duration method whose
value differs: a new time-varying field fails it until ``_settle`` knows it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from test_book import ES, MNQ, apply, f, new_book, snap

from riskc.dsl import types as T
from riskc.dsl.compiler import TIME_FIELDS

HANDLED = {*TIME_FIELDS, "fills_within"}  # what Engine._settle accounts for


def _values(obj, path: str, out: dict) -> None:
    """Every field (recursively) and every method of durations of ``obj``, by path."""
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if field.name in ("instruments", "calendar"):
            continue
        if dataclasses.is_dataclass(value):
            _values(value, f"{path}.{field.name}", out)
        elif isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            for n, item in enumerate(value):
                _values(item, f"{path}.{field.name}[{n}]", out)
        else:
            out[f"{path}.{field.name}"] = value
    for name, signature in getattr(type(obj), "METHODS", {}).items():
        if all(p.type == T.DURATION for p in signature.params):
            windows = [dt.timedelta(milliseconds=ms) for ms in range(0, 120_000, 100)]
            out[f"{path}.{name}()"] = tuple(getattr(obj, name)(w) for w in windows)


def _moving() -> set[str]:
    book = new_book()
    apply(book, f.account(0, 50_000))
    apply(book, f.trade(2, 1, ES, pnl=-20, filled=2))
    apply(book, f.position(3, ES, 1, 21000))  # uncovered: no stop
    apply(book, f.position(3, MNQ, 2, 21000))
    apply(book, f.order(4, 7, MNQ, stop=20900))  # a working stop
    apply(book, f.quote(5, ES, 21001))
    first: dict = {}
    _values(snap(book, f.at(10.3)), "s", first)
    second: dict = {}
    _values(snap(book, f.at(10.7)), "s", second)
    assert first.keys() == second.keys()
    # The event is each evaluation's own: _settle never skips while a rule that runs on a quote reads it.
    return {path for path in first if first[path] != second[path] and not path.startswith("s.event.")}


def test_only_the_known_fields_move_with_time_inside_a_second():
    moving = _moving()
    names = {path.rsplit(".", 1)[-1].removesuffix("()") for path in moving}
    names.discard("now")  # day.now: what fills_within counts back from (not a field rules read)
    assert names <= HANDLED, f"new time-varying snapshot fields {names - HANDLED}: teach Engine._settle about them"


def test_the_listing_sees_every_known_one():
    """Control: each field the engine accounts for does move here (else the test above proves nothing)."""
    names = {path.rsplit(".", 1)[-1].removesuffix("()") for path in _moving()}
    assert names >= HANDLED, HANDLED - names


def test_only_the_known_fields_move_with_a_price():
    """The same for a price: the fields that change when a quote moves the mark of a position
    are in ``dsl.compiler.PRICE_FIELDS`` (what ``Program.pnl_atoms`` looks for), and `day.unrealized_pnl`
    and `day.net_pnl` (``OPEN_PNL_FIELDS``) move one for one with the account's open P&L (the
    sum of the positions'), as the engine's open P&L band assumes."""
    from riskc.dsl.compiler import OPEN_PNL_FIELDS, PRICE_FIELDS
    from riskc.engine.enforce.stale_prices import PRICE_FIELDS as STALE

    book = new_book()
    apply(book, f.account(0, 50_000))
    apply(book, f.position(3, ES, 1, 21000))
    apply(book, f.position(3, MNQ, -2, 21000))
    apply(book, f.order(4, 7, MNQ, side=0, stop=21100))
    apply(book, f.quote(5, ES, 21001))
    first: dict = {}
    _values(snap(book, f.at(10.3)), "s", first)
    apply(book, f.quote(10.5, ES, 21000.25))
    apply(book, f.quote(10.5, MNQ, 21003))
    second: dict = {}
    _values(snap(book, f.at(10.7)), "s", second)
    moved = {path for path in first if first[path] != second[path] and not path.startswith("s.event.")}
    names = {path.rsplit(".", 1)[-1] for path in moved} - HANDLED - {"now"}
    assert names <= PRICE_FIELDS, names - PRICE_FIELDS
    assert {"mark", "unrealized_pnl", "net_pnl"} <= names  # control: the quotes did move them
    assert STALE <= PRICE_FIELDS
    change = sum(second[f"s.positions[{n}].unrealized_pnl"] - first[f"s.positions[{n}].unrealized_pnl"] for n in (0, 1))
    for name in OPEN_PNL_FIELDS:
        assert second[f"s.day.{name}"] - first[f"s.day.{name}"] == change


def test_every_session_field_is_known_to_the_tick_skip():
    """After a quiet evaluation the engine skips ticks until what the conditions read of the
    session can change (``Engine._session_deadline``): each field of the session is either
    followed there (its minute, the exchange's next open or close, the day) or makes it
    evaluate every second. A new one fails here until it is classified."""
    from riskc.engine.core.snapshot import Session
    from riskc.engine.runner import _PER_SECOND, _SLOW_SESSION, SESSION_FIELDS

    assert {f.name for f in dataclasses.fields(Session)} == SESSION_FIELDS
    assert SESSION_FIELDS <= _PER_SECOND | _SLOW_SESSION
    assert {"next_trading_day", "next_trading_week"} <= _PER_SECOND  # the snapshot's time-based roots
