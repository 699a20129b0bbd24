"""The state store: durability setup, lockouts and timers across restarts, unlock rules, the
ledger's exact sums, high-water marks, exactly-once actions and the audit chain."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from riskc.engine.cli.main import main
from riskc.engine.store import (
    ActionStateError,
    LockoutStillActive,
    Store,
    StoreError,
    UnlockDenied,
    idempotency_key,
)

T0 = datetime(2025, 10, 29, 15, 0, tzinfo=UTC)
DAY = date(2025, 10, 29)
ACCOUNT = 13298777


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "riskc.db"


@pytest.fixture
def store(path: Path):
    with Store.open(path) as opened:
        yield opened


def kinds(store: Store) -> list[str]:
    return [record.kind for record in store.audit_records()]


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection that bypasses the store, as a tamperer would."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


# -- opening the file ----------------------------------------------------------------------


def test_migrations_are_applied_once(path: Path) -> None:
    Store.open(path).close()
    with Store.open(path) as store:
        names = [row[0] for row in store.db.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
    assert names == [
        "0001_state_tables",
        "0002_audit_log",
        "0003_state_in_the_chain",
        "0004_heartbeat",
        "0005_staged_policies",
    ]


def test_file_and_sidecars_are_private(path: Path, store: Store) -> None:
    store.append_audit("event", {"n": 1}, T0)
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        sidecar = path.with_name(name)
        if sidecar.exists():
            assert stat.S_IMODE(os.stat(sidecar).st_mode) == 0o600, name


def test_existing_file_with_wide_permissions_is_tightened(path: Path) -> None:
    Store.open(path).close()
    os.chmod(path, 0o644)
    Store.open(path).close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_wal_and_normal_synchronous(store: Store) -> None:
    assert store.journal_mode() == "wal"
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL


def test_durable_writes_restore_the_synchronous_setting(store: Store) -> None:
    store.add_lockout(ACCOUNT, "daily_loss", "loss", T0, until=at(60))
    assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 1


def test_naive_times_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        store.append_audit("event", {}, datetime(2025, 10, 29, 15, 0))


# -- lockouts ------------------------------------------------------------------------------


def test_longest_lockout_wins(store: Store) -> None:
    store.add_lockout(ACCOUNT, "cooldown_after_loss", "first", T0, until=at(60))
    store.add_lockout(ACCOUNT, "cooldown_after_loss", "longer", at(1), until=at(180))
    kept = store.add_lockout(ACCOUNT, "cooldown_after_loss", "shorter", at(2), until=at(30))
    active = store.active_lockouts(ACCOUNT, at(3))
    assert [(lock.until, lock.reason) for lock in active] == [(at(180), "longer")]
    assert kept == active[0]


def test_manual_outlasts_any_time(store: Store) -> None:
    store.add_lockout(ACCOUNT, "trailing_drawdown", "timed", T0, until=at(60))
    store.add_lockout(ACCOUNT, "trailing_drawdown", "floor hit", T0, condition="manual")
    store.add_lockout(ACCOUNT, "trailing_drawdown", "timed again", T0, until=at(600))
    [lock] = store.active_lockouts(ACCOUNT, at(700))
    assert (lock.until, lock.condition, lock.reason) == (None, "manual", "floor hit")


def test_different_rules_and_symbols_do_not_merge(store: Store) -> None:
    store.add_lockout(ACCOUNT, "daily_loss", "loss", T0, until=at(60))
    store.add_lockout(ACCOUNT, "trade_frequency", "too many", T0, until=at(10))
    store.add_lockout(ACCOUNT, "symbol_block", "blocked", T0, until=at(60), symbol="MNQ")
    scopes = sorted((lock.rule, lock.scope, lock.symbol) for lock in store.active_lockouts(ACCOUNT, at(1)))
    assert scopes == [
        ("daily_loss", "account", None),
        ("symbol_block", "symbol", "MNQ"),
        ("trade_frequency", "account", None),
    ]


def test_lockout_ends_at_until_against_the_given_clock(store: Store) -> None:
    store.add_lockout(ACCOUNT, "trade_frequency", "too many", T0, until=at(10))
    assert store.active_lockouts(ACCOUNT, at(9.99))
    assert store.active_lockouts(ACCOUNT, at(10)) == []
    assert store.active_lockouts(ACCOUNT + 1, at(1)) == []


def test_expired_lockout_is_not_merged_into(store: Store) -> None:
    first = store.add_lockout(ACCOUNT, "trade_frequency", "one", T0, until=at(10))
    second = store.add_lockout(ACCOUNT, "trade_frequency", "two", at(20), until=at(25))
    assert second.id != first.id and store.get_lockout(first.id).until == at(10)


def test_lockout_shapes_are_validated(store: Store) -> None:
    with pytest.raises(ValueError):
        store.add_lockout(ACCOUNT, "r", "both", T0, until=at(1), condition="manual")
    with pytest.raises(ValueError):
        store.add_lockout(ACCOUNT, "r", "past", T0, until=T0)
    with pytest.raises(ValueError):
        store.add_lockout(ACCOUNT, "r", "odd", T0, condition="sometimes")
    with pytest.raises(ValueError):
        store.add_lockout(ACCOUNT, "personal", "forever", T0, condition="manual", origin="personal")


def test_restart_restores_lockouts_and_timers_exactly(path: Path) -> None:
    with Store.open(path) as store:
        store.add_lockout(ACCOUNT, "daily_loss", "loss", T0, until=at(420))
        store.add_lockout(ACCOUNT, "auth_guard", "cannot trade", T0, condition="while:not account.can_trade")
        store.add_lockout(ACCOUNT, "symbol_block", "blocked", T0, until=at(60), symbol="MES")
        store.set_timer(ACCOUNT, "stop_required:CON.F.US.MNQ.Z25", T0, at(0.5), {"position": 418808227})
        store.set_timer(ACCOUNT, "cooldown", T0)
        lockouts, timers = store.active_lockouts(ACCOUNT, at(1)), store.timers()
    with Store.open(path) as store:
        assert store.active_lockouts(ACCOUNT, at(1)) == lockouts
        assert store.timers() == timers
    assert len(lockouts) == 3 and len(timers) == 2


# -- lifting lockouts ----------------------------------------------------------------------


def test_trader_cannot_lift_a_personal_lockout(store: Store) -> None:
    lock = store.add_lockout(ACCOUNT, "personal", "done for today", T0, until=at(120), origin="personal")
    with pytest.raises(LockoutStillActive, match="cannot be lifted before it ends"):
        store.release_lockout(lock.id, at(5), by="trader", reason="changed my mind")
    assert store.active_lockouts(ACCOUNT, at(5)) == [lock]
    last = store.audit_records()[-1]
    assert last.kind == "unlock" and '"outcome":"refused"' in last.payload


def test_personal_lockout_can_be_extended_not_shortened(store: Store) -> None:
    store.add_lockout(ACCOUNT, "personal", "2h", T0, until=at(120), origin="personal")
    store.add_lockout(ACCOUNT, "personal", "1h", at(1), until=at(60), origin="personal")
    assert [lock.until for lock in store.active_lockouts(ACCOUNT, at(2))] == [at(120)]


def test_admin_unlock_with_wrong_then_right_passphrase(path: Path, store: Store) -> None:
    store.set_admin_passphrase("correct horse battery", T0)
    lock = store.add_lockout(ACCOUNT, "personal", "done", T0, until=at(120), origin="personal")
    with pytest.raises(UnlockDenied):
        store.release_lockout(lock.id, at(1), by="alice", reason="guess", passphrase="wrong")
    assert store.active_lockouts(ACCOUNT, at(1))
    released = store.release_lockout(
        lock.id, at(2), by="bob (risk desk)", reason="locked 2 days by mistake", passphrase="correct horse battery"
    )
    assert released.released_by == "bob (risk desk)" and released.released_at == at(2)
    assert store.active_lockouts(ACCOUNT, at(3)) == []
    unlocks = [r.payload for r in store.audit_records() if r.kind == "unlock"]
    assert '"outcome":"denied"' in unlocks[0] and '"by":"alice"' in unlocks[0]
    assert '"outcome":"released"' in unlocks[1] and "locked 2 days by mistake" in unlocks[1]


def test_passphrase_is_never_stored_in_clear(path: Path, store: Store) -> None:
    store.set_admin_passphrase("correct horse battery", T0)
    lock = store.add_lockout(ACCOUNT, "daily_loss", "loss", T0, until=at(60))
    store.release_lockout(lock.id, at(1), by="bob", reason="why", passphrase="correct horse battery")
    store.close()
    data = b"".join(p.read_bytes() for p in path.parent.iterdir())
    assert b"correct horse" not in data
    assert b"scrypt$" in data


def test_replacing_the_passphrase_needs_the_current_one(store: Store) -> None:
    store.set_admin_passphrase("first", T0)
    with pytest.raises(UnlockDenied):
        store.set_admin_passphrase("mine now", at(1))
    assert store.check_admin_passphrase("first") and not store.check_admin_passphrase("mine now")
    store.set_admin_passphrase("second", at(2), current="first")
    assert store.check_admin_passphrase("second")


def test_no_passphrase_set_means_no_admin_unlock(store: Store) -> None:
    lock = store.add_lockout(ACCOUNT, "daily_loss", "loss", T0, until=at(60))
    with pytest.raises(UnlockDenied):
        store.release_lockout(lock.id, at(1), by="x", reason="y", passphrase="")


def test_rule_lockouts_need_admin_but_while_lockouts_clear_themselves(store: Store) -> None:
    timed = store.add_lockout(ACCOUNT, "daily_loss", "loss", T0, until=at(60))
    manual = store.add_lockout(ACCOUNT, "trailing_drawdown", "floor", T0, condition="manual")
    while_ = store.add_lockout(ACCOUNT, "auth_guard", "no trading", T0, condition="while:not account.can_trade")
    for lock in (timed, manual):
        with pytest.raises(LockoutStillActive, match="admin"):
            store.release_lockout(lock.id, at(1), by="trader", reason="please")
    store.release_lockout(while_.id, at(1), by="engine", reason="account.can_trade is true again")
    assert {lock.rule for lock in store.active_lockouts(ACCOUNT, at(2))} == {"daily_loss", "trailing_drawdown"}
    with pytest.raises(StoreError, match="no longer active"):
        store.release_lockout(while_.id, at(3), by="engine", reason="again")


# -- timers --------------------------------------------------------------------------------


def test_running_timer_is_kept_unless_replaced(store: Store) -> None:
    key = "stop_required:CON.F.US.MNQ.Z25"
    first = store.set_timer(ACCOUNT, key, T0, at(0.5))
    assert store.set_timer(ACCOUNT, key, at(0.2), at(0.7)) == first
    replaced = store.set_timer(ACCOUNT, key, at(0.3), at(0.8), replace=True)
    assert replaced.started_at == at(0.3) and not replaced.is_expired(at(0.79)) and replaced.is_expired(at(0.8))
    assert store.clear_timer(ACCOUNT, key) and store.get_timer(ACCOUNT, key) is None
    assert not store.clear_timer(ACCOUNT, key)


# -- the day ledger ------------------------------------------------------------------------


def trade(store: Store, trade_id: int, pnl, fees="1.24", voided=False, day=DAY):
    return store.record_trade(ACCOUNT, trade_id, day, "CON.F.US.MNQ.Z25", T0, 1, 1, 26246.25, pnl, fees, voided)


def test_replayed_trades_are_counted_once_and_voids_flip(store: Store) -> None:
    assert trade(store, 1, None) == "recorded"  # opening fill: no P&L, fees still paid
    assert trade(store, 2, "-50.5") == "recorded"
    assert trade(store, 2, "-50.5") == "duplicate"
    assert trade(store, 3, 120) == "recorded"
    assert trade(store, 3, 120, voided=True) == "voided"
    totals = store.day_totals(ACCOUNT, DAY)
    assert (totals.gross_pnl, totals.fees, totals.realized_pnl, totals.trade_count) == (
        Decimal("-50.5"),
        Decimal("2.48"),
        Decimal("-52.98"),
        2,
    )
    assert trade(store, 3, 120, voided=False) == "unvoided"
    assert store.day_totals(ACCOUNT, DAY).trade_count == 3
    assert store.day_totals(ACCOUNT, date(2025, 10, 30)).trade_count == 0


def test_broker_floats_become_the_decimal_they_print_as(store: Store) -> None:
    trade(store, 1, 0.1, fees=0.37)
    [recorded] = store.day_trades(ACCOUNT, DAY)
    assert (recorded.pnl, recorded.fees, recorded.price) == (Decimal("0.1"), Decimal("0.37"), Decimal("26246.25"))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-500_000, 500_000), st.integers(0, 1_000)), min_size=1, max_size=30))
def test_day_totals_are_exact_decimal_sums(amounts: list[tuple[int, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp, Store.open(Path(tmp) / "s.db") as store:
        for trade_id, (pnl_cents, fee_cents) in enumerate(amounts):
            trade(store, trade_id, Decimal(pnl_cents) / 100, fees=Decimal(fee_cents) / 100)
        totals = store.day_totals(ACCOUNT, DAY)
    gross = sum(Decimal(p) / 100 for p, _ in amounts)
    fees = sum(Decimal(f) / 100 for _, f in amounts)
    assert (totals.gross_pnl, totals.fees, totals.realized_pnl) == (gross, fees, gross - fees)
    assert totals.realized_pnl * 100 == sum(p - f for p, f in amounts)


# -- balances ------------------------------------------------------------------------------


def test_intraday_and_end_of_day_high_water(store: Store) -> None:
    d1, d2 = date(2025, 10, 29), date(2025, 10, 30)
    store.record_balance(ACCOUNT, at(1), d1, "50000")
    store.record_balance(ACCOUNT, at(2), d1, 50750.5)
    day = store.record_balance(ACCOUNT, at(3), d1, "50200")
    assert (day.last_balance, day.high_water) == (Decimal("50200"), Decimal("50750.5"))
    late = store.record_balance(ACCOUNT, at(0), d1, "50800")  # replayed late: high-water only
    assert (late.last_balance, late.high_water) == (Decimal("50200"), Decimal("50800"))
    assert store.close_day(ACCOUNT, d1, "50200").eod_high_water == Decimal("50200")
    store.record_balance(ACCOUNT, at(1500), d2, "49900")
    assert store.close_day(ACCOUNT, d2, "49950").eod_high_water == Decimal("50200")
    assert store.eod_high_balance(ACCOUNT) == Decimal("50200")
    assert store.intraday_high_balance(ACCOUNT) == Decimal("50800")
    assert store.eod_high_balance(ACCOUNT + 1) is None


# -- book and policies ---------------------------------------------------------------------


def test_book_keeps_the_last_copy(store: Store) -> None:
    store.save_book(ACCOUNT, '[{"id": 1}]', "[]", T0)
    store.save_book(ACCOUNT, "[]", '[{"id": 7}]', at(1))
    book = store.load_book(ACCOUNT)
    assert (book.positions_json, book.orders_json, book.ts) == ("[]", '[{"id": 7}]', at(1))
    assert store.load_book(ACCOUNT + 1) is None
    with pytest.raises(ValueError):
        store.save_book(ACCOUNT, "not json", "[]", T0)


def test_policy_versions_are_recorded_once_per_content(store: Store) -> None:
    store.record_policy("policies/a.risk", "h1", T0)
    store.record_policy("policies/a.risk", "h1", at(1))
    store.record_policy("policies/a.risk", "h2", at(2))
    store.record_policy("policies/b.risk", "h3", at(2))
    assert [(p.path, p.content_hash, p.loaded_at) for p in store.current_policies()] == [
        ("policies/a.risk", "h2", at(2)),
        ("policies/b.risk", "h3", at(2)),
    ]
    assert kinds(store) == ["policy_loaded"] * 3


# -- exactly-once actions ------------------------------------------------------------------


def test_idempotency_key_format() -> None:
    assert idempotency_key("daily_loss", f"account:{ACCOUNT}", DAY, 1) == "daily_loss|account:13298777|2025-10-29|1"
    with pytest.raises(ValueError):
        idempotency_key("a|b", "t", DAY, 1)


FLATTEN = {"ts": T0, "rule": "daily_loss", "action": "flatten", "reason": "day.realized_pnl <= -$1,000.00"}


def test_action_state_machine_and_dedupe(store: Store) -> None:
    key = idempotency_key("daily_loss", f"account:{ACCOUNT}", DAY, 1)
    planned, is_new = store.plan_action(key, ACCOUNT, "daily_loss", FLATTEN, T0, policy_hash="p1")
    assert is_new and planned.state == "planned" and planned.action["ts"] == "2025-10-29T15:00:00.000000+00:00"
    assert store.plan_action(key, ACCOUNT, "daily_loss", FLATTEN, at(0.1)) == (planned, False)
    sent = store.mark_sent(key, at(0.2))
    assert store.plan_action(key, ACCOUNT, "daily_loss", FLATTEN, at(0.3)) == (sent, False)
    confirmed = store.mark_confirmed(key, at(0.4), {"closed": 2})
    assert (confirmed.state, confirmed.result) == ("confirmed", {"closed": 2})
    assert store.plan_action(key, ACCOUNT, "daily_loss", FLATTEN, at(0.5)) == (confirmed, False)
    with pytest.raises(ActionStateError):
        store.mark_sent(key, at(0.6))
    assert kinds(store) == ["action_planned", "broker_call", "outcome"]
    assert {r.policy_hash for r in store.audit_records()} == {"p1"}


def test_failed_actions_are_replanned_only_when_retryable(store: Store) -> None:
    retry, final = "close|CON.F.US.MNQ.Z25|2025-10-29|1", "close|CON.F.US.MES.Z25|2025-10-29|1"
    for key in (retry, final):
        store.plan_action(key, ACCOUNT, "position_loss", {"action": "close"}, T0)
        store.mark_sent(key, at(0.1))
    store.mark_failed(retry, at(0.2), "timeout", retryable=True)
    store.mark_failed(final, at(0.2), "rejected: no such position", retryable=False)
    again, is_new = store.plan_action(retry, ACCOUNT, "position_loss", {"action": "close"}, at(1))
    assert is_new and again.attempts == 2 and again.state == "planned" and again.error is None
    stays, is_new = store.plan_action(final, ACCOUNT, "position_loss", {"action": "close"}, at(1))
    assert not is_new and stays.state == "failed"


def test_unconfirmed_actions_survive_a_restart(path: Path) -> None:
    with Store.open(path) as store:
        for n, state in enumerate(("planned", "sent", "confirmed", "failed")):
            key = idempotency_key("r", f"t{n}", DAY, 1)
            store.plan_action(key, ACCOUNT, "r", {"action": "cancel"}, at(n))
            if state != "planned":
                store.mark_sent(key, at(n + 0.1))
            if state == "confirmed":
                store.mark_confirmed(key, at(n + 0.2))
            if state == "failed":
                store.mark_failed(key, at(n + 0.2), "boom", retryable=False)
    with Store.open(path) as store:
        pending = store.unconfirmed_actions()
        assert [(a.key, a.state) for a in pending] == [("r|t0|2025-10-29|1", "planned"), ("r|t1|2025-10-29|1", "sent")]
        # recovery: the broker shows the effect of the sent one, so it is confirmed, not resent
        store.mark_confirmed(pending[1].key, at(10), {"verified_against_broker": True})
        assert [a.key for a in store.unconfirmed_actions()] == ["r|t0|2025-10-29|1"]


# -- the audit log -------------------------------------------------------------------------


def filled(store: Store, n: int = 5) -> Store:
    for i in range(n):
        store.append_audit("event", {"i": i, "amount": Decimal("1.10")}, at(i), account_id=ACCOUNT)
    return store


def test_decisions_carry_the_policy_hash(store: Store) -> None:
    with pytest.raises(ValueError, match="policy"):
        store.append_audit("decision", {"reasons": []}, T0)
    record = store.append_audit("decision", {"reasons": ["x"]}, T0, policy_hash="abc")
    assert record.policy_hash == "abc" and record.payload == '{"reasons":["x"]}'


def test_audit_payload_is_canonical_json(store: Store) -> None:
    record = store.append_audit("event", {"b": Decimal("-1020.00"), "a": T0}, T0)
    assert record.payload == '{"a":"2025-10-29T15:00:00.000000+00:00","b":"-1020.00"}'


def test_audit_log_refuses_update_and_delete(store: Store) -> None:
    filled(store)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("UPDATE audit SET payload = '{}' WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        store.db.execute("DELETE FROM audit WHERE seq = 5")
    with pytest.raises(sqlite3.DatabaseError, match="head"):
        store.db.execute("UPDATE audit_head SET seq = 3")
    assert store.verify_audit().ok and store.verify_audit().count == 5


def test_tampered_record_is_found(path: Path, store: Store) -> None:
    filled(store)
    with raw(path) as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("""UPDATE audit SET payload = '{"amount":"9.99","i":2}' WHERE seq = 3""")
    result = store.verify_audit()
    assert (result.ok, result.first_bad_seq) == (False, 3) and "modified" in result.problem


def test_truncated_tail_is_found(path: Path, store: Store) -> None:
    filled(store)
    with raw(path) as conn:
        conn.execute("DROP TRIGGER audit_no_delete")
        conn.execute("DELETE FROM audit WHERE seq >= 4")
    result = store.verify_audit()
    assert (result.ok, result.first_bad_seq, result.count) == (False, 4, 3) and "truncated" in result.problem


def test_missing_middle_record_is_found(path: Path, store: Store) -> None:
    filled(store)
    with raw(path) as conn:
        conn.execute("DROP TRIGGER audit_no_delete")
        conn.execute("DELETE FROM audit WHERE seq = 2")
    result = store.verify_audit()
    assert (result.ok, result.first_bad_seq) == (False, 2) and "missing" in result.problem


def test_chain_continues_across_restarts(path: Path) -> None:
    with Store.open(path) as store:
        filled(store, 3)
    with Store.open(path) as store:
        filled(store, 2)
        assert store.verify_audit().count == 5 and [r.seq for r in store.audit_records()] == [1, 2, 3, 4, 5]


def test_cli_audit_verify(path: Path, store: Store) -> None:
    filled(store)
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", "verify", "--state", str(path)])
    assert ok.exit_code == 0 and ok.stdout.startswith("audit log OK: 5 records;")
    with raw(path) as conn:
        conn.execute("DROP TRIGGER audit_no_update")
        conn.execute("UPDATE audit SET kind = 'error' WHERE seq = 2")
    bad = runner.invoke(main, ["audit", "verify", "--state", str(path)])
    assert bad.exit_code == 1 and "record 2" in bad.stderr
    missing = runner.invoke(main, ["audit", "verify", "--state", str(path.with_name("nope.db"))])
    assert missing.exit_code == 2


def test_two_writers_keep_one_chain(path: Path) -> None:
    with Store.open(path) as daemon, Store.open(path) as cli:
        for i in range(10):
            (daemon if i % 2 else cli).append_audit("event", {"i": i}, at(i))
        assert daemon.verify_audit().count == 10 and cli.verify_audit().ok


_WRITER = """
import sys
from datetime import UTC, datetime, timedelta
from riskc.engine.store import Store, idempotency_key
store = Store.open(sys.argv[1])
t0 = datetime(2025, 10, 29, 15, tzinfo=UTC)
store.add_lockout(1, "daily_loss", "loss", t0, until=t0 + timedelta(hours=7))
store.mark_sent(store.plan_action(idempotency_key("daily_loss", "account:1", "2025-10-29", 1), 1,
                "daily_loss", {"action": "flatten"}, t0)[0].key, t0)
print("ready", flush=True)
i = 0
while True:
    record = store.append_audit("event", {"i": i}, t0 + timedelta(milliseconds=i))
    print(record.seq, flush=True)
    i += 1
"""


def test_kill_9_loses_no_acknowledged_write(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True) as child:
        try:
            assert child.stdout.readline().strip() == "ready"
            acknowledged = [int(child.stdout.readline()) for _ in range(200)]
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
    with Store.open(path) as store:
        result = store.verify_audit()
        assert result.ok and result.count >= acknowledged[-1]
        assert [lock.rule for lock in store.active_lockouts(1, at(60))] == ["daily_loss"]
        assert [a.state for a in store.unconfirmed_actions()] == ["sent"]
