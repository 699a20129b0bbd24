"""`riskc run` workers on a PostgreSQL desk (issue 21), end to end: two daemons on one config
whose `state:` is the suite's PostgreSQL; one holds the account and enforces a daily-loss breach,
the other waits; the holder is killed with SIGKILL and the other takes the account within the
bound, recovering the lockout from the store; the chain verifies and `status --desk` names it."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_daemon import ACCOUNT, START, position, recording, trade

from riskc.engine.cli.main import main
from riskc.engine.store import Store
from riskc.engine.store.desk import leases

pytestmark = pytest.mark.crash
BOUND_S = 10.0


def held(url: str) -> dict[int, str]:
    with Store.open_readonly(url) as store:
        return {row.account_id: row.worker for row in leases(store.db) if row.held}


def test_a_killed_workers_account_is_taken_by_the_other_riskc_run(pg_url: str, tmp_path: Path) -> None:
    lines = [(1, position(START + dt.timedelta(seconds=1), 1)), (2, trade(START + dt.timedelta(seconds=2), 1, -1200.0))]
    rec = recording(tmp_path / "rec.jsonl", 1200, lines)
    policy = tmp_path / "p.risk"
    policy.write_text('policy "t"\n  timezone America/Chicago\n\nuse daily_loss(limit: $1,000)\n')
    config = tmp_path / "riskc.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        state: {pg_url}
        broker: {{kind: sim, recording: {rec}, speed: 20, timeout: 2s, retries: 1}}
        accounts:
          - id: {ACCOUNT}
            policies: [{policy}]
        alerts: {{console: false}}
    """)
    )
    env = dict(os.environ, PROJECT_X_USERNAME="", PROJECT_X_API_KEY="")
    command = [sys.executable, "-c", "from riskc.engine.cli.main import main; main()", "run", "--config", str(config)]
    command += ["--plain", "--max-time", "60"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = None
    try:
        deadline = time.monotonic() + 30
        while True:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first worker never locked the account"
            try:
                with Store.open_readonly(pg_url) as store:
                    if store.active_lockouts(ACCOUNT, START + dt.timedelta(minutes=1)):
                        break
            except Exception:  # the desk is being created
                pass
            time.sleep(0.1)
        first_worker = held(pg_url)[ACCOUNT]
        assert first_worker.endswith(f":{first.pid}")
        second = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2.0)  # it starts, finds the account held, and waits
        assert held(pg_url)[ACCOUNT] == first_worker
        first.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        while held(pg_url).get(ACCOUNT, first_worker) == first_worker:
            assert second.poll() is None, second.communicate()
            assert time.monotonic() - killed < BOUND_S, f"the account was not taken within {BOUND_S} s"
            time.sleep(0.1)
        assert held(pg_url)[ACCOUNT].endswith(f":{second.pid}")
        status = CliRunner().invoke(main, ["status", "--desk", "--state", pg_url])
        assert status.exit_code == 0 and f":{second.pid}" in status.output, status.output
    finally:
        _stop(first, second)
    with Store.open_readonly(pg_url) as store:
        assert store.verify_audit().ok
        assert [lo.rule for lo in store.active_lockouts(ACCOUNT, START + dt.timedelta(minutes=5))] == ["daily_loss"]
        epochs = [r for r in store.audit_records() if r.kind == "event" and '"lease_acquired"' in r.payload]
        assert len(epochs) == 2


def _stop(*workers: subprocess.Popen | None) -> None:
    """SIGTERM each worker still running, as an operator stops riskc run; killed if it takes
    more than 20 s."""
    for proc in workers:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _config(tmp_path: Path, state: str, account_line: str) -> Path:
    policy = tmp_path / "p.risk"
    policy.write_text('policy "t"\n  timezone America/Chicago\n\nuse daily_loss(limit: $1,000)\n')
    rec = recording(tmp_path / "rec.jsonl", 5, [])
    config = tmp_path / "riskc.yaml"
    config.write_text(
        f"state: {state}\nbroker: {{kind: sim, recording: {rec}, speed: 0}}\n"
        f"accounts:\n  - {account_line}policies: [{policy}]\nalerts: {{console: false}}\n"
    )
    return config


def test_a_desk_needs_account_ids(pg_url: str, tmp_path: Path) -> None:
    config = _config(tmp_path, pg_url, "")
    result = CliRunner().invoke(main, ["run", "--config", str(config), "--plain", "--max-time", "1"])
    assert result.exit_code == 2 and "needs its `id:`" in result.output and "Traceback" not in result.output


def test_an_unreachable_desk_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = _config(tmp_path, "postgresql://nobody@127.0.0.1:1/none", f"id: {ACCOUNT}\n    ")
    result = CliRunner().invoke(main, ["run", "--config", str(config), "--plain", "--max-time", "1"])
    assert result.exit_code == 2 and "cannot connect to postgresql://nobody@127.0.0.1:1/none" in result.output


def test_two_workers_hold_a_group_on_one_of_them_and_its_breach_is_enforced_once(pg_url: str, tmp_path: Path) -> None:
    """Leases by group: two `riskc run` workers start together on the two-account group example;
    one holds both accounts (per-account leases would give each worker one, and then neither would
    guard the group), and the group's daily-loss breach flattens and locks both, once each."""
    import shutil

    examples = Path(__file__).resolve().parents[2] / "examples" / "groups"
    for name in ("copy-account.risk", "copy-desk.risk", "two-accounts.jsonl"):
        shutil.copy(examples / name, tmp_path / name)
    text = (examples / "riskc.yaml").read_text(encoding="utf-8").replace("speed: 10", "speed: 5")
    config = tmp_path / "riskc.yaml"
    config.write_text(f"{text}state: {pg_url}\nalerts: {{console: false}}\nweb: false\n", encoding="utf-8")
    Store.open(pg_url).close()  # the desk exists before either starts: they race for the leases only
    env = dict(os.environ, PROJECT_X_USERNAME="", PROJECT_X_API_KEY="")
    command = [sys.executable, "-c", "from riskc.engine.cli.main import main; main()", "run", "--config", str(config)]
    command += ["--plain", "--max-time", "30"]
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    workers.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    group_rule, accounts, after = (
        "copiers.group_daily_loss",
        (1001, 1002),
        dt.datetime(2026, 1, 14, 14, 35, tzinfo=dt.UTC),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            stopped = [w.communicate() for w in workers if w.poll() is not None]
            assert not stopped, f"a worker stopped before the group's breach was enforced: {stopped}"
            assert time.monotonic() < deadline, "the group's breach was never enforced"
            with Store.open_readonly(pg_url) as store:
                if all(store.active_lockouts(a, after) for a in accounts):
                    break
            time.sleep(0.2)
        holders = held(pg_url)
        assert sorted(holders) == list(accounts) and len(set(holders.values())) == 1, holders
        assert any(holders[1001].endswith(f":{w.pid}") for w in workers)
        time.sleep(2.0)  # both workers go on: nothing more is planned
    finally:
        _stop(*workers)
    with Store.open_readonly(pg_url) as store:
        assert store.verify_audit().ok
        for account in accounts:
            assert [lo.rule for lo in store.active_lockouts(account, after)] == [group_rule]
            closes = [a for a in store.recent_actions(account) if a.action.get("call") == "close"]
            assert [c.state for c in closes] == ["confirmed"], closes
        taken = [r for r in store.audit_records() if r.kind == "event" and '"lease_acquired"' in r.payload]
        assert len(taken) == 2  # each account taken once, by the one worker
