"""The engine skips an evaluation whose enforcement is known to do nothing: the same rules fired
for the same targets with the same actions, on a book, an enforcer and lockouts that have not
changed since an evaluation that did nothing (``Engine._steady_key``). That is an optimisation
and must be invisible: every recording, under every shipped policy, gives the same action
records, broker calls and stored actions with the skip as without it.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from riskc.engine.adapters.projectx.intake import parse_line, read_feed
from riskc.engine.runner import Engine, PolicySet
from riskc.engine.sim.replay import Replay
from riskc.engine.store import Store

REPO = Path(__file__).resolve().parents[2]
POLICIES = sorted((REPO / "policies").glob("*.risk"))
SESSIONS = sorted((REPO / "examples" / "sessions").glob("*.jsonl"))


@pytest.fixture(scope="module")
def generated() -> list[str]:
    """The replay benchmark's recording, 100,000 lines: a trade a minute with breaches of
    stop_required, max_contracts and symbol_block, then a daily loss and a locked-out hour."""
    sys.path.insert(0, str(REPO))
    try:
        from benchmarks.bench_replay import _Generator
    finally:
        sys.path.remove(str(REPO))
    out = io.StringIO()
    _Generator(out, 100_000).write()
    return out.getvalue().splitlines()


def _run(lines: list[str], policy: Path, tmp_path: Path, name: str, *, as_replay: bool = False) -> tuple:
    """The records, calls and stored actions of a replay of ``lines``: read as messages
    (``parse_line``: every quote through ``Engine.on_event``), or, ``as_replay``, as `riskc
    replay` reads them (``read_feed``: quotes and trade prints as their events, through
    ``Engine.on_quote`` and the replay loop's own path)."""
    policies, diagnostics, _ = PolicySet.from_paths([policy])
    assert policies is not None, diagnostics
    records: list[dict] = []
    with Store.open(tmp_path / f"{name}.db", synchronous="OFF") as store:
        replay = Replay(policies, store, emit=records.append)
        if as_replay:
            recording = tmp_path / f"{name}.jsonl"
            recording.write_text("\n".join(lines) + "\n", encoding="utf-8")
            replay.run(read_feed(str(recording)))
        else:
            replay.run(item for n, line in enumerate(lines, 1) if (item := parse_line(line, n)) is not None)
        calls = [c.to_record() for c in replay.sim.sent]
        actions = sorted((a.key, a.state, a.attempts) for a in store.recent_actions(limit=1_000_000))
    return records, calls, actions


def _both(lines: list[str], policy: Path, tmp_path: Path, monkeypatch) -> None:
    skipping = _run(lines, policy, tmp_path, "skipping")
    assert _run(lines, policy, tmp_path, "replay", as_replay=True) == skipping
    with monkeypatch.context() as patch:
        patch.setattr(Engine, "_steady_key", lambda self, *args: None)  # never steady: evaluate everything
        patch.setattr(Engine, "_settle", lambda self, event, quiet=None: None)  # never settled: every quote evaluated
        everything = _run(lines, policy, tmp_path, "everything")
    assert skipping[0], "the recording breaches nothing: the comparison would prove nothing"
    assert skipping == everything


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.stem)
def test_skipping_steady_evaluations_changes_nothing_on_a_long_session(generated, policy, tmp_path, monkeypatch):
    _both(generated, policy, tmp_path, monkeypatch)


@pytest.mark.parametrize("session", SESSIONS, ids=lambda p: p.stem)
def test_skipping_steady_evaluations_changes_nothing_on_the_example_sessions(session, tmp_path, monkeypatch):
    lines = session.read_text(encoding="utf-8").splitlines()
    _both(lines, REPO / "policies" / "topstep-50k.risk", tmp_path, monkeypatch)


def test_a_breach_that_keeps_firing_is_skipped_after_the_first_evaluation(generated, tmp_path, monkeypatch):
    """Control: the skip does happen (else the comparison above compares a thing with itself)."""
    keys: list = []
    original = Engine._steady_key

    def counting(self, *args):
        key = original(self, *args)
        keys.append(key is not None and key == self._steady)
        return key

    monkeypatch.setattr(Engine, "_steady_key", counting)
    monkeypatch.setattr(Engine, "_settle", lambda self, event, quiet=None: None)  # the quote fast path would skip most
    _run(generated, REPO / "policies" / "topstep-50k.risk", tmp_path, "counted")
    assert sum(keys) > 1_000


def test_most_quotes_are_not_evaluated(generated, tmp_path):
    """Control for the quote fast path: it does skip (else the comparisons above compare a
    thing with itself), and quotes are still counted as events."""
    _, evaluated = _counted(lambda: _run(generated, REPO / "policies" / "topstep-50k.risk", tmp_path, "counted"))
    quotes = sum(1 for line in generated if '"GatewayQuote"' in line)
    assert sum(kind == "quote" for kind, _ in evaluated) < quotes / 2


# -- on random feeds -----------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TIGHT = """policy "tight"
use daily_loss(limit: $40)
use max_contracts(limit: 3)
use max_contracts_per_symbol(limits: {MNQ: 2}, default: 2)
use stop_required(grace: 5s)
use position_loss(limit: $15)
use breakeven_stop(trigger: 8 ticks, offset: 1 tick)
rule heads_up
  when day.realized_pnl < -$20
  then alert "careful"
  severity low
"""


# A rule whose actions move with the clock: while it holds, every second lengthens its lockout.
TIMED = (
    TIGHT
    + """rule sliding_cooldown
  when day.realized_pnl < -$10
  then lockout for 30s
  severity low
"""
)


# Time thresholds the engine must see crossed between two ticks (``Program.time_thresholds``):
# strict and not strict, a position's and an order's age, a grace read by two rules.
AGED = (
    TIGHT
    + """rule strict_grace
  for position p
  when p.stop_coverage < p.qty and p.uncovered_for > 2s
  then alert "uncovered"
  severity low
rule old_position
  for position p
  when p.age >= 7s
  then alert "old"
  severity low
rule old_order
  for order o
  when o.age > 3s
  then cancel o
  severity low
"""
)


# The open P&L band (``Engine._pnl_band``): the only rules a quote runs that read a price read the
# account's open P&L one for one, so a quote moving a position's price inside the band is skipped.
BANDED = """policy "banded"
use daily_loss(limit: $40)
use max_contracts(limit: 3)
use stop_required(grace: 5s)
use trailing_drawdown(amount: $25, mode: end_of_day)
rule open_gain
  when day.net_pnl - day.realized_pnl >= $30 or -day.unrealized_pnl > $45
  then alert "big open P&L"
  severity low
rule equity_floor
  when account.balance + day.unrealized_pnl < $49,980
  then lockout for 30s
  severity low
"""


# Rules that read the session's clock (a minute) and whether the exchange is open: the settled
# state lasts beyond the second, and the clock's ticks are skipped, until the minute ends (10:01 CT
# is one minute after the feeds' start).
CLOCKED = (
    TIGHT
    + """use trading_hours(start: 17:00, end: 10:01)
rule late_and_open
  when session.clock >= 10:01 and session.is_open and account.open_contracts > 0
  then alert "late"
  severity low
"""
)


def _feed_run(messages, skip: bool, tick_every: int = 1, policy: str = TIGHT) -> tuple[list, list]:
    import tempfile

    from test_book import f
    from test_engine import Harness

    from riskc.engine.adapters.projectx.decode import decode
    from riskc.engine.core.events import MarketTrade, Quote

    with tempfile.TemporaryDirectory() as folder, Store.open(Path(folder) / "s.db", synchronous="OFF") as store:
        h = Harness(store, policy)
        if not skip:
            h.engine._steady_key = lambda *args: None
            h.engine._settle = lambda event, quiet=None: None
        second = -1
        for message in sorted(messages, key=lambda m: m.ts):
            moment = int((message.ts - f.start).total_seconds())
            while second < moment:  # the 1-second clock, also between messages (live, it can lag)
                second += 1
                if second % tick_every == 0:
                    h.tick(f.at(second))
            if skip:  # quotes and trade prints through the engine's quote entry, as `riskc replay` sends them
                h.port.sees(message)
                for event in decode(message):
                    quoted = type(event) is Quote or type(event) is MarketTrade
                    h._handle(h.engine.on_quote(event) if quoted else h.engine.on_event(event))
            else:
                h.feed(message)
        for extra in range(1, 8):
            h.tick(f.at(second + extra))
        return h.records, [c.to_record() for c in h.port.calls]


def _counted(run):
    """What ``run()`` returns, and the (kind, time) of every event the engine evaluated meanwhile."""
    evaluated: list[tuple] = []
    original = Engine._evaluate

    def counting(self, event):
        evaluated.append((event.kind, event.time))
        return original(self, event)

    Engine._evaluate = counting
    try:
        return run(), evaluated
    finally:
        Engine._evaluate = original


def _quote_at(contract: str, price: float, at):
    """A quote of ``contract`` received at ``at`` and stamped by the broker at the same instant."""
    import dataclasses

    from test_book import f

    quote = f.quote(0, contract, price, stamp=0)
    return dataclasses.replace(quote, ts=at, args=[quote.args[0], quote.args[1] | {"timestamp": at.isoformat()}])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.deferred(lambda: _random_message()), max_size=40))
def test_skipping_is_invisible_on_random_feeds(messages):
    """Positions, orders (stops, suspended legs, fills, cancels), fills with P&L, quotes, the
    account, in any order and duplicated, under a policy whose rules fire all the time."""
    assert _feed_run(messages, skip=True) == _feed_run(messages, skip=False)


def _random_message():
    from test_book import _messages

    return _messages()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.deferred(lambda: _random_message()), st.integers(0, 999)), max_size=30),
    st.lists(st.tuples(st.sampled_from([0, 1]), st.integers(20990, 21010), st.integers(0, 60_999)), max_size=40),
    st.sampled_from([1, 3, 1000]),
    st.sampled_from([TIGHT, TIMED, AGED, BANDED, CLOCKED]),
)
def test_quotes_skipped_inside_a_second_change_nothing(messages, quotes, tick_every, policy):
    """The quote fast path (``Engine._on_quote``): quotes between the ticks, many in one second,
    on contracts with and without a position, among the other messages at any millisecond. A
    grace period or a lockout that ends inside a second still acts at the quote that sees it,
    and a quote in a new second is evaluated even before that second's tick (live, the clock
    can lag the feed)."""
    import dataclasses
    import datetime as dt

    from test_book import ES, MNQ, f

    feed = [dataclasses.replace(m, ts=m.ts + dt.timedelta(milliseconds=ms)) for m, ms in messages]
    for contract, price, ms in quotes:
        feed.append(_quote_at((MNQ, ES)[contract], price, f.start + dt.timedelta(milliseconds=ms)))
    skipping = _feed_run(feed, skip=True, tick_every=tick_every, policy=policy)
    assert skipping == _feed_run(feed, skip=False, tick_every=tick_every, policy=policy)


def test_a_quote_in_a_new_second_is_evaluated_before_its_tick():
    """Live, the 1-second clock can lag the feed: a quote in a new second must be evaluated
    (here a lockout `for 30s` that keeps holding is lengthened by it), not skipped as one inside
    the second the engine settled in."""
    import dataclasses
    import datetime as dt

    from test_book import ES, f

    loss = f.trade(0, 1, ES, pnl=-20)
    quotes = [f.quote(0, ES, 21000 + n % 3, stamp=0) for n in range(20)]  # four a second
    feed = [dataclasses.replace(loss, ts=loss.ts + dt.timedelta(milliseconds=100))]
    for n, quote in enumerate(quotes):
        feed.append(dataclasses.replace(quote, ts=quote.ts + dt.timedelta(milliseconds=300 + 250 * n)))
    skipping = _feed_run(feed, skip=True, tick_every=1000, policy=TIMED)
    assert sum(r["action"] == "lockout" for r in skipping[0]) > 1, skipping[0]
    assert skipping == _feed_run(feed, skip=False, tick_every=1000, policy=TIMED)


def test_the_time_thresholds_are_what_the_rules_compare_with():
    """``Program.time_thresholds``: the durations a grace or an age is compared with, and None
    when a rule reads one otherwise (then the engine evaluates every quote while it matters)."""
    import datetime as dt

    from riskc.dsl.compiler import TIME_FIELDS

    def thresholds(text: str) -> dict:
        policies, diagnostics, _ = PolicySet.from_sources([("t.risk", text)])
        assert policies is not None, diagnostics
        return policies.programs[0].time_thresholds

    assert set(TIME_FIELDS) == {"uncovered_for", "age"}
    got = thresholds(AGED)
    assert got["uncovered_for"] == {dt.timedelta(seconds=5), dt.timedelta(seconds=2)}
    assert got["age"] == {dt.timedelta(seconds=7), dt.timedelta(seconds=3)}
    assert thresholds(TIMED)["age"] == frozenset()
    read_otherwise = """policy "p"
rule grace_in_message
  for position p
  when p.qty > 0 and p.age > p.uncovered_for
  then alert "x"
  severity low
"""
    assert thresholds(read_otherwise) == {"uncovered_for": None, "age": None}


def test_a_grace_that_ends_inside_a_second_acts_at_the_first_quote_after_it():
    """With ticks far apart, the close of an uncovered position is made by the first quote at
    or after the end of its grace, as when every quote is evaluated; and quotes before it were
    skipped (else this compares a thing with itself)."""
    import dataclasses
    import datetime as dt

    from test_book import ES, MNQ, f

    opened = f.position(0, ES, 1, 21000)
    feed = [dataclasses.replace(opened, ts=opened.ts + dt.timedelta(milliseconds=300))]
    for n in range(40):  # quotes of another contract, five a second, over the 5 s grace
        feed.append(_quote_at(MNQ, 21000, f.start + dt.timedelta(milliseconds=100 + 200 * n)))
    skipping, evaluated = _counted(lambda: _feed_run(feed, skip=True, tick_every=1000))
    closes = [r for r in skipping[0] if r["rule"] == "stop_required"]
    assert closes and closes[0]["ts"] == (f.start + dt.timedelta(milliseconds=5300)).isoformat(), skipping[0]
    assert sum(kind == "quote" for kind, _ in evaluated) < 20
    assert skipping == _feed_run(feed, skip=False, tick_every=1000)


def test_the_open_pnl_atoms_are_found_where_a_price_is_read_one_for_one():
    """``Program.pnl_atoms``: the atoms of the rules a quote runs that read a price, when each
    reads the account's open P&L one for one (with its sign); None when one reads a price
    otherwise (a position's P&L, a high-water mark, a P&L inside a function)."""

    def atoms(text: str):
        policies, diagnostics, _ = PolicySet.from_sources([("t.risk", text)])
        assert policies is not None, diagnostics
        found = policies.programs[0].pnl_atoms
        return None if found is None else sorted(sign for sign, _, _ in found)

    assert atoms(BANDED) == [-1, 1, 1, 1]  # trailing_drawdown, open_gain (twice), equity_floor
    assert atoms(TIGHT) is None  # position_loss reads p.unrealized_pnl
    header = 'policy "p"\nrule r\n  when '
    tail = '\n  then alert "x"\n  severity low\n'
    assert atoms(header + "day.realized_pnl < -$5" + tail) == []
    assert atoms(header + "day.high_balance - account.balance > $5" + tail) is None
    assert atoms(header + "abs(day.unrealized_pnl) > $5" + tail) is None
    assert atoms(header + "day.unrealized_pnl + day.net_pnl > $5" + tail) is None  # twice: not one for one
    assert atoms('policy "p"\nuse trailing_drawdown(amount: $25, mode: intraday)\n') is None
    assert atoms('policy "p"\nrule r\n  on fill\n  for position p\n  when p.unrealized_pnl < $0' + tail) == []


def test_a_quote_that_moves_the_open_pnl_across_a_threshold_is_evaluated():
    """Quotes that move a position's price inside the band are skipped; the one that takes the
    open P&L across the trailing drawdown's floor acts at once, as when every quote is evaluated."""
    import dataclasses
    import datetime as dt

    from test_book import ES, f

    opened = f.position(0, ES, 1, 21000)
    stop = f.order(0, 9, ES, stop=20000)
    account = f.account(0, 50_000)
    # At 40 s: the clock's first tick, before the account is known, set a 30 s lockout (balance $0).
    feed = [dataclasses.replace(m, ts=m.ts + dt.timedelta(milliseconds=40_100)) for m in (account, opened, stop)]
    # The price moves a quarter point ($12.50 on ES) up and down every 100 ms, then falls.
    prices = [21000 + (n % 3 - 1) * 0.25 for n in range(30)] + [21000 - n * 0.25 for n in range(10)]
    for n, price in enumerate(prices):
        feed.append(_quote_at(ES, price, f.start + dt.timedelta(milliseconds=40_200 + 100 * n)))
    skipping, evaluated = _counted(lambda: _feed_run(feed, skip=True, tick_every=1000, policy=BANDED))
    assert [r for r in skipping[0] if r["rule"] == "trailing_drawdown"], skipping[0]
    assert sum(kind == "quote" for kind, _ in evaluated) < 15, evaluated
    assert skipping == _feed_run(feed, skip=False, tick_every=1000, policy=BANDED)


def test_ticks_are_skipped_until_the_minute_a_rule_reads_ends():
    """After a quiet evaluation, neither ticks nor quotes are evaluated until what the rules read
    of the session can change (the local minute of `session.clock`): trading_hours ends at
    10:01 CT and acts at that tick, as when everything is evaluated."""
    import dataclasses
    import datetime as dt

    from test_book import ES, f

    account, opened, stop = f.account(0, 50_000), f.position(0, ES, 1, 21000), f.order(0, 9, ES, stop=20000)
    feed = [dataclasses.replace(m, ts=m.ts + dt.timedelta(milliseconds=40_100)) for m in (account, opened, stop)]
    feed.append(f.quote(65, ES, 21000, stamp=65))
    skipping, evaluated = _counted(lambda: _feed_run(feed, skip=True, tick_every=1, policy=CLOCKED))
    closing = [r for r in skipping[0] if r["rule"] == "trading_hours"]
    assert closing and closing[0]["ts"] == f.at(60).isoformat(), skipping[0]
    ticks = [t for kind, t in evaluated if kind == "clock" and f.at(41) <= t < f.at(60)]
    assert len(ticks) < 3, evaluated  # the ticks of 41-59 s
    assert skipping == _feed_run(feed, skip=False, tick_every=1, policy=CLOCKED)
