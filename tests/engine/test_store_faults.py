"""Storage faults (PRODUCT.md §7, §8): a state file that refuses writes, is locked by another
process, full, empty, truncated, foreign, flipped or edited. Each test asserts what the trader
keeps: the lockouts, the ledger, each broker call exactly once, and an alert.

Faults are real SQLite failures: ``PRAGMA query_only`` (every write refused), another connection
holding the write lock, ``max_page_count`` or a full tmpfs (``database or disk is full``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import sqlite3
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from gateway_messages import MNQ, SELL
from test_engine import ACCOUNT, Harness, f, policy, summary

from riskc.engine.cli.main import main
from riskc.engine.daemon.daemon import open_state
from riskc.engine.store import StateFileError, Store
from riskc.engine.store.faults import HOLD_RULE, FailSafeStore
from riskc.engine.store.files import DaemonLock

T0 = dt.datetime(2025, 10, 29, 15, 0, tzinfo=dt.UTC)


class Recorder:
    """The daemon's on_change: what would be alerted."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def __call__(self, kind: str, text: str) -> None:
        self.events.append((kind, text))

    @property
    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


@pytest.fixture
def safe(tmp_path: Path):
    recorder = Recorder()
    store = Store.open(tmp_path / "state.db", busy_ms=50)
    wrapped = FailSafeStore(store, on_change=recorder)
    yield wrapped, recorder
    store.close()


def refuse_writes(store: FailSafeStore, refuse: bool) -> None:
    store.store.db.execute(f"PRAGMA query_only = {'ON' if refuse else 'OFF'}")


LOSS = f.trade(30, 99, MNQ, side=SELL, pnl=-120, fees="0.37")


def trades(count: int, start: int = 1) -> list:
    return [f.trade(10 + i, start + i, MNQ, side=SELL, pnl=-1, fees="0.37") for i in range(count)]


# -- a file that refuses writes ----------------------------------------------------------------


def test_a_breach_while_the_file_refuses_writes_is_enforced_once_and_nothing_is_lost(safe) -> None:
    store, alerts = safe
    h = Harness(store, policy("use daily_loss(limit: $100)"))
    h.feed(f.account(0, 50000), f.position(1, MNQ, 2, 21000), *trades(5))
    refuse_writes(store, True)
    calls = h.feed(*trades(6, start=6), LOSS)  # the loss breaches while nothing can be written
    assert summary(calls) == [("close", MNQ, None, None)]  # enforced from memory
    assert [r["action"] for r in h.records if r["action"] != "trading_state"] == ["flatten", "lockout"]
    assert alerts.kinds == ["fault", "hold"] and "cannot be written" in alerts.events[0][1]
    assert store.holding and store.backlog
    # Still refused: the next events queue behind the backlog, nothing is sent twice.
    assert h.feed(f.position(40, MNQ, 1, 21000)) == [] or store.holding
    locked = store.active_lockouts(ACCOUNT, f.at(41))
    assert {lo.rule for lo in locked} == {"daily_loss", HOLD_RULE}
    assert not store.retry()
    refuse_writes(store, False)
    assert store.retry() and not store.holding and alerts.kinds[-1] == "recovered"
    inner = store.store
    assert len(inner.day_trades(ACCOUNT, "2025-10-29")) == 12  # the ledger is whole: 11 losses and LOSS
    [lockout] = inner.active_lockouts(ACCOUNT, f.at(41))
    assert lockout.rule == "daily_loss"
    keys = [r.key for r in inner.recent_actions(ACCOUNT) if r.rule == "daily_loss"]
    assert len(keys) == len(set(keys)) >= 1
    assert inner.verify_audit().ok and inner.state_problems() == []
    assert any(r.kind == "error" and "state_store_fault" in r.payload for r in inner.audit_records())


def test_the_hold_flattens_an_account_whose_lockout_could_not_be_written(safe) -> None:
    store, alerts = safe
    h = Harness(store, policy("use daily_loss(limit: $100)"))
    h.feed(f.account(0, 50000))
    refuse_writes(store, True)
    h.feed(LOSS)  # the lockout exists only in memory
    calls = h.feed(f.position(5, MNQ, 1, 21000))  # the trader opens a position anyway
    calls += h.tick(f.at(6))
    assert ("close", MNQ, None, None) in summary(calls)
    assert "hold" in alerts.kinds


def test_a_buffered_lockout_the_store_refuses_stays_in_force_and_is_alerted(safe, monkeypatch) -> None:
    """Writable again, the store refuses the buffered lockout for a reason that is not a storage
    fault: the lockout must not vanish with the backlog (fail closed), and the refusal is alerted
    and listed in the recovery's audit record."""
    store, alerts = safe
    h = Harness(store, policy("use daily_loss(limit: $100)"))
    h.feed(f.account(0, 50000))
    refuse_writes(store, True)
    h.feed(LOSS)  # the lockout exists only in memory
    refuse_writes(store, False)

    def refuse(*args, **kwargs):
        raise ValueError("a lockout needs a reason")

    monkeypatch.setattr(store.store, "add_lockout", refuse)
    assert store.retry() and not store.holding
    assert "unreplayed" in alerts.kinds
    text = dict(alerts.events)["unreplayed"]
    assert "add_lockout" in text and "stays in force" in text
    assert store.store.active_lockouts(ACCOUNT, f.at(41)) == []  # nothing durable ...
    assert [lo.rule for lo in store.active_lockouts(ACCOUNT, f.at(41))] == ["daily_loss"]  # ... yet enforced
    calls = h.feed(f.position(50, MNQ, 1, 21000))
    calls += h.tick(f.at(51))
    assert ("close", MNQ, None, None) in summary(calls)
    [fault] = [r for r in store.store.audit_records() if r.kind == "error" and "state_store_fault" in r.payload]
    assert "not_replayed" in fault.payload and "add_lockout" in fault.payload


def test_a_buffered_call_the_store_refuses_is_alerted(safe, monkeypatch) -> None:
    store, alerts = safe
    h = Harness(store, policy("use daily_loss(limit: $100)"))
    h.feed(f.account(0, 50000), f.position(1, MNQ, 2, 21000))
    refuse_writes(store, True)
    h.feed(LOSS)  # the flatten's plan is buffered
    refuse_writes(store, False)
    real = store.store.plan_action

    def refuse(*args, **kwargs):
        raise ValueError("a plan without a rule")

    monkeypatch.setattr(store.store, "plan_action", refuse)
    assert store.retry()
    monkeypatch.setattr(store.store, "plan_action", real)
    assert any(kind == "unreplayed" and "plan_action" in text for kind, text in alerts.events)


def test_a_lock_held_by_another_process_costs_one_busy_timeout_not_one_per_event(safe, tmp_path) -> None:
    store, alerts = safe
    h = Harness(store, policy("use daily_loss(limit: $1000)"))
    h.feed(f.account(0, 50000))
    other = sqlite3.connect(tmp_path / "state.db", timeout=0)
    other.execute("BEGIN IMMEDIATE")
    try:
        h.feed(*trades(20))
        assert alerts.kinds == ["fault"] and "locked" in store.fault
        assert len(store.backlog) >= 20  # every trade kept, in order, none dropped
        assert not store.retry()
    finally:
        other.rollback()
        other.close()
    assert store.retry()
    assert len(store.store.day_trades(ACCOUNT, "2025-10-29")) == 20


def test_disk_full_by_max_page_count(safe) -> None:
    store, alerts = safe
    h = Harness(store, policy("use daily_loss(limit: $1000)"))
    h.feed(f.account(0, 50000))
    db = store.store.db
    db.execute(f"PRAGMA max_page_count = {db.execute('PRAGMA page_count').fetchone()[0]}")
    h.feed(*trades(400))  # fills the last free pages, then the disk is "full"
    assert alerts.kinds[:1] == ["fault"] and "full" in store.fault
    db.execute("PRAGMA max_page_count = 1000000")
    assert store.retry()
    assert len(store.store.day_trades(ACCOUNT, "2025-10-29")) == 400


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_tmpfs(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        recorder = Recorder()
        inner = Store.open(mount / "state.db", busy_ms=50)
        store = FailSafeStore(inner, on_change=recorder)
        h = Harness(store, policy("use daily_loss(limit: $100)"))
        h.feed(f.account(0, 50000), f.position(1, MNQ, 1, 21000))
        filler = mount / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as handle:
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()
        calls = []
        for i in range(200):  # enough audited decisions and trades to need pages the disk does not have
            calls += h.feed(f.trade(10 + i, 100 + i, MNQ, side=SELL, pnl="-0.5", fees="0.37"))
        assert "fault" in recorder.kinds and store.backlog
        assert summary(calls) == [("close", MNQ, None, None)]  # the breach was enforced, once
        filler.unlink()
        assert store.retry(), store.fault
        assert len(inner.day_trades(ACCOUNT, "2025-10-29")) == 200
        assert inner.active_lockouts(ACCOUNT, f.at(300)) and inner.verify_audit().ok
        inner.close()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# -- files that are not what they should be ----------------------------------------------------


def _state_with_a_lockout(path: Path) -> None:
    with Store.open(path) as store:
        store.add_lockout(ACCOUNT, "daily_loss", "loss", T0, until=T0 + dt.timedelta(days=3650))
        store.set_timer(ACCOUNT, "uncovered:X", T0)
        store.set_admin_passphrase("correct horse", T0)


def _damage(path: Path, how: str, seed: int = 0) -> None:
    data = bytearray(path.read_bytes())
    if how == "empty":
        data = bytearray()
    elif how == "zeroed":
        data = bytearray(len(data))
    elif how == "truncated":
        data = data[: len(data) // 3]
    elif how == "foreign":
        data = bytearray(b"hello, this is a text file\n" * 200)
    elif how == "flipped":
        rng = random.Random(seed)
        for _ in range(8):
            data[rng.randrange(100, len(data))] ^= 0xFF
    path.write_bytes(bytes(data))


VERBS = [
    ["status"],
    ["audit", "verify"],
    ["audit", "head"],
    ["lock", "--for", "1h"],
    ["unlock", "--all", "--reason", "x"],
    ["admin", "set-passphrase"],
]


def _run(verb: list[str], path: Path):
    args = [*verb, "--state", str(path)]
    env = {"RISKC_ADMIN_PASSPHRASE": "correct horse", "RISKC_CONFIG": ""}
    return CliRunner().invoke(main, args, input="new passphrase\nnew passphrase\n", env=env)


@pytest.mark.parametrize("how", ["empty", "zeroed", "truncated", "foreign"])
@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v[:2]))
def test_an_unusable_file_is_an_error_naming_it_never_a_fresh_start(tmp_path, how, verb) -> None:
    path = tmp_path / "state.db"
    _state_with_a_lockout(path)
    _damage(path, how)
    before = path.read_bytes()
    result = _run(verb, path)
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert path.read_bytes() == before  # the evidence is untouched


@pytest.mark.parametrize("seed", range(12))
def test_flipped_bytes_never_give_a_traceback(tmp_path, seed) -> None:
    path = tmp_path / "state.db"
    _state_with_a_lockout(path)
    with Store.open(path) as store:
        for i in range(30):
            store.append_audit("event", {"i": i, "text": "ünïcode " * 10}, T0)
    _damage(path, "flipped", seed)  # a flip in a page's unused space changes nothing, and is not reported
    for verb in VERBS:
        result = _run(verb, path)
        assert result.exit_code in (0, 1, 2), (verb, result.output)
        assert not isinstance(result.exception, (UnicodeDecodeError, sqlite3.Error, ValueError)), (verb, result.output)


def test_the_daemon_refuses_an_unusable_file_unless_new_state(tmp_path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"")
    with pytest.raises(StateFileError, match="is empty"):
        open_state(path, new_state=False)
    store, problems = open_state(path, new_state=True)
    store.close()
    assert problems == [] and list(tmp_path.glob("state.db.unusable-*"))


# -- edits outside riskc ---------------------------------------------------------------------


def _edit(path: Path, sql: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(sql)


@pytest.mark.parametrize(
    "sql, found",
    [
        ("UPDATE lockouts SET released_at = '2025-10-29T15:00:01.000000+00:00'", "lockout 1 was edited"),
        ("DELETE FROM lockouts", "lockout 1 is in the audit log but missing"),
        ("UPDATE lockouts SET until = '2025-10-29T15:00:01.000000+00:00'", "(until)"),
        ("DELETE FROM timers", "timer uncovered:X"),
        ("UPDATE admin SET passphrase_hash = 'scrypt$16384$8$1$00$00'", "admin passphrase was changed"),
        ("DELETE FROM admin", "admin passphrase was removed"),
    ],
)
def test_edited_lockouts_timers_and_passphrase_are_caught_and_restored(tmp_path, sql, found) -> None:
    path = tmp_path / "state.db"
    _state_with_a_lockout(path)
    _edit(path, sql)
    verify = _run(["audit", "verify"], path)
    assert verify.exit_code == 1 and found in verify.output
    store, problems = open_state(path, new_state=False)  # what the daemon does at start
    with store:
        assert any(found in p for p in problems)
        assert store.state_problems() == []
        [lockout] = store.active_lockouts(ACCOUNT, T0 + dt.timedelta(hours=1))
        assert lockout.rule == "daily_loss"
        assert store.check_admin_passphrase("correct horse")
        assert store.verify_audit().ok
    assert _run(["audit", "verify"], path).exit_code == 0


def test_a_rewritten_history_is_refused_at_start(tmp_path) -> None:
    path = tmp_path / "state.db"
    _state_with_a_lockout(path)
    _edit(path, "DROP TRIGGER audit_no_update")
    _edit(path, "UPDATE audit SET payload = '{}' WHERE seq = 1")
    with pytest.raises(StateFileError, match="fails verification at record 1"):
        open_state(path, new_state=False)


def test_a_truncated_log_is_caught_by_the_noted_head(tmp_path) -> None:
    path = tmp_path / "state.db"
    _state_with_a_lockout(path)
    head = _run(["audit", "head"], path).output.strip()
    with Store.open(path) as store:
        store.append_audit("event", {"later": True}, T0)
    assert _run(["audit", "verify", "--expect-head", head], path).exit_code == 0
    _edit(path, "DROP TRIGGER audit_no_delete")
    _edit(path, "DROP TRIGGER audit_head_advance")
    _edit(path, "DELETE FROM audit WHERE seq >= 3")
    seq, digest = head.split(":")
    row = sqlite3.connect(path).execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    _edit(path, f"UPDATE audit_head SET seq = {row[0]}, hash = '{row[1]}'")
    result = _run(["audit", "verify", "--expect-head", head], path)
    assert result.exit_code == 1 and "truncated" in result.output


def test_one_daemon_per_state_file(tmp_path) -> None:
    path = tmp_path / "state.db"
    first = DaemonLock.acquire(path)
    try:
        with pytest.raises(StateFileError, match=rf"in use by another riskc daemon \(pid {os.getpid()} on "):
            DaemonLock.acquire(path)
    finally:
        first.release()
    DaemonLock.acquire(path).release()  # free again once the first is gone


def test_a_flipped_byte_inside_a_record_is_reported_as_a_modified_record(tmp_path) -> None:
    path = tmp_path / "state.db"
    _state_with_a_lockout(path)
    with Store.open(path) as store:
        store.append_audit("event", {"note": "marker-ünïcode"}, T0)
    data = bytearray(path.read_bytes())
    at = data.index("marker-ü".encode()) + len("marker-")
    data[at] ^= 0x40  # no longer valid UTF-8
    path.write_bytes(bytes(data))
    result = _run(["audit", "verify"], path)
    assert result.exit_code == 1 and "was modified" in result.output
    assert _run(["status"], path).exit_code in (0, 1)  # readable, no traceback


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_read_only_filesystem(tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        path = mount / "state.db"
        _state_with_a_lockout(path)
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        for verb in VERBS:
            result = _run(verb, path)
            assert result.exit_code in (0, 1, 2), (verb, result.output)
            assert result.exception is None or isinstance(result.exception, SystemExit), (verb, result.output)
            if result.exit_code:
                assert str(path) in result.output, (verb, result.output)
        with pytest.raises((StateFileError, OSError)):
            open_state(mount / "absent.db", new_state=False)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_lockout_inserted_outside_riskc_is_adopted_not_removed(tmp_path) -> None:
    path = tmp_path / "state.db"
    _state_with_a_lockout(path)
    _edit(
        path,
        "INSERT INTO lockouts (scope, account_id, symbol, rule, reason, since, until, condition, origin)"
        f" VALUES ('symbol', {ACCOUNT}, 'CL', 'desk', 'no crude today', '2025-10-29T15:00:00.000000+00:00',"
        " NULL, 'manual', 'admin')",
    )
    assert "inserted outside riskc" in _run(["audit", "verify"], path).output
    store, problems = open_state(path, new_state=False)
    with store:
        assert any("inserted outside riskc" in p for p in problems)
        assert {lo.rule for lo in store.active_lockouts(ACCOUNT, T0 + dt.timedelta(hours=1))} == {"daily_loss", "desk"}
        assert store.state_problems() == [] and store.verify_audit().ok


def test_a_buffered_trade_the_store_refuses_is_listed_not_alerted(safe, monkeypatch) -> None:
    """A refused ledger write (e.g. a trade it already has) does not hold anything: no alert of
    its own, but the recovery's audit record lists it, so nothing leaves without a trace."""
    store, alerts = safe
    h = Harness(store, policy("use daily_loss(limit: $1,000)"))
    h.feed(f.account(0, 50000))
    refuse_writes(store, True)
    h.feed(*trades(1))
    refuse_writes(store, False)

    def refuse(*args, **kwargs):
        raise ValueError("already recorded")

    monkeypatch.setattr(store.store, "record_trade", refuse)
    assert store.retry()
    assert "unreplayed" not in alerts.kinds
    [fault] = [r for r in store.store.audit_records() if r.kind == "error" and "state_store_fault" in r.payload]
    assert "record_trade" in fault.payload and "already recorded" in fault.payload
