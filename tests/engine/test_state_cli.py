"""`riskc status`, `lock`, `unlock` and `admin set-passphrase` as a user runs them, against a
real state file: exit codes, what is printed, what ends up in the store and in the audit log."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from riskc.engine.cli.main import main
from riskc.engine.core.calendar import TradingCalendar
from riskc.engine.store import Store, idempotency_key

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = 13298777
OTHER = 555
PASSPHRASE = "correct horse battery"
MNQ = "CON.F.US.MNQ.Z25"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RISKC_ADMIN_PASSPHRASE", "RISKC_CONFIG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def state(state_location: Path | str) -> Path | str:
    """A state file, then a PostgreSQL desk: every command runs on both."""
    return state_location


@pytest.fixture
def config(tmp_path: Path, state: Path) -> Path:
    path = tmp_path / "riskc.yaml"
    path.write_text(
        f"state: {state}\naccounts:\n  - id: {ACCOUNT}\n    policies: [{REPO / 'policies' / 'topstep-50k.risk'}]\n"
    )
    return path


@pytest.fixture
def store(state: Path) -> Iterator[Store]:
    with Store.open(state) as opened:
        yield opened


def riskc(config: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    verb, *rest = args
    sub = [verb] if verb != "admin" else [verb, rest.pop(0)]
    return CliRunner().invoke(main, [*sub, "--config", str(config), *rest], input=input, env=env)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def populate(store: Store) -> None:
    """An account mid-day: three kinds of lockout, two fills, a balance, a book with a partly
    covered position, a running grace timer, one confirmed and one failed action."""
    t = now()
    day = TradingCalendar().trading_day(t)
    store.add_lockout(
        ACCOUNT,
        "daily_loss",
        "daily_loss: day.realized_pnl = -$1,020.00 <= -$1,000.00",
        t,
        until=t + dt.timedelta(hours=1, minutes=12, seconds=30),
    )
    store.add_lockout(ACCOUNT, "symbol_block", "CL is blocked", t, condition="manual", symbol="CL")
    store.add_lockout(
        ACCOUNT, "auth_guard", "the broker says the account cannot trade", t, condition="while:not account.can_trade"
    )
    store.record_trade(ACCOUNT, 1, day, MNQ, t, 0, 3, "21000.25", None, "1.11")
    store.record_trade(ACCOUNT, 2, day, MNQ, t, 1, 1, "20990.25", "-20.00", "0.37")
    store.record_balance(ACCOUNT, t, day, "48980.00")
    positions = [{"contract_id": MNQ, "size": 2, "avg_price": "21000.25", "opened_at": t.isoformat(), "episode": 1}]
    orders = [
        {
            "id": 7,
            "contract_id": MNQ,
            "type": "stop",
            "side": "sell",
            "size": 1,
            "stop_price": "20980",
            "price": None,
            "status": "open",
        }
    ]
    store.save_book(ACCOUNT, json.dumps(positions), json.dumps(orders), t)
    store.set_timer(ACCOUNT, f"stop_required:{MNQ}", t - dt.timedelta(seconds=12), t + dt.timedelta(seconds=18))
    done = idempotency_key("daily_loss", f"account:{ACCOUNT}", day, 1)
    store.plan_action(
        done, ACCOUNT, "daily_loss", {"action": "flatten", "reason": "daily loss reached"}, t - dt.timedelta(seconds=5)
    )
    store.mark_sent(done, t)
    store.mark_confirmed(done, t, {"closed": [MNQ]})
    failed = idempotency_key("stop_required", MNQ, day, 1)
    store.plan_action(
        failed,
        ACCOUNT,
        "stop_required",
        {"action": "close", "symbol": "MNQ", "contract_id": MNQ, "reason": "p.stop_coverage = 1 < p.qty = 2"},
        t,
    )
    store.mark_sent(failed, t)
    store.mark_failed(failed, t, "broker timeout", retryable=True)


def audit_payloads(store: Store, kind: str) -> list[dict]:
    return [json.loads(r.payload) for r in store.audit_records() if r.kind == kind]


# -- status ----------------------------------------------------------------------------------


def test_status_without_a_state_file(config: Path, state: Path | str) -> None:
    result = riskc(config, "status")
    nothing = "no riskc desk at" if isinstance(state, str) else "no state file at"
    assert result.exit_code == 1 and nothing in result.output
    assert "Traceback" not in result.output
    if isinstance(state, str):
        assert "Store" not in result.output
    else:
        assert not state.exists()


@pytest.fixture
def file_state(tmp_path: Path) -> Path:
    return tmp_path / "state" / "riskc.db"


@pytest.fixture
def file_config(tmp_path: Path, file_state: Path) -> Path:
    path = tmp_path / "file-riskc.yaml"
    path.write_text(
        f"state: {file_state}\naccounts:\n  - id: {ACCOUNT}\n    policies: [{REPO / 'policies' / 'topstep-50k.risk'}]\n"
    )
    return path


def test_status_of_an_empty_state_file(file_config: Path, file_state: Path) -> None:
    config, state = file_config, file_state
    state.parent.mkdir(parents=True)
    state.touch()
    result = riskc(config, "status")
    assert result.exit_code == 2 and "riskc.db is empty (0 bytes)" in result.output
    Store.open(state, new=True).close()  # a schema but no account (the empty file kept aside)
    result = riskc(config, "status")
    assert result.exit_code == 1 and "holds no account state yet" in result.output


def test_status_shows_everything(config: Path, store: Store) -> None:
    populate(store)
    result = riskc(config, "status")
    assert result.exit_code == 0, result.output
    out = result.output
    assert f"Account {ACCOUNT}" in out
    assert "whole account (daily_loss): ends in 1h 12m" in out and re.search(r"\d\d:\d\d:\d\d C[SD]T", out)
    assert "CL only (symbol_block): until manual unlock" in out
    assert "(auth_guard): while not account.can_trade" in out
    assert "realized -$21.48 (gross -$20.00, fees $1.48), 2 trade(s); balance $48,980.00" in out
    assert "MNQ long 2 @ 21000.25  stops 1/2" in out
    assert f"timer stop_required:{MNQ}: running 12s, ends in" in out
    assert "daily_loss: flatten account → confirmed" in out and "daily loss reached" in out
    assert "stop_required: close MNQ → failed (broker timeout)" in out and "p.stop_coverage = 1 < p.qty = 2" in out
    assert "audit log:" in out


def test_status_json(config: Path, store: Store) -> None:
    populate(store)
    result = riskc(config, "status", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document) == {"state", "now", "daemon", "pending", "policies", "audit_head", "accounts", "groups"}
    assert document["daemon"]["alive"] is False and document["daemon"]["text"].startswith("no daemon has run")
    assert document["audit_head"]["seq"] == len(store.audit_records())
    [account] = document["accounts"]
    assert set(account) == {
        "id",
        "timezone",
        "clock_from",
        "trading_state",
        "lockouts",
        "day",
        "book",
        "timers",
        "recent_actions",
    }
    assert account["trading_state"]["state"] == "halted"  # an account lockout is among them
    assert account["id"] == ACCOUNT and account["timezone"] == "America/Chicago"
    assert [(lock["rule"], lock["condition"]) for lock in account["lockouts"]] == [
        ("daily_loss", None),
        ("symbol_block", "manual"),
        ("auth_guard", "while:not account.can_trade"),
    ]
    assert account["lockouts"][2]["ends"] == "while not account.can_trade"
    assert 4300 < account["lockouts"][0]["remaining_seconds"] <= 4350
    day = account["day"]
    assert (day["realized_pnl"], day["gross_pnl"], day["fees"], day["trades"]) == ("-21.48", "-20.00", "1.48", 2)
    assert day["balance"] == "48980.00"
    [position] = account["book"]["positions"]
    assert (position["symbol"], position["side"], position["qty"], position["stop_coverage"]) == ("MNQ", "long", 2, 1)
    assert [t["key"] for t in account["timers"]] == [f"stop_required:{MNQ}"]
    actions = account["recent_actions"]
    assert [(a["rule"], a["action"], a["state"]) for a in actions] == [
        ("stop_required", "close", "failed"),
        ("daily_loss", "flatten", "confirmed"),
    ]
    assert actions[0]["reason"] == "p.stop_coverage = 1 < p.qty = 2" and actions[0]["error"] == "broker timeout"


def test_status_without_a_day_shows_the_latest_trading_day_with_activity_and_says_so(
    config: Path, store: Store
) -> None:
    """After the demo or a replay, today's trading day is empty: `status` shows the day that was
    traded, says which, and lists that day's lockouts that are over."""
    then = dt.datetime(2025, 10, 29, 15, 0, tzinfo=dt.UTC)
    store.record_trade(ACCOUNT, 1, "2025-10-29", MNQ, then, 1, 1, "21000", "-50.00", "0.37")
    store.add_lockout(ACCOUNT, "daily_loss", "daily loss reached", then, until=then + dt.timedelta(hours=7))
    store.save_book(ACCOUNT, "[]", "[]", then)
    result = riskc(config, "status")
    assert "day 2025-10-29, the latest trading day with activity (none on today's" in result.output
    assert "realized -$50.37" in result.output and "1 trade(s)" in result.output
    assert "locked out 2025-10-29 10:00:00 CDT – 2025-10-29 17:00:00 CDT (whole account, daily_loss; over)" in (
        result.output
    )
    assert "not locked out" in result.output  # now
    document = json.loads(riskc(config, "status", "--json").stdout)
    assert document["accounts"][0]["day"]["chosen"] == "latest_with_activity"


def test_status_points_at_the_day_the_daemon_last_saw(config: Path, store: Store) -> None:
    then = dt.datetime(2025, 10, 29, 15, 0, tzinfo=dt.UTC)
    store.record_trade(ACCOUNT, 1, "2025-10-29", MNQ, then, 1, 1, "21000", "-50.00", "0.37")
    store.save_book(ACCOUNT, "[]", "[]", then)
    result = riskc(config, "status", "--day", "2099-01-01")  # a holiday: nothing traded, nothing locked
    assert "0 trade(s)" in result.output
    assert "the daemon last saw this account on trading day 2025-10-29: riskc status --day 2025-10-29" in result.output
    document = json.loads(riskc(config, "status", "--json", "--day", "2025-10-29").stdout)
    day = document["accounts"][0]["day"]
    assert (day["trading_day"], day["realized_pnl"], day["trades"], day["last_seen_trading_day"]) == (
        "2025-10-29",
        "-50.37",
        1,
        "2025-10-29",
    )


def test_status_lists_every_account_or_the_one_asked_for(config: Path, store: Store) -> None:
    populate(store)
    store.add_lockout(OTHER, "trade_frequency", "too many", now(), until=now() + dt.timedelta(minutes=5))
    every = json.loads(riskc(config, "status", "--json").stdout)
    assert [a["id"] for a in every["accounts"]] == [OTHER, ACCOUNT]
    one = json.loads(riskc(config, "status", "--json", "--account", str(OTHER)).stdout)
    assert [a["id"] for a in one["accounts"]] == [OTHER]
    assert riskc(config, "status", "--account", "nobody").exit_code == 2


def test_status_reads_while_the_daemon_holds_a_write_lock(config: Path, store: Store) -> None:
    populate(store)
    with store._write():  # BEGIN IMMEDIATE, or the desk's writer lock
        result = riskc(config, "status", "--json")
    assert result.exit_code == 0, result.output


def test_status_with_a_broken_config(tmp_path: Path) -> None:
    bad = tmp_path / "riskc.yaml"
    bad.write_text("accounts:\n  - id: 1\n    policies: [nowhere.risk]\n")
    result = riskc(bad, "status")
    assert result.exit_code == 2
    assert f"{bad}:3:16: no such policy file or directory" in result.output and "Traceback" not in result.output


def test_state_option_overrides_the_config(config: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.db"
    with Store.open(other) as store:
        store.add_lockout(OTHER, "x", "y", now(), until=now() + dt.timedelta(hours=1))
    result = riskc(config, "status", "--state", str(other), "--json")
    assert [a["id"] for a in json.loads(result.stdout)["accounts"]] == [OTHER]


# -- lock ----------------------------------------------------------------------------------


def test_lock_for_a_duration(config: Path, state: Path) -> None:
    before = now()
    result = riskc(config, "lock", "--for", "2h", "--reason", "tilted after two losses")
    assert result.exit_code == 0, result.output
    assert f"Locked account {ACCOUNT} until" in result.output and re.search(r"until \S+ C[SD]T", result.output)
    assert "cannot be undone before it ends" in result.output
    with Store.open(state) as store:
        [lock] = store.active_lockouts(ACCOUNT, now())
        payloads = audit_payloads(store, "lockout")
    assert (lock.origin, lock.rule, lock.scope) == ("personal", "personal", "account")
    assert lock.reason == "tilted after two losses"
    assert before + dt.timedelta(hours=2) <= lock.until <= now() + dt.timedelta(hours=2)
    assert payloads[0]["origin"] == "personal"


def test_lock_until_a_clock_time_is_its_next_occurrence_in_the_policy_zone(config: Path, state: Path) -> None:
    result = riskc(config, "lock", "--until", "17:00", "--symbol", "mnq")
    assert result.exit_code == 0, result.output
    assert f"Locked MNQ on account {ACCOUNT} until" in result.output
    with Store.open(state) as store:
        [lock] = store.active_lockouts(ACCOUNT, now())
    local = lock.until.astimezone(ZoneInfo("America/Chicago"))
    assert (local.hour, local.minute, lock.symbol) == (17, 0, "MNQ")
    assert now() < lock.until <= now() + dt.timedelta(hours=25)


def test_lock_until_with_another_timezone(config: Path, state: Path) -> None:
    assert riskc(config, "lock", "--until", "09:30", "--tz", "Europe/London").exit_code == 0
    with Store.open(state) as store:
        [lock] = store.active_lockouts(ACCOUNT, now())
    assert lock.until.astimezone(ZoneInfo("Europe/London")).strftime("%H:%M") == "09:30"
    assert riskc(config, "lock", "--until", "09:30", "--tz", "Mars/Olympus").exit_code == 2


def test_lock_until_a_date_and_time(config: Path, state: Path) -> None:
    target = (
        (now() + dt.timedelta(days=2))
        .astimezone(ZoneInfo("America/Chicago"))
        .replace(hour=8, minute=15, second=0, microsecond=0)
    )
    result = riskc(config, "lock", "--until", target.strftime("%Y-%m-%d %H:%M"))
    assert result.exit_code == 0, result.output
    with Store.open(state) as store:
        [lock] = store.active_lockouts(ACCOUNT, now())
    assert lock.until == target


def test_lock_that_is_already_over_is_refused(config: Path, state: Path) -> None:
    result = riskc(config, "lock", "--until", "2020-01-01 10:00")
    assert result.exit_code == 1 and "already past; nothing was locked" in result.output
    with Store.open(state) as store:
        assert store.active_lockouts(None, now()) == [] and audit_payloads(store, "lockout") == []


def test_lock_longer_than_a_week_needs_yes(config: Path, state: Path) -> None:
    result = riskc(config, "lock", "--for", "8d")
    assert result.exit_code == 1 and "longer than 7 days" in result.output and "--yes" in result.output
    with Store.open(state) as store:
        assert store.active_lockouts(None, now()) == []
    assert riskc(config, "lock", "--for", "8d", "--yes").exit_code == 0


@pytest.mark.parametrize("args", [[], ["--for", "1h", "--until", "17:00"], ["--for", "soon"]])
def test_lock_usage_errors(config: Path, args: list[str]) -> None:
    result = riskc(config, "lock", *args)
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_a_shorter_lock_changes_nothing(config: Path, state: Path) -> None:
    assert riskc(config, "lock", "--for", "3h").exit_code == 0
    result = riskc(config, "lock", "--for", "1h")
    assert result.exit_code == 0 and "already locked until" in result.output and "nothing changed" in result.output
    with Store.open(state) as store:
        [lock] = store.active_lockouts(ACCOUNT, now())
    assert lock.until > now() + dt.timedelta(hours=2, minutes=59)


def test_lock_needs_to_know_the_account(tmp_path: Path, state: Path) -> None:
    config = tmp_path / "two.yaml"
    policy = REPO / "policies" / "topstep-50k.risk"
    config.write_text(
        f"state: {state}\naccounts:\n  - id: 1\n    policies: [{policy}]\n  - id: 2\n    policies: [{policy}]\n"
    )
    result = riskc(config, "lock", "--for", "1h")
    assert result.exit_code == 2 and "more than one account: pass --account with one of 1, 2" in result.output
    assert riskc(config, "lock", "--for", "1h", "--account", "2").exit_code == 0
    nameless = tmp_path / "nameless.yaml"
    nameless.write_text(f"state: {tmp_path / 'fresh.db'}\naccounts:\n  - policies: [{policy}]\n")
    result = riskc(nameless, "lock", "--for", "1h")
    assert result.exit_code == 2 and "pass --account ID" in result.output


# -- unlock --------------------------------------------------------------------------------


@pytest.fixture
def locked(config: Path, state: Path) -> int:
    assert riskc(config, "lock", "--for", "2h", "--reason", "tilted").exit_code == 0
    with Store.open(state) as store:
        store.set_admin_passphrase(PASSPHRASE, now())
        return store.active_lockouts(ACCOUNT, now())[0].id


def test_unlock_of_a_personal_lockout_needs_the_passphrase_and_is_audited(
    config: Path, state: Path, locked: int
) -> None:
    result = riskc(
        config,
        "unlock",
        "--id",
        str(locked),
        "--reason",
        "locked 2 days by mistake",
        "--by",
        "bob",
        input=PASSPHRASE + "\n",
    )
    assert result.exit_code == 0, result.output
    assert f"Released lockout #{locked} (personal, account {ACCOUNT}: ends in 1h 59m" in result.output
    assert PASSPHRASE not in result.output
    with Store.open(state) as store:
        assert store.active_lockouts(ACCOUNT, now()) == []
        [unlock] = audit_payloads(store, "unlock")
    assert (unlock["by"], unlock["reason"], unlock["outcome"], unlock["admin"]) == (
        "bob",
        "locked 2 days by mistake",
        "released",
        True,
    )


def test_wrong_passphrase_releases_nothing_and_is_audited(config: Path, state: Path, locked: int) -> None:
    result = riskc(
        config, "unlock", "--all", "--reason", "let me trade", "--by", "trader", env={"RISKC_ADMIN_PASSPHRASE": "guess"}
    )
    assert result.exit_code == 1 and "wrong passphrase; nothing was released" in result.output
    with Store.open(state) as store:
        assert [lock.id for lock in store.active_lockouts(ACCOUNT, now())] == [locked]
        [unlock] = audit_payloads(store, "unlock")
    assert (unlock["by"], unlock["reason"], unlock["outcome"]) == ("trader", "let me trade", "denied")


def test_unlock_all(config: Path, state: Path, locked: int) -> None:
    with Store.open(state) as store:
        store.add_lockout(ACCOUNT, "trailing_drawdown", "floor hit", now(), condition="manual")
    result = riskc(
        config, "unlock", "--all", "--reason", "new evaluation account", env={"RISKC_ADMIN_PASSPHRASE": PASSPHRASE}
    )
    assert result.exit_code == 0, result.output
    assert result.output.count("Released lockout") == 2 and "until manual unlock" in result.output
    with Store.open(state) as store:
        assert store.active_lockouts(ACCOUNT, now()) == []


def test_unlock_without_an_admin_passphrase(config: Path, state: Path) -> None:
    assert riskc(config, "lock", "--for", "1h").exit_code == 0
    result = riskc(config, "unlock", "--all", "--reason", "x", env={"RISKC_ADMIN_PASSPHRASE": "anything"})
    assert result.exit_code == 1 and "no admin passphrase is set" in result.output
    with Store.open(state) as store:
        assert len(store.active_lockouts(ACCOUNT, now())) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reason", "x"], "exactly one of --id N and --all"),
        (["--id", "1", "--all", "--reason", "x"], "exactly one of --id N and --all"),
        (["--id", "99", "--reason", "x"], "no lockout #99"),
        (["--all"], "Missing option '--reason'"),
        (["--all", "--reason", " "], "--reason cannot be empty"),
    ],
)
def test_unlock_usage_errors(config: Path, locked: int, args: list[str], message: str) -> None:
    result = riskc(config, "unlock", *args, env={"RISKC_ADMIN_PASSPHRASE": PASSPHRASE})
    assert result.exit_code == 2 and message in result.output


# -- admin set-passphrase ----------------------------------------------------------------------


def test_set_then_change_the_passphrase(config: Path, state: Path) -> None:
    result = riskc(config, "admin", "set-passphrase", "--by", "alice", input=f"{PASSPHRASE}\n{PASSPHRASE}\n")
    assert result.exit_code == 0 and "admin passphrase set" in result.output and PASSPHRASE not in result.output
    result = riskc(config, "admin", "set-passphrase", input=f"{PASSPHRASE}\nsecond one!\nsecond one!\n")
    assert result.exit_code == 0 and "admin passphrase changed" in result.output
    with Store.open(state) as store:
        assert store.check_admin_passphrase("second one!")
        assert [p["by"] for p in audit_payloads(store, "admin")][0] == "alice"


def test_changing_it_needs_the_current_one(config: Path, state: Path) -> None:
    riskc(config, "admin", "set-passphrase", input=f"{PASSPHRASE}\n{PASSPHRASE}\n")
    result = riskc(config, "admin", "set-passphrase", input="not it\nmine now!\nmine now!\n")
    assert result.exit_code == 1 and "wrong current passphrase; nothing changed" in result.output
    with Store.open(state) as store:
        assert store.check_admin_passphrase(PASSPHRASE) and not store.check_admin_passphrase("mine now!")
        assert [p["outcome"] for p in audit_payloads(store, "admin")] == ["set", "denied"]


def test_the_confirmation_must_match_and_short_ones_are_refused(config: Path, state: Path) -> None:
    result = riskc(config, "admin", "set-passphrase", input=f"{PASSPHRASE}\ntypo\n{PASSPHRASE}\n{PASSPHRASE}\n")
    assert result.exit_code == 0 and "do not match" in result.output
    fresh = (
        state.replace("search_path%3D", "search_path%3Dfresh")
        if isinstance(state, str)
        else state.with_name("fresh.db")
    )
    result = CliRunner().invoke(
        main, ["admin", "set-passphrase", "--config", str(config), "--state", str(fresh)], input="short\nshort\n"
    )
    assert result.exit_code == 1 and "at least 8 characters" in result.output
    with Store.open(fresh) as store:
        assert not store.has_admin_passphrase()


# -- how times are shown -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(45, "45s"), (245, "4m 05s"), (4350, "1h 12m"), (3 * 86400 + 7200 + 59, "3d 2h"), (-5, "0s")],
)
def test_span_text(seconds: int, text: str) -> None:
    from riskc.engine.cli.statefile import span_text

    assert span_text(dt.timedelta(seconds=seconds)) == text


@pytest.mark.parametrize(
    ("until", "condition", "text"),
    [
        (dt.datetime(2026, 3, 10, 22, 0, tzinfo=dt.UTC), None, "ends in 1h 30m, 17:00:00 CDT"),
        (None, "manual", "until manual unlock"),
        (None, "while:auth_guard", "while the condition of auth_guard holds"),
        (None, "while:not account.can_trade", "while not account.can_trade"),
    ],
)
def test_lockout_ends(until: dt.datetime | None, condition: str | None, text: str) -> None:
    from riskc.engine.cli.statefile import lockout_ends
    from riskc.engine.store import Lockout

    at = dt.datetime(2026, 3, 10, 20, 30, tzinfo=dt.UTC)
    lockout = Lockout(1, "account", 1, None, "r", "why", at, until, condition, "rule")
    assert lockout_ends(lockout, ZoneInfo("America/Chicago"), at) == text


def test_wrong_passphrases_slow_the_next_attempt_down_and_say_so(
    config: Path, state: Path, locked: int, monkeypatch
) -> None:
    from riskc.engine.cli import unlock_cmd

    waits: list[float] = []
    monkeypatch.setattr(unlock_cmd, "_sleep", waits.append)
    for _ in range(4):
        result = riskc(config, "unlock", "--all", "--reason", "x", env={"RISKC_ADMIN_PASSPHRASE": "guess"})
        assert result.exit_code == 1
    assert "3 wrong passphrase(s) in the last 15 minutes: waiting" in result.output
    assert len(waits) == 3 and waits == sorted(waits) and 4 < waits[-1] <= 8  # 2 s, 4 s, 8 s after the last
    result = riskc(config, "unlock", "--all", "--reason", "x", env={"RISKC_ADMIN_PASSPHRASE": PASSPHRASE})
    assert result.exit_code == 0 and len(waits) == 4  # the right one waits too: no way around the backoff


def test_passphrase_backoff_schedule() -> None:
    from riskc.engine.cli.statefile import passphrase_backoff

    t = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.UTC)
    assert passphrase_backoff([], t) == dt.timedelta(0)
    assert passphrase_backoff([t], t) == dt.timedelta(seconds=2)
    assert passphrase_backoff([t] * 3, t + dt.timedelta(seconds=3)) == dt.timedelta(seconds=5)
    assert passphrase_backoff([t] * 30, t) == dt.timedelta(minutes=5)
    assert passphrase_backoff([t], t + dt.timedelta(seconds=10)) == dt.timedelta(0)
