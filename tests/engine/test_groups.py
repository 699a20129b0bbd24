"""Account groups (PRODUCT.md §9): `groups:` in riskc.yaml, group policies over several accounts,
`riskc replay --config` over a recording of several accounts.

The replay goldens are in tests/fixtures/groups/; to rewrite them after a deliberate change:

    RISKC_UPDATE_GOLDEN=1 python -m pytest tests/engine/test_groups.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from group_session import FIXTURE, MNQ, render
from hypothesis import given, settings
from hypothesis import strategies as st

from riskc.engine.cli.main import main
from riskc.engine.core.events import Fill
from riskc.engine.core.snapshot import Event
from riskc.engine.daemon.config import ConfigError, load_config
from riskc.engine.enforce.group import GroupGuard
from riskc.engine.runner import Engine, PolicySet
from riskc.engine.store import Store

GROUPS = FIXTURE.parent
CONFIG = GROUPS / "riskc.yaml"
UPDATE = os.environ.get("RISKC_UPDATE_GOLDEN") == "1"
A, B = 1001, 1002
GROUP_RULE = "copiers.group_daily_loss"


def replay(*args: str) -> Result:
    return CliRunner().invoke(main, ["replay", *args])


def _records(result: Result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def _golden(name: str, actual: str) -> None:
    golden = GROUPS / name
    if UPDATE:
        golden.write_text(actual, encoding="utf-8")
        return
    assert golden.exists(), f"{name} is missing; run with RISKC_UPDATE_GOLDEN=1 to create it"
    assert actual == golden.read_text(encoding="utf-8")


def test_the_recording_is_what_its_builder_writes():
    assert FIXTURE.read_text(encoding="utf-8") == render()


def test_the_example_is_the_same_session_and_shows_the_group_breach():
    example = GROUPS.parents[2] / "examples" / "groups"
    assert (example / "two-accounts.jsonl").read_text(encoding="utf-8") == render()
    records = _records(replay(str(example / "two-accounts.jsonl"), "--config", str(example / "riskc.yaml"), "--json"))
    assert {(r["account"], r["action"]) for r in records if r["rule"] == GROUP_RULE} >= {
        (A, "flatten"),
        (B, "flatten"),
        (A, "lockout"),
        (B, "lockout"),
    }


def test_neither_account_breaches_its_own_policy_alone(tmp_path: Path):
    for account in ("COPY-A", "COPY-B"):
        config = _write_config(tmp_path, "  []\n")
        lines = config.read_text(encoding="utf-8").splitlines()
        config.write_text("\n".join(x for x in lines if "COPY-" not in x or account in x) + "\n", encoding="utf-8")
        records = _records(replay(str(FIXTURE), "--config", str(config), "--json"))
        assert records == [], account


def test_the_group_breach_flattens_and_locks_both_accounts(tmp_path: Path):
    state = tmp_path / "state.db"
    result = replay(str(FIXTURE), "--config", str(CONFIG), "--json", "--state", str(state))
    records = _records(result)
    by_account = {
        account: [(r["rule"], r["action"], r.get("state")) for r in records if r["account"] == account]
        for account in (A, B)
    }
    for account in (A, B):
        assert by_account[account] == [
            (GROUP_RULE, "flatten", None),
            (GROUP_RULE, "lockout", None),
            (GROUP_RULE, "trading_state", "halted"),
            (GROUP_RULE, "alert", None),
        ]
    assert all(r["ts"] == "2026-01-14T14:31:00.200000+00:00" for r in records)  # B's sale: the group's event
    assert all("group copiers" in r["reason"] for r in records)
    store = Store.open(state)
    try:
        now = dt.datetime(2026, 1, 14, 14, 35, tzinfo=dt.UTC)
        for account in (A, B):
            [lockout] = store.active_lockouts(account, now)
            assert (lockout.rule, lockout.until) == (GROUP_RULE, dt.datetime(2026, 1, 14, 23, 0, tzinfo=dt.UTC))
            closes = [a for a in store.recent_actions(account, limit=50) if a.action.get("call") == "close"]
            assert [(c.action["contract_id"], c.state) for c in closes] == [(MNQ, "confirmed")]
            assert all(c.key.split("|")[1].startswith(f"{account}:") for c in closes)  # the account's own keys
    finally:
        store.close()


def test_group_replay_json_golden():
    result = replay(str(FIXTURE), "--config", str(CONFIG), "--json")
    summary = [line for line in result.stderr.splitlines() if line.startswith('{"summary"')]
    _golden("two-accounts.expected.jsonl", result.stdout + "".join(s + "\n" for s in summary))


def test_group_replay_timeline_golden():
    result = replay(str(FIXTURE), "--config", str(CONFIG), "--group", "copiers")
    assert result.exit_code == 0, result.output
    _golden("two-accounts.expected.txt", result.stdout)


def test_a_group_lockout_holds_across_a_restart(tmp_path: Path):
    state = tmp_path / "state.db"
    assert replay(str(FIXTURE), "--config", str(CONFIG), "--json", "--state", str(state)).exit_code == 0
    policies, _, _ = PolicySet.from_paths([GROUPS / "account.risk"])
    store = Store.open(state)
    try:
        engine = Engine(policies, store, account_id=B)  # the daemon restarted
        effects = engine.on_tick(dt.datetime(2026, 1, 14, 15, 0, tzinfo=dt.UTC))
        [change] = [r for r in effects.records if r["action"] == "trading_state"]
        assert change["state"] == "halted" and change["rule"] == GROUP_RULE
        assert "group copiers" in change["reason"]
        after = engine.on_tick(dt.datetime(2026, 1, 14, 23, 0, 1, tzinfo=dt.UTC))  # the next trading day
        assert [r["state"] for r in after.records if r["action"] == "trading_state"] == ["active"]
    finally:
        store.close()


def test_an_unknown_group_is_a_usage_error():
    result = replay(str(FIXTURE), "--config", str(CONFIG), "--group", "copier")
    assert result.exit_code == 2
    assert "no group `copier` (groups: copiers)" in result.stderr


def test_policy_and_config_together_is_a_usage_error():
    result = replay(str(FIXTURE), "--config", str(CONFIG), "--policy", str(GROUPS / "account.risk"))
    assert result.exit_code == 2
    assert replay(str(FIXTURE), "--group", "copiers", "--policy", str(GROUPS / "account.risk")).exit_code == 2


def test_a_group_policy_given_as_an_account_policy_is_refused():
    result = replay(str(FIXTURE), "--policy", str(GROUPS / "group.risk"))
    assert result.exit_code == 1
    assert "risk_scope_error" in result.stderr and "`Copy desk` is a group policy" in result.stderr


def test_an_account_policy_listed_under_a_group_is_refused(tmp_path: Path):
    config = _write_config(tmp_path, "  - {name: copiers, accounts: [COPY-A, COPY-B], policies: account.risk}\n")
    result = replay(str(FIXTURE), "--config", str(config))
    assert result.exit_code == 1
    assert "is an account policy (scope account), given as a group's" in result.stderr


# -- config ----------------------------------------------------------------------------------


def _write_config(tmp_path: Path, groups: str) -> Path:
    for name in ("account.risk", "group.risk", "two-accounts.jsonl"):
        (tmp_path / name).write_text((GROUPS / name).read_text(encoding="utf-8"), encoding="utf-8")
    text = CONFIG.read_text(encoding="utf-8").split("groups:")[0] + "groups:\n" + groups
    path = tmp_path / "riskc.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_config_reads_groups(tmp_path: Path):
    config = load_config(CONFIG)
    [group] = config.groups
    assert group.name == "copiers"
    assert [a.id for a in config.members(group)] == [A, B]  # one by name, one by id
    assert group.policies == [GROUPS / "group.risk"]


def test_config_refuses_an_unknown_account_in_a_group(tmp_path: Path):
    path = _write_config(tmp_path, "  - name: copiers\n    accounts: [COPY-B, COPYA]\n    policies: group.risk\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(i).split(": ", 1)[1] for i in caught.value.issues] == [
        "group copiers: no account `COPYA` under `accounts:`; did you mean `COPY-A`?"
    ]
    assert caught.value.issues[0].line == 7 and caught.value.issues[0].col == 24  # at `COPYA`


def test_config_refuses_repeated_groups_and_accounts(tmp_path: Path):
    groups = (
        "  - {name: copiers, accounts: [COPY-A, 1001], policies: group.risk}\n"
        "  - {name: copiers, accounts: [7], policies: missing.risk}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(_write_config(tmp_path, groups))
    messages = [(i.line, i.message) for i in caught.value.issues]
    assert (6, "group copiers lists `1001` twice") in messages
    assert (7, "group copiers is listed twice") in messages
    assert any(line == 7 and "no account `7`" in m for line, m in messages)
    assert any(line == 7 and "no such policy file" in m for line, m in messages)


# -- the group snapshot ----------------------------------------------------------------------

T0 = dt.datetime(2026, 1, 14, 15, 0, tzinfo=dt.UTC)
money = st.decimals(min_value=-500, max_value=500, places=2)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), money, st.decimals(0, 5, places=2)), max_size=12))
def test_group_sums_are_the_members_exact_sums(fills):
    policies, _, _ = PolicySet.from_paths([GROUPS / "account.risk"])
    group_policies, _, _ = PolicySet.from_paths([GROUPS / "group.risk"], scope="group")
    scratch = tempfile.TemporaryDirectory()
    store = Store.open(Path(scratch.name) / "state.db", synchronous="OFF")
    try:
        engines = [Engine(policies, store, account_id=1000 + i) for i in range(3)]
        for engine in engines:
            engine.on_tick(T0)
        for n, (member, pnl, fees) in enumerate(fills):
            engine = engines[member]
            at = T0 + dt.timedelta(seconds=n + 1)
            fill = Fill(at, f"t{n}", MNQ, "sell", 1, Decimal(21000), pnl, fees, account_id=engine.book.account.id)
            engine.book.apply(fill)
        guard = GroupGuard("g", group_policies, engines)
        group = guard.snapshot(Event(kind="clock"), T0 + dt.timedelta(minutes=1)).group
        assert group.realized_pnl == sum((e.book.day.realized for e in engines), Decimal(0))
        assert group.realized_pnl == sum((pnl - fees for _, pnl, fees in fills), Decimal(0))
        assert group.trades == len(fills)
        assert [a.id for a in group.accounts] == [1000, 1001, 1002]
    finally:
        store.close()
        scratch.cleanup()


# -- the daemon ------------------------------------------------------------------------------


async def test_sim_daemon_with_two_accounts_enforces_the_group(tmp_path: Path) -> None:
    """`riskc run` on the simulated broker: each account's loop plays its part of the one
    recording, the group sees both books, and its flatten and lockout reach each account's own
    port (closes confirmed under the account's own keys)."""
    import asyncio

    from riskc.engine.daemon.daemon import Daemon
    from riskc.engine.daemon.loops import build_loops

    config = _write_config(tmp_path, "  - {name: copiers, accounts: [COPY-A, COPY-B], policies: group.risk}\n")
    text = config.read_text(encoding="utf-8").replace("web: false\n", "")
    text += f"state: {tmp_path / 'state.db'}\nlog: {tmp_path / 'log.jsonl'}\nalerts: {{console: false}}\nweb: false\n"
    config.write_text(text, encoding="utf-8")
    daemon = Daemon(load_config(config), live_view=False, max_seconds=20, demo=True)
    await asyncio.wait_for(daemon.run(lambda d: build_loops(d, None)), 40)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    group_actions = [(r["account"], r["action"]) for r in log if r.get("kind") == "action" and r["rule"] == GROUP_RULE]
    for account in (A, B):
        assert (account, "flatten") in group_actions and (account, "lockout") in group_actions
    with Store.open(tmp_path / "state.db") as store:
        now = dt.datetime(2026, 1, 14, 14, 35, tzinfo=dt.UTC)
        for account in (A, B):
            assert [lo.rule for lo in store.active_lockouts(account, now)] == [GROUP_RULE]
            closes = [a for a in store.recent_actions(account) if a.action.get("call") == "close"]
            assert [(c.state, c.key.split("|")[1]) for c in closes] == [("confirmed", f"{account}:{MNQ}")]
        assert store.verify_audit().ok
    for lp in daemon.loops:
        assert not lp.engine.book.positions  # the sim's fills of the closes reached each book
        assert str(lp.engine.trading.state) == "halted"
    from riskc.engine.daemon.board.status import status_json

    status = status_json(daemon)  # the board and /api/status show the group as its policies see it
    [group] = status["groups"]
    realized = sum(Decimal(a["day"]["realized_pnl"]) for a in status["accounts"])
    assert group["name"] == "copiers" and Decimal(group["realized_pnl"]) == realized <= Decimal(-1500)
    assert [(a["id"], a["trading_state"]) for a in group["accounts"]] == [(A, "halted"), (B, "halted")]
    assert group["open_contracts"] == 0 and group["policy"]["hash"] == daemon.loops[0].groups[0].policies.digest
    shown = CliRunner().invoke(main, ["status", "--config", str(config), "--json"])  # from the state file
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.output)
    [stored] = document["groups"]
    assert stored["name"] == "copiers" and Decimal(stored["realized_pnl"]) == realized
    states = [(a["id"], a["trading_state"]["state"]) for a in document["accounts"]]  # now: the 17:00 lockout is over
    assert [(a["id"], a["trading_state"]) for a in stored["accounts"]] == states and len(states) == 2
    text = CliRunner().invoke(main, ["status", "--config", str(config)]).output
    assert f"Group copiers  realized today -${-realized:,.2f}" in text


async def test_a_group_policy_edit_is_hot_reloaded(tmp_path: Path) -> None:
    """A broken edit of the group policy is refused (the last good set stays); a good one is
    swapped in while the session plays, and acts on both accounts."""
    import asyncio
    import time

    from riskc.engine.daemon.daemon import Daemon
    from riskc.engine.daemon.loops import build_loops
    from riskc.engine.daemon.reload import watch_and_reload

    config = _write_config(tmp_path, "  - {name: copiers, accounts: [COPY-A, COPY-B], policies: group.risk}\n")
    group_policy = tmp_path / "group.risk"
    group_policy.write_text(group_policy.read_text(encoding="utf-8").replace("-$1,500", "-$5,000"), encoding="utf-8")
    text = config.read_text(encoding="utf-8").replace("speed: 0", "speed: 6").replace("web: false\n", "")
    text += f"state: {tmp_path / 'state.db'}\nlog: {tmp_path / 'log.jsonl'}\nalerts: {{console: false}}\nweb: false\n"
    config.write_text(text, encoding="utf-8")
    daemon = Daemon(load_config(config), live_view=False, max_seconds=60, demo=True)
    task = asyncio.create_task(daemon.run(lambda d: build_loops(d, None), (watch_and_reload,)))

    def logged(kind: str) -> list[dict]:
        path = tmp_path / "log.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        return [r for r in map(json.loads, lines) if r.get("kind") == kind]

    async def until(predicate, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "condition not reached in time"
            await asyncio.sleep(0.05)

    await until(lambda: daemon.loops and daemon.loops[0].activity.messages > 3)
    await asyncio.sleep(0.5)  # the watcher is up
    guard = daemon.loops[0].groups[0]
    first = guard.policies.digest
    good = group_policy.read_text(encoding="utf-8").replace("-$5,000", "-$1,500")
    group_policy.write_text(good.replace("group.realized_pnl", "group.realised_pnl"), encoding="utf-8")
    await until(lambda: any(r.get("group") == "copiers" and r["outcome"] == "rejected" for r in logged("reload")))
    assert guard.policies.digest == first
    group_policy.write_text(good, encoding="utf-8")
    await until(lambda: guard.policies.digest != first)
    await asyncio.wait_for(task, 70)
    flattened = {r["account"] for r in logged("action") if r["rule"] == GROUP_RULE and r["action"] == "flatten"}
    assert flattened == {A, B}


def test_a_message_of_several_accounts_is_split_by_account():
    from riskc.engine.adapters.projectx.intake import Message
    from riskc.engine.daemon.daemon import _for_account
    from riskc.engine.sim.group_replay import split_by_account

    ts = dt.datetime(2026, 1, 14, 15, 0, tzinfo=dt.UTC)
    a = {"action": 1, "data": {"accountId": A, "contractId": MNQ, "size": 1}}
    b = {"accountId": B, "contractId": MNQ, "size": 2}
    anyone = {"contractId": MNQ, "size": 3}
    message = Message(ts, "user", "GatewayUserPosition", [[a, b], anyone])
    assert [(owner, part.args) for owner, _, part in split_by_account(message)] == [
        (A, [[a]]),
        (B, [[b]]),
        (None, [[anyone]]),
    ]
    assert _for_account(message, B).args == [[b, anyone]]
    assert _for_account(Message(ts, "user", "GatewayUserPosition", [a]), B) is None
    quote = Message(ts, "market", "GatewayQuote", [MNQ, {"lastPrice": 1}])
    assert split_by_account(quote) == [(None, None, quote)]


async def test_a_group_edit_waits_under_next_trading_day_and_reload_now_applies_it(tmp_path: Path) -> None:
    """`edits: next_trading_day` holds a group's policies as it holds an account's: an edit made
    while riskc was down is staged (restarting is no way around the wait) under `group copiers`,
    listed by `riskc reload`, and `riskc reload --now` (passphrase) makes it active at the next
    start's first tick, where it acts on both accounts."""
    import asyncio

    from riskc.engine.daemon.daemon import Daemon
    from riskc.engine.daemon.loops import build_loops
    from riskc.engine.store import policy_sets

    config = _write_config(tmp_path, "  - {name: copiers, accounts: [COPY-A, COPY-B], policies: group.risk}\n")
    group_policy = tmp_path / "group.risk"
    tight = group_policy.read_text(encoding="utf-8")
    group_policy.write_text(tight.replace("-$1,500", "-$5,000"), encoding="utf-8")
    text = config.read_text(encoding="utf-8").replace("web: false\n", "")
    text += f"state: {tmp_path / 'state.db'}\nlog: {tmp_path / 'log.jsonl'}\nalerts: {{console: false}}\nweb: false\n"
    config.write_text(text + "edits: next_trading_day\n", encoding="utf-8")

    async def run() -> Daemon:
        daemon = Daemon(load_config(config), live_view=False, max_seconds=20, demo=True)
        await asyncio.wait_for(daemon.run(lambda d: build_loops(d, None)), 40)
        return daemon

    def group_flattens() -> set[int]:
        lines = (tmp_path / "log.jsonl").read_text(encoding="utf-8").splitlines()
        return {
            r["account"]
            for r in map(json.loads, lines)
            if r.get("kind") == "action" and r["rule"] == GROUP_RULE and r["action"] == "flatten"
        }

    committed = (await run()).loops[0].groups[0].policies.digest  # the loose limit: no group breach
    assert group_flattens() == set()
    group_policy.write_text(tight, encoding="utf-8")  # tightened while riskc is down
    second = (await run()).loops[0].groups[0]
    assert second.policies.digest == committed and group_flattens() == set()  # staged, not in force
    assert second.commitment.pending() is not None
    listing = CliRunner().invoke(main, ["reload", "--config", str(config)])
    assert listing.exit_code == 0 and "group copiers: edit" in listing.output
    with Store.open(tmp_path / "state.db") as store:
        store.set_admin_passphrase("correct horse battery", dt.datetime.now(dt.UTC))
    applied = CliRunner().invoke(
        main,
        ["reload", "--config", str(config), "--now", "--reason", "desk approved"],
        env={"RISKC_ADMIN_PASSPHRASE": "correct horse battery"},
    )
    assert applied.exit_code == 0, applied.output
    third = (await run()).loops[0].groups[0]
    assert third.policies.digest != committed and third.commitment.pending() is None
    assert group_flattens() == {A, B}  # the edit, applied at the first tick, acts on both accounts
    with Store.open(tmp_path / "state.db") as store:
        assert policy_sets.staged(store) == []
        assert policy_sets.get(store, "group copiers", "active").digest == third.policies.digest
        assert store.verify_audit().ok


async def test_a_reconciliation_is_evaluated_by_the_groups_at_once(tmp_path: Path) -> None:
    """The broker's REST state can carry the trades that put the group over its limit (missed
    while the hub was down): the group acts on the corrected book at once, not at the next tick."""
    from riskc.engine.adapters.port import BrokerState
    from riskc.engine.core.events import AccountUpdate
    from riskc.engine.daemon.daemon import Daemon
    from riskc.engine.daemon.items import Reconcile
    from riskc.engine.daemon.loops import build_loops

    config = _write_config(tmp_path, "  - {name: copiers, accounts: [COPY-A, COPY-B], policies: group.risk}\n")
    text = config.read_text(encoding="utf-8").replace("web: false\n", "")
    text += f"state: {tmp_path / 'state.db'}\nlog: {tmp_path / 'log.jsonl'}\nalerts: {{console: false}}\nweb: false\n"
    config.write_text(text, encoding="utf-8")
    daemon = Daemon(load_config(config), live_view=False, max_seconds=5, demo=True)
    daemon.loops = loops = await build_loops(daemon, None)
    at = dt.datetime(2026, 1, 14, 15, 0, tzinfo=dt.UTC)

    def state(account: int, loss: int) -> BrokerState:
        fill = Fill(at, f"t{account}", MNQ, "sell", 1, Decimal(21000), Decimal(-loss), Decimal(0), account_id=account)
        return BrokerState(trades=(fill,), account=AccountUpdate(at, account, Decimal(50000), True))

    loops[0]._apply(Reconcile(state(A, 800), at))
    assert not loops[0].groups[0]._firing  # $800 down: the group is within its limit
    loops[1]._apply(Reconcile(state(B, 800), at))
    assert loops[0].groups[0]._firing  # $1,600 down together: breached on the reconciliation itself
    with Store.open(tmp_path / "state.db") as store:
        for account in (A, B):
            assert [lo.rule for lo in store.active_lockouts(account, at)] == [GROUP_RULE]
    daemon.store.close()


def test_one_policy_over_a_recording_of_several_accounts_follows_the_first_and_says_so() -> None:
    """`--policy` replays one account: the other account's messages are skipped (the simulated
    broker must not mix its orders and positions into the first's) and counted, and the summary
    says how to replay them together."""
    result = replay(str(FIXTURE), "--policy", str(GROUPS / "account.risk"), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stderr.splitlines()[-1])["summary"]
    assert summary["other_accounts"] == {str(B): 10} and summary["broker_calls"] == 0
    text = replay(str(FIXTURE), "--policy", str(GROUPS / "account.risk"))
    assert "other accounts skipped: 1002 (10 messages)" in text.output and "--config" in text.output


def test_a_config_replay_counts_the_accounts_it_does_not_name(tmp_path: Path) -> None:
    config = _write_config(tmp_path, "  []\n")
    text = config.read_text(encoding="utf-8").replace("  - {name: COPY-B, id: 1002, policies: account.risk}\n", "")
    config.write_text(text.replace("groups:\n  []\n", ""), encoding="utf-8")
    result = replay(str(tmp_path / "two-accounts.jsonl"), "--config", str(config), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stderr.splitlines()[-1])["summary"]
    assert summary["other_accounts"] == {str(B): 10}
