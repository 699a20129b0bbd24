"""The day's `trades` and their tallies grow by one with a fill in time order instead of being
rebuilt (``Book._count``): whatever the fills (out of order, voided, duplicated), they are the
ones rebuilt from the day's fills."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_book import ES, MNQ, apply, f, new_book

from riskc.engine.core.snapshot import trade_tallies


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 12),  # trade id (repeats: duplicates, voids of an earlier one)
            st.integers(0, 50),  # filled at (seconds)
            st.sampled_from([None, -30, 0, 25]),  # P&L
            st.booleans(),  # voided
            st.sampled_from([ES, MNQ]),
        ),
        max_size=30,
    )
)
def test_the_kept_trades_are_the_rebuilt_ones(fills):
    book = new_book()
    apply(book, f.account(0, 50_000))
    for n, (trade_id, at, pnl, voided, contract) in enumerate(fills):
        apply(book, f.trade(60 + n, trade_id, contract, pnl=pnl, voided=voided, filled=at))
        kept, tallies = book.trade_views(), book.day.tallies
        book.day.trade_views = None
        rebuilt = book.trade_views()
        assert [vars_of(t) for t in kept] == [vars_of(t) for t in rebuilt]
        assert tallies == book.day.tallies == trade_tallies(rebuilt)


def vars_of(trade) -> tuple:
    return tuple(getattr(trade, name) for name in trade.__slots__)
