"""``edits: next_trading_day``: an edit made during the trading day is checked, staged, shown as
pending, survives a restart, and becomes active at the next trading-day start; a broken edit is
reported at once; `riskc reload --now` applies it with the admin passphrase and refuses (and
audits) a wrong one."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import textwrap
from pathlib import Path

from click.testing import CliRunner
from test_daemon import ACCOUNT, MNQ, START, position, quote, user, wait_until

from riskc.engine.cli.main import main
from riskc.engine.daemon.config import load_config
from riskc.engine.daemon.daemon import Daemon
from riskc.engine.daemon.loops import build_loops
from riskc.engine.daemon.reload import watch_and_reload
from riskc.engine.store import Store, policy_sets

POLICY = 'policy "t"\n  timezone America/Chicago\n\nuse max_contracts(limit: {limit})\n'
BOUNDARY = dt.datetime(2026, 3, 10, 22, 0, tzinfo=dt.UTC)  # 17:00 Chicago (CDT): Wednesday's trading day starts
KEY = "the default account"


def session(path: Path, start: dt.datetime, seconds: int) -> Path:
    """The account, a 3-lot MNQ long at the first second, and quotes every second."""
    lines = [user(start, "GatewayUserAccount", {"id": ACCOUNT, "name": "TEST", "balance": 50000.0, "canTrade": True})]
    lines.append(position(start, 3))
    for s in range(seconds):
        lines.append(quote(start + dt.timedelta(seconds=s, milliseconds=500), 21000.0))
    path.write_text("\n".join(lines) + "\n")
    return path


def write_config(tmp: Path, rec: Path, speed: float) -> Path:
    config = tmp / "riskc.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        state: {tmp / "state.db"}
        log: {tmp / "log.jsonl"}
        broker: {{kind: sim, recording: {rec}, speed: {speed}, timeout: 2s, retries: 1}}
        accounts:
          - policies: [{tmp / "p.risk"}]
        alerts: {{console: false}}
        web: false
        edits: next_trading_day
    """)
    )
    return config


def log_records(tmp: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp / "log.jsonl").read_text().splitlines()]


def reduces(tmp: Path) -> list[dict]:
    return [
        r for r in log_records(tmp) if r.get("kind") == "action" and r["action"] == "reduce"
    ]  # reduce_total: per position cut


async def run(config: Path, seconds: float, during=None) -> Daemon:
    daemon = Daemon(load_config(config), live_view=False, max_seconds=seconds)
    task = asyncio.create_task(daemon.run(lambda d: build_loops(d, None), (watch_and_reload,)))
    if during is not None:
        await during(daemon)
    await asyncio.wait_for(task, seconds + 15)
    return daemon


async def test_an_edit_during_the_day_is_staged_survives_a_restart_and_activates_at_the_boundary(
    tmp_path: Path,
) -> None:
    policy = tmp_path / "p.risk"
    policy.write_text(POLICY.format(limit=5))
    config = write_config(tmp_path, session(tmp_path / "morning.jsonl", START, 600), speed=40)

    async def edit(daemon: Daemon) -> None:
        await wait_until(lambda: daemon.loops and MNQ in daemon.loops[0].engine.book.positions)
        await asyncio.sleep(0.3)  # the watcher is up
        lp = daemon.loops[0]
        committed = lp.engine.policies.digest
        policy.write_text(POLICY.format(limit=1) + "use max_contracts(limit: nope) as broken\n")
        await wait_until(lambda: lp.activity.reload_errors == 1)  # a broken edit: reported at once
        assert "nope" in lp.activity.last_error and lp.commitment.pending() is None
        policy.write_text(POLICY.format(limit=1))
        await wait_until(lambda: lp.commitment.pending() is not None)
        pending = lp.commitment.pending()
        assert pending["activates_at"] == BOUNDARY.isoformat() and pending["apply_now"] is False
        await asyncio.sleep(1.0)  # many recorded seconds at 40×: the staged edit must not act
        assert lp.engine.policies.digest == committed and not reduces(tmp_path)
        from riskc.engine.daemon.board.status import status_json

        assert status_json(daemon)["accounts"][0]["policy"]["pending"]["hash"] == pending["hash"]
        daemon.stop()

    await run(config, 30, during=edit)
    assert not reduces(tmp_path)
    status = json.loads(CliRunner().invoke(main, ["status", "--config", str(config), "--json"]).output)
    [pending] = status["pending"]
    assert pending["account"] == KEY and pending["activates_at"] == BOUNDARY.isoformat()
    text = CliRunner().invoke(main, ["status", "--config", str(config)]).output
    assert "policy edit pending" in text and "2026-03-10 17:00:00 CDT" in text

    # The restart, on the same edited file, ten seconds before the day starts.
    evening = session(tmp_path / "evening.jsonl", BOUNDARY - dt.timedelta(seconds=10), 25)
    config = write_config(tmp_path, evening, speed=5)
    daemon = await run(config, 10, during=None)
    [reduce] = reduces(tmp_path)
    assert dt.datetime.fromisoformat(reduce["ts"]) == BOUNDARY and reduce["to"] == 1  # not a second earlier
    lp = daemon.loops[0]
    assert lp.commitment.pending() is None and lp.activity.reloads == 1
    with Store.open(tmp_path / "state.db") as store:
        assert policy_sets.staged(store) == []
        assert policy_sets.get(store, KEY, "active").digest == lp.engine.policies.digest
        events = [json.loads(r.payload).get("event") for r in store.audit_records() if r.kind == "admin"]
        assert events == ["policy_staged", "policy_activated"]
        assert store.verify_audit().ok


async def test_an_edit_made_while_riskc_was_down_waits_too(tmp_path: Path) -> None:
    """Stopping riskc, editing and starting it again does not skip the wait."""
    policy = tmp_path / "p.risk"
    policy.write_text(POLICY.format(limit=5))
    config = write_config(tmp_path, session(tmp_path / "rec.jsonl", START, 30), speed=0)
    first = await run(config, 2)
    committed = first.loops[0].engine.policies.digest
    policy.write_text(POLICY.format(limit=1))
    second = await run(config, 2)
    assert second.loops[0].engine.policies.digest == committed and not reduces(tmp_path)
    pending = second.loops[0].commitment.pending()
    assert pending is not None and dt.datetime.fromisoformat(pending["activates_at"]) > dt.datetime.now(dt.UTC)
    policy.write_text(POLICY.format(limit=5))  # undone while down: nothing pending any more
    third = await run(config, 2)
    assert third.loops[0].commitment.pending() is None and third.loops[0].engine.policies.digest == committed


def admin_payloads(store: Store) -> list[dict]:
    return [json.loads(r.payload) for r in store.audit_records() if r.kind == "admin"]


async def test_a_restart_on_broken_files_runs_the_committed_set_and_says_so(tmp_path: Path) -> None:
    """A guard with a committed set does not refuse to start over a typo: it runs that set."""
    from riskc.engine.daemon.loops import PolicyLoadError

    policy = tmp_path / "p.risk"
    policy.write_text(POLICY.format(limit=1))
    config = write_config(tmp_path, session(tmp_path / "rec.jsonl", START, 30), speed=0)
    committed = (await run(config, 2)).loops[0].engine.policies.digest
    policy.write_text(POLICY.format(limit="nope"))
    restarted = await run(config, 2)
    assert restarted.loops[0].engine.policies.digest == committed
    assert reduces(tmp_path)[-1]["to"] == 1  # enforced by the committed set
    alerts = [r for r in log_records(tmp_path) if r.get("kind") == "alert" and "do not check" in r["text"]]
    assert alerts and alerts[0]["severity"] == "high" and "nope" in alerts[0]["text"]
    for name in ("state.db", "state.db-wal", "state.db-shm"):  # no committed set: nothing to fall back on
        (tmp_path / name).unlink(missing_ok=True)
    try:
        await run(config, 2)
    except PolicyLoadError as error:
        assert "nope" in str(error)
    else:
        raise AssertionError("a first start on broken files must refuse")


def reload_now(config: Path, passphrase: str) -> object:
    env = {"RISKC_ADMIN_PASSPHRASE": passphrase}
    return CliRunner().invoke(main, ["reload", "--config", str(config), "--now", "--reason", "desk approved"], env=env)


async def test_reload_now_needs_the_passphrase_and_every_attempt_is_audited(tmp_path: Path) -> None:
    policy = tmp_path / "p.risk"
    policy.write_text(POLICY.format(limit=5))
    config = write_config(tmp_path, session(tmp_path / "rec.jsonl", START, 30), speed=0)
    committed = (await run(config, 2)).loops[0].engine.policies.digest
    policy.write_text(POLICY.format(limit=1))
    await run(config, 2)  # stages the edit
    with Store.open(tmp_path / "state.db") as store:
        store.set_admin_passphrase("correct horse battery", dt.datetime.now(dt.UTC))

    refused = reload_now(config, "wrong guess, trader")
    assert refused.exit_code == 1 and "wrong passphrase; nothing was applied" in refused.output
    with Store.open(tmp_path / "state.db") as store:
        [staged] = policy_sets.staged(store)
        assert staged.apply_now is False
        [attempt] = [p for p in admin_payloads(store) if p.get("event") == "reload_now"]
        assert attempt["outcome"] == "denied" and attempt["reason"] == "desk approved"

    applied = reload_now(config, "correct horse battery")
    assert applied.exit_code == 0, applied.output
    assert "applied" in applied.output
    daemon = await run(config, 2)
    assert daemon.loops[0].engine.policies.digest != committed  # applied on the first tick, not at 17:00
    assert reduces(tmp_path) and reduces(tmp_path)[0]["to"] == 1
    with Store.open(tmp_path / "state.db") as store:
        outcomes = [p["outcome"] for p in admin_payloads(store) if p.get("event") == "reload_now"]
        assert outcomes == ["denied", "applied"] and store.verify_audit().ok
        assert policy_sets.staged(store) == []
    listing = CliRunner().invoke(main, ["reload", "--config", str(config)])
    assert listing.exit_code == 0 and "no policy edit is staged" in listing.output


def test_reload_now_needs_a_reason(tmp_path: Path) -> None:
    (tmp_path / "p.risk").write_text(POLICY.format(limit=5))
    config = write_config(tmp_path, session(tmp_path / "rec.jsonl", START, 3), speed=0)
    result = CliRunner().invoke(main, ["reload", "--config", str(config), "--now"])
    assert result.exit_code == 2 and "--reason" in result.output
