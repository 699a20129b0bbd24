"""`riskc replay` over the example sessions (PRODUCT.md §5, §6): golden §6.2 output for each
session in ``examples/sessions``, what each session's README line promises, determinism,
malformed lines, the recorded clock, and the CLI's exit codes.

The golden file of a session is its ``riskc replay --json`` stdout (one §6.2 record a line)
followed by the summary line. Regenerate them after a deliberate change with

    RISKC_UPDATE_GOLDEN=1 python -m pytest tests/engine/test_replay.py

and read the diff before committing it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from riskc.engine.adapters.projectx.intake import Message
from riskc.engine.cli.main import main
from riskc.engine.core.instruments import symbol_of
from riskc.engine.runner import PolicySet
from riskc.engine.sim.replay import Replay
from riskc.engine.store import Store

REPO = Path(__file__).resolve().parents[2]
SESSIONS = REPO / "examples" / "sessions"
GOLDEN = REPO / "tests" / "fixtures" / "replay"
TOPSTEP = REPO / "policies" / "topstep-50k.risk"
UPDATE = os.environ.get("RISKC_UPDATE_GOLDEN") == "1"
RECORDINGS = sorted(SESSIONS.glob("*.jsonl"))
T0 = dt.datetime(2025, 12, 3, 16, 0, tzinfo=dt.UTC)  # a Wednesday, 10:00 CST
MNQ = "CON.F.US.MNQ.Z25"


def replay(*args: str) -> Result:
    return CliRunner().invoke(main, ["replay", *args])


def replay_json(recording: Path, policy: Path = TOPSTEP, *, states: bool = False) -> tuple[list[dict], dict]:
    """The §6.2 records of a replay (the `trading_state` ones only with ``states``) and its summary."""
    result = replay(str(recording), "--policy", str(policy), "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    if not states:
        records = [r for r in records if r["action"] != "trading_state"]
    return records, _summary(result)


def _summary(result: Result) -> dict:
    lines = [line for line in result.stderr.splitlines() if line.startswith('{"summary"')]
    assert len(lines) == 1, result.stderr
    return json.loads(lines[0])["summary"]


def golden_text(result: Result) -> str:
    summary = json.dumps({"summary": _summary(result)}, ensure_ascii=False)
    return result.stdout + summary + "\n"


# -- the example sessions --------------------------------------------------------------------


def test_there_are_the_promised_sessions():
    names = {p.stem for p in RECORDINGS}
    assert {"daily-loss-lockout", "scale-in-partial-stop", "symbol-block", "demo"} <= names
    assert any(n.startswith("session-end-dst-") for n in names)
    readme = (SESSIONS / "README.md").read_text(encoding="utf-8")
    for name in names:
        assert f"`riskc replay examples/sessions/{name}.jsonl --policy policies/topstep-50k.risk`" in readme


@pytest.mark.parametrize("recording", RECORDINGS, ids=lambda p: p.stem)
def test_session_replays_to_golden_output(recording: Path):
    result = replay(str(recording), "--policy", str(TOPSTEP), "--json")
    assert result.exit_code == 0, result.output
    golden = GOLDEN / f"{recording.stem}.jsonl"
    actual = golden_text(result)
    if UPDATE:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual, encoding="utf-8")
        return
    assert golden.exists(), f"{golden.name} is missing; run with RISKC_UPDATE_GOLDEN=1 to create it"
    assert actual == golden.read_text(encoding="utf-8")


def _brief(records: list[dict]) -> list[tuple[str, str, str, str | None]]:
    return [(r["ts"], r["rule"], r["action"], r.get("symbol")) for r in records]


def test_daily_loss_flattens_locks_and_keeps_the_account_flat():
    records, summary = replay_json(SESSIONS / "daily-loss-lockout.jsonl")
    assert _brief(records) == [
        ("2025-11-12T15:09:00+00:00", "daily_loss", "flatten", None),
        ("2025-11-12T15:09:00+00:00", "daily_loss", "lockout", None),
        ("2025-11-12T15:10:00.320000+00:00", "daily_loss", "close", "MNQ"),  # the re-entry
        ("2025-11-12T15:10:03+00:00", "daily_loss", "cancel", "MNQ"),  # its stop, no longer an exit
    ]
    assert "day.realized_pnl = -$1,012.21 <= -$1,000.00" in records[0]["reason"]
    assert records[1]["until"] == "2025-11-12T23:00:00+00:00"  # 17:00 CST, the next trading day
    states, _ = replay_json(SESSIONS / "daily-loss-lockout.jsonl", states=True)
    assert [(r["ts"], r["state"], r.get("until")) for r in states if r["action"] == "trading_state"] == [
        ("2025-11-12T15:09:00+00:00", "halted", "2025-11-12T23:00:00+00:00")
    ]
    assert records[2]["reason"].startswith("account locked by daily_loss")
    assert summary["malformed"] == 2
    assert summary["broker_calls"] == 6  # flatten: 2 closes and 2 cancels; then a close and a cancel


def test_scale_in_is_closed_when_the_grace_of_the_added_contracts_ends():
    records, _ = replay_json(SESSIONS / "scale-in-partial-stop.jsonl")
    assert _brief(records) == [
        ("2025-12-03T16:01:30+00:00", "stop_required", "close", "MNQ"),
        # the stop of the first two contracts: left working, it would open a short when hit
        ("2025-12-03T16:01:30.320000+00:00", "stop_required", "cancel", "MNQ"),
    ]
    assert "p.stop_coverage = 2 < p.qty = 4" in records[0]["reason"]
    assert records[1]["reason"] == "exit order of the CON.F.US.MNQ.Z25 position closed by stop_required"


@pytest.mark.parametrize(
    ("day", "utc_close", "utc_next_start"),
    [
        ("2026-03-09", "2026-03-09T20:08:00+00:00", "2026-03-09T22:00:00+00:00"),  # CDT, UTC-5
        ("2026-11-02", "2026-11-02T21:08:00+00:00", "2026-11-02T23:00:00+00:00"),  # CST, UTC-6
    ],
)
def test_session_end_on_a_dst_day_is_15_08_chicago(day: str, utc_close: str, utc_next_start: str):
    records, summary = replay_json(SESSIONS / f"session-end-dst-{day}.jsonl")
    assert _brief(records[:2]) == [
        (utc_close, "trading_hours", "flatten", None),
        (utc_close, "trading_hours", "lockout", None),
    ]
    assert records[1]["until"] == utc_next_start
    assert summary["broker_calls"] == 3  # the position, its stop, then the order placed at 15:15


def test_symbol_block_closes_cl_and_cancels_its_later_orders():
    records, _ = replay_json(SESSIONS / "symbol-block.jsonl")
    assert [(r["rule"], r["action"], r["symbol"]) for r in records] == [
        ("symbol_block", "close", "CL"),
        ("symbol_block", "block", "CL"),
        ("symbol_block", "cancel", "CL"),
        ("symbol_block", "cancel", "CL"),
    ]
    assert records[0]["contract_id"] == "CON.F.US.CLE.F26"
    assert records[1]["until"] == "2025-11-19T23:00:00+00:00"


def test_demo_shows_a_breach_early_and_the_daily_loss_within_five_minutes():
    records, summary = replay_json(SESSIONS / "demo.jsonl")
    start = dt.datetime.fromisoformat(summary["from"])
    first = dt.datetime.fromisoformat(records[0]["ts"])
    assert first - start < dt.timedelta(minutes=1)
    rules = [(r["rule"], r["action"]) for r in records]
    assert rules[:6] == [
        ("stop_required", "close"),
        ("stop_required", "cancel"),
        ("symbol_block", "close"),
        ("symbol_block", "block"),
        ("daily_loss", "flatten"),
        ("daily_loss", "lockout"),
    ]
    assert dt.timedelta(minutes=3) <= dt.datetime.fromisoformat(summary["to"]) - start <= dt.timedelta(minutes=8)


def test_sessions_are_what_the_generator_builds():
    run = subprocess.run(
        [sys.executable, str(SESSIONS / "make_sessions.py"), "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr


# -- determinism, malformed lines, the recorded clock ------------------------------------------


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "timeline"])
def test_two_runs_give_byte_identical_output(as_json: bool):
    args = [str(SESSIONS / "demo.jsonl"), "--policy", str(TOPSTEP)] + (["--json"] if as_json else [])
    first, second = replay(*args), replay(*args)
    assert first.exit_code == second.exit_code == 0
    assert first.stdout_bytes == second.stdout_bytes
    assert first.stdout_bytes


def _line(ts: dt.datetime, target: str, data) -> str:
    hub = "market" if target == "GatewayQuote" else "user"
    args = data if target == "GatewayQuote" else [{"action": 1, "data": data}]
    return Message(ts, hub, target, args).to_json()


def _account(ts: dt.datetime) -> str:
    return _line(ts, "GatewayUserAccount", {"id": 7, "name": "test", "balance": 50000.0, "canTrade": True})


def _position(ts: dt.datetime, size: int, kind: int = 1) -> str:
    return _line(
        ts,
        "GatewayUserPosition",
        {
            "id": 1,
            "accountId": 7,
            "contractId": MNQ,
            "type": kind if size else 0,
            "size": size,
            "creationTimestamp": ts.isoformat(),
            "averagePrice": 25600.0,
        },
    )


def _quote(ts: dt.datetime, price: float = 25600.0) -> str:
    return _line(ts, "GatewayQuote", [MNQ, {"lastPrice": price, "bestBid": price - 0.25, "bestAsk": price}])


def write_recording(folder: Path, lines: list[str]) -> Path:
    path = folder / "rec.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_malformed_lines_are_counted_and_the_run_goes_on(tmp_path: Path):
    at = lambda s: T0 + dt.timedelta(seconds=s)  # noqa: E731
    recording = write_recording(
        tmp_path,
        [
            _account(at(0)),
            "this is not json",
            '["a list, not an object"]',
            '{"ts": "2025-12-03T16:00:02+00:00", "hub": "user", "target": "GatewayUserNothing", "args": [{}]}',
            _position(at(3), 2, kind=7),  # PositionType 7 does not exist: the book cannot use it
            "",
            _position(at(5), 2),
            _quote(at(36.5)),
        ],
    )
    records, summary = replay_json(recording)
    assert summary["malformed"] == 4
    assert summary["messages"] == 4  # the good lines and the one the book refused
    assert [(r["rule"], r["action"]) for r in records] == [("stop_required", "close")]
    text = replay(str(recording), "--policy", str(TOPSTEP))
    assert text.exit_code == 0
    assert "malformed line 2: not JSON" in text.stdout
    assert "4 malformed lines skipped" in " ".join(text.stdout.split())


def test_the_clock_ticks_between_messages(tmp_path: Path):
    """No message between 16:00:05 and 16:01:00: the grace of stop_required still ends at
    16:00:35 exactly, on a tick of the recorded clock, and the session end (15:08 CST) fires at
    15:08:00 though the next message comes at 15:20."""
    at = lambda s: T0 + dt.timedelta(seconds=s)  # noqa: E731
    close_of_day = dt.datetime(2025, 12, 3, 21, 7, 50, tzinfo=dt.UTC)
    recording = write_recording(
        tmp_path,
        [
            _account(at(0)),
            _quote(at(1)),
            _position(at(5), 2),
            _quote(at(60)),
            _position(close_of_day, 0),
            _position(close_of_day + dt.timedelta(seconds=1), 1),
            _quote(close_of_day + dt.timedelta(minutes=12)),
        ],
    )
    records, summary = replay_json(recording)
    assert _brief(records)[0] == ("2025-12-03T16:00:35+00:00", "stop_required", "close", "MNQ")
    assert ("2025-12-03T21:08:00+00:00", "trading_hours", "flatten", None) in _brief(records)
    last = dt.datetime.fromisoformat(summary["to"])
    # One a second, except the five flat hours between 16:01 and 21:07:50, jumped (no day start in them).
    assert summary["jumped_seconds"] > 5 * 3600
    assert summary["ticks"] + summary["jumped_seconds"] == int((last - T0).total_seconds())


def test_replay_api_and_cli_agree(tmp_path: Path):
    """The Replay class (what the daemon's demo and the benchmarks drive) emits what the CLI prints."""
    from riskc.engine.adapters.projectx.intake import read_recording

    policies, _, _ = PolicySet.from_paths([TOPSTEP])
    emitted: list[dict] = []
    with Store.open(tmp_path / "s.db") as store:
        Replay(policies, store, emit=emitted.append).run(read_recording(str(SESSIONS / "symbol-block.jsonl")))
    records, _ = replay_json(SESSIONS / "symbol-block.jsonl", states=True)
    assert emitted == records


def test_state_file_keeps_the_lockout(tmp_path: Path):
    state = tmp_path / "state.db"
    result = replay(
        str(SESSIONS / "daily-loss-lockout.jsonl"), "--policy", str(TOPSTEP), "--json", "--state", str(state)
    )
    assert result.exit_code == 0, result.output
    with Store.open(state) as store:
        lockouts = store.active_lockouts(13298777, dt.datetime(2025, 11, 12, 16, 0, tzinfo=dt.UTC))
    assert [(lo.rule, lo.until) for lo in lockouts] == [("daily_loss", dt.datetime(2025, 11, 12, 23, 0, tzinfo=dt.UTC))]


# -- the command line -------------------------------------------------------------------------


def test_timeline_shows_local_times_and_the_summary():
    result = replay(str(SESSIONS / "scale-in-partial-stop.jsonl"), "--policy", str(TOPSTEP))
    assert result.exit_code == 0
    assert "2025-12-03 10:01:30 CST" in result.stdout
    assert "stop_required" in result.stdout
    assert "0 malformed lines skipped" in " ".join(result.stdout.split())


def test_bad_policy_exits_1_with_diagnostics(tmp_path: Path):
    policy = tmp_path / "bad.risk"
    policy.write_text("rule mixed\n  when day.realized_pnl + account.open_contracts > $500\n  then flatten\n")
    result = replay(str(SESSIONS / "demo.jsonl"), "--policy", str(policy))
    assert result.exit_code == 1
    assert f"{policy}:2:8: risk_unit_error: cannot compute money + contracts" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("missing", ["recording", "policy"])
def test_missing_file_exits_2(tmp_path: Path, missing: str):
    recording = tmp_path / "none.jsonl" if missing == "recording" else SESSIONS / "demo.jsonl"
    policy = tmp_path / "none.risk" if missing == "policy" else TOPSTEP
    result = replay(str(recording), "--policy", str(policy))
    assert result.exit_code == 2
    assert "none." in result.stderr


def test_policy_is_required():
    assert replay(str(SESSIONS / "demo.jsonl")).exit_code == 2


def test_replay_does_not_import_the_sdk():
    script = (
        "import sys\n"
        "from riskc.engine.cli.main import main\n"
        "try:\n"
        "    main(['replay', 'examples/sessions/demo.jsonl', '--policy', 'policies/topstep-50k.risk', '--json'])\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "assert 'project_x_py' not in sys.modules, sorted(m for m in sys.modules if m.startswith('project_x_py'))\n"
        "print('ok', file=sys.stderr)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stderr.strip().endswith("ok"), run.stderr


# -- engine fixes found by the sessions ---------------------------------------------------------


@pytest.mark.parametrize(
    ("contract_id", "symbol"),
    [
        ("CON.F.US.MNQ.Z25", "MNQ"),
        ("CON.F.US.ENQ.Z25", "NQ"),
        ("CON.F.US.EP.H26", "ES"),
        ("CON.F.US.CLE.F26", "CL"),
        ("CON.F.US.GCE.G26", "GC"),
        ("MNQ", "MNQ"),
    ],
)
def test_gateway_product_codes_map_to_cme_symbols(contract_id: str, symbol: str):
    """The Gateway names NQ `ENQ` and CL `CLE`: a policy's `symbol_block(symbols: [CL])` must see
    CL (it used to see `CLE`, and the instrument lookup crashed the engine)."""
    assert symbol_of(contract_id) == symbol


def test_summary_counts_every_event_even_when_no_rule_acts(tmp_path: Path):
    """`events` used to be updated only when an action was taken (0 for a quiet session)."""
    policy = tmp_path / "quiet.risk"
    policy.write_text("use daily_loss(limit: $5,000)\n")
    _, summary = replay_json(SESSIONS / "scale-in-partial-stop.jsonl", policy)
    assert summary["actions"] == []
    assert summary["events"] == summary["messages"] > 0


# -- the hot path: optimisations that must not change what the engine decides ---------------------


def _policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.risk"
    path.write_text(text, encoding="utf-8")
    return path


def _balance(ts: dt.datetime, can_trade: bool = True, balance: float = 50000.0) -> str:
    return _line(ts, "GatewayUserAccount", {"id": 7, "name": "test", "balance": balance, "canTrade": can_trade})


def _trade(ts: dt.datetime, trade_id: int, pnl: float | None) -> str:
    return _line(
        ts,
        "GatewayUserTrade",
        {
            "id": trade_id,
            "accountId": 7,
            "contractId": MNQ,
            "price": 25600.0,
            "profitAndLoss": pnl,
            "fees": 0.37,
            "side": 1,
            "size": 1,
            "voided": False,
            "creationTimestamp": ts.isoformat(),
        },
    )


def test_a_breach_that_keeps_firing_writes_its_lockout_once(tmp_path: Path, monkeypatch):
    """daily_loss fires on every event of the rest of the day: the lockout it asks for is already
    in force, so the store is not written again (it used to be, once per event)."""
    at = lambda s: T0 + dt.timedelta(seconds=s)  # noqa: E731
    recording = write_recording(
        tmp_path, [_balance(at(0)), _trade(at(1), 1, -1200.0)] + [_quote(at(2 + i / 10)) for i in range(300)]
    )
    writes = []
    original = Store.add_lockout
    monkeypatch.setattr(Store, "add_lockout", lambda self, *a, **k: writes.append(a) or original(self, *a, **k))
    records, _ = replay_json(recording, _policy(tmp_path, "use daily_loss(limit: $1,000)\n"))
    assert [(r["rule"], r["action"]) for r in records] == [("daily_loss", "lockout")]  # flat: no flatten record
    assert len(writes) == 1


def test_a_longer_lockout_of_the_same_rule_still_extends_it(tmp_path: Path):
    at = lambda s: T0 + dt.timedelta(seconds=s)  # noqa: E731
    recording = write_recording(
        tmp_path,
        [_balance(at(0)), _trade(at(1), 1, -400.0), _quote(at(2)), _trade(at(300), 2, -400.0), _quote(at(301))],
    )
    records, _ = replay_json(recording, _policy(tmp_path, "use cooldown_after_loss(loss: $300, cooldown: 15m)\n"))
    assert [(r["action"], r["until"]) for r in records] == [
        ("lockout", "2025-12-03T16:15:01+00:00"),
        ("lockout", "2025-12-03T16:20:00+00:00"),
    ]


def test_a_while_lockout_released_in_process_is_set_again_when_the_condition_returns(tmp_path: Path):
    at = lambda s: T0 + dt.timedelta(seconds=s)  # noqa: E731
    recording = write_recording(
        tmp_path,
        [
            _balance(at(0)),
            _quote(at(1)),
            _balance(at(2), can_trade=False),
            _quote(at(3)),
            _balance(at(4), can_trade=True),
            _quote(at(5)),
            _balance(at(6), can_trade=False),
            _quote(at(7)),
        ],
    )
    records, _ = replay_json(recording, _policy(tmp_path, "use auth_guard\n"))
    lockouts = [r["ts"] for r in records if r["action"] == "lockout"]
    assert lockouts == ["2025-12-03T16:00:02+00:00", "2025-12-03T16:00:06+00:00"]


def test_a_symbol_block_leaves_other_symbols_alone_and_still_cancels_its_own(tmp_path: Path):
    """The keep-flat pass runs only when a lockout has something in scope; the CL block must
    still catch a CL order while an MNQ position is open."""
    at = lambda s: T0 + dt.timedelta(seconds=s)  # noqa: E731
    cl = "CON.F.US.CLE.F26"
    cl_position = _line(
        at(2),
        "GatewayUserPosition",
        {
            "id": 2,
            "accountId": 7,
            "contractId": cl,
            "type": 1,
            "size": 1,
            "creationTimestamp": at(2).isoformat(),
            "averagePrice": 59.4,
        },
    )
    cl_quote = _line(at(2.5), "GatewayQuote", [cl, {"lastPrice": 59.41, "bestBid": 59.4, "bestAsk": 59.41}])
    cl_order = _line(
        at(20),
        "GatewayUserOrder",
        {
            "id": 77,
            "accountId": 7,
            "contractId": cl,
            "status": 1,
            "type": 1,
            "side": 0,
            "size": 1,
            "limitPrice": 59.3,
            "creationTimestamp": at(20).isoformat(),
        },
    )
    recording = write_recording(
        tmp_path,
        [
            _balance(at(0)),
            _quote(at(1)),
            cl_position,
            cl_quote,
            _position(at(10), 1),
            _quote(at(11)),
            cl_order,
            _quote(at(21)),
        ],
    )
    records, _ = replay_json(recording, _policy(tmp_path, "use symbol_block(symbols: [CL])\n"))
    assert [(r["action"], r.get("symbol"), r.get("order_id")) for r in records] == [
        ("close", "CL", None),
        ("block", "CL", None),
        ("cancel", "CL", 77),
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("25479.50", Decimal("25479.5")),
        ("0.37", Decimal("0.37")),
        ("-0.0", Decimal("-0.0")),
        ("0.0", Decimal("0.0")),
        ("1e-7", Decimal("1E-7")),
        ("50000", 50000),
    ],
)
def test_recorded_numbers_are_the_decimals_the_live_path_makes(text: str, value):
    from riskc.engine.adapters.projectx.intake import from_callback, parse_line

    line = f'{{"ts": "2025-12-03T16:00:00+00:00", "hub": "market", "target": "GatewayQuote", "args": ["X", {{"lastPrice": {text}}}]}}'  # noqa: E501
    for _ in range(2):  # the second time from the cache
        got = parse_line(line, 1).args[1]["lastPrice"]
        assert (got, type(got), str(got)) == (value, type(value), str(value))
    live = from_callback("quote_update", {"contract_id": "X", "data": {"lastPrice": float(text)}}, T0)
    if isinstance(value, Decimal):
        assert str(live.args[1]["lastPrice"]) == str(value)


def test_a_non_finite_price_in_a_recording_is_a_malformed_line():
    from riskc.engine.adapters.projectx.intake import Malformed, parse_line

    line = '{"ts": "2025-12-03T16:00:00+00:00", "hub": "market", "target": "GatewayQuote", "args": ["X", {"lastPrice": NaN}]}'  # noqa: E501
    assert isinstance(parse_line(line, 3), Malformed)


def test_open_pnl_follows_every_quote_of_an_open_position(tmp_path: Path):
    """A quote updates the position's mark and open P&L in place (the view is not rebuilt): the
    rule sees the price of the quote it is evaluated on, no earlier one."""
    at = lambda s: T0 + dt.timedelta(seconds=s)  # noqa: E731
    prices = [25600.0, 25595.0, 25590.0, 25590.0, 25588.0, 25587.5, 25587.0]  # -$50 at 25,587.50
    recording = write_recording(
        tmp_path,
        [_balance(at(0)), _quote(at(1)), _position(at(2), 2)]
        + [_quote(at(3 + i / 10), p) for i, p in enumerate(prices)],
    )
    records, _ = replay_json(recording, _policy(tmp_path, "use position_loss(limit: $50)\n"))
    assert [(r["ts"], r["action"]) for r in records] == [("2025-12-03T16:00:03.500000+00:00", "close")]
    assert "p.unrealized_pnl = -$50.00" in records[0]["reason"]


def test_a_position_in_an_instrument_without_a_spec_is_alerted_not_closed(tmp_path: Path):
    """It used to end in a traceback (UnknownInstrument out of the snapshot), then in a close under
    `on_error flatten` (a copper position within every limit closed at start-up). PRODUCT.md §8: a
    position is never closed only because riskc did not know its instrument: a critical alert."""
    at = lambda s: T0 + dt.timedelta(seconds=s)  # noqa: E731
    corn = "CON.F.US.ZC.H26"
    recording = write_recording(
        tmp_path,
        [
            _balance(at(0)),
            _line(
                at(2),
                "GatewayUserPosition",
                {
                    "id": 4,
                    "accountId": 7,
                    "contractId": corn,
                    "type": 1,
                    "size": 1,
                    "averagePrice": 440.25,
                    "creationTimestamp": at(2).isoformat(),
                },
            ),
            _line(at(3), "GatewayQuote", [corn, {"lastPrice": 440.5, "bestBid": 440.25, "bestAsk": 440.5}]),
        ],
    )
    records, summary = replay_json(recording)
    assert [(r["rule"], r["action"], r.get("contract_id")) for r in records] == [
        ("instrument_spec", "alert", corn),
    ]
    assert "no instrument spec for `ZC`" in records[0]["reason"]
    assert summary["broker_calls"] == 0


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_PRICE = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(10**6), 10**6), st.none())


@given(
    last=_PRICE,
    bid=_PRICE,
    ask=_PRICE,
    same_stamp=st.booleans(),
    extra=st.dictionaries(
        st.sampled_from(["volume", "change", "open"]), st.floats(allow_nan=False, allow_infinity=False), max_size=2
    ),
)
def test_the_quote_fast_path_makes_the_event_the_general_path_makes(last, bid, ask, same_stamp, extra):
    """``parse_line`` decodes a quote line in its usual shape at once (one timestamp parse);
    the event, the arguments and any error are those of ``decode`` on the general path."""
    import dataclasses
    import json

    import orjson

    from riskc.engine.adapters.projectx.decode import DECODE_ERRORS, decode
    from riskc.engine.adapters.projectx.intake import Malformed, Message, _decimals, parse_line, parse_time

    ts = "2026-01-14T14:45:00.250000+00:00"
    data = {"symbol": "F.US.MNQ", "lastPrice": last, "bestBid": bid, "bestAsk": ask, **extra}
    data["timestamp"] = ts if same_stamp else "2026-01-14T14:44:59.5+00:00"
    line = json.dumps({"ts": ts, "hub": "market", "target": "GatewayQuote", "args": ["CON.F.US.MNQ.H26", data]})
    fast = parse_line(line, 7)
    raw = orjson.loads(line)
    general = Message(parse_time(raw["ts"]), "market", "GatewayQuote", _decimals(raw["args"]), 7)
    assert not isinstance(fast, Malformed)
    assert dataclasses.astuple(fast)[:5] == dataclasses.astuple(general)[:5]
    try:
        want = decode(general)
    except DECODE_ERRORS as error:
        want = type(error)
    try:
        got = decode(fast)
    except DECODE_ERRORS as error:
        got = type(error)
    assert got == want


def test_a_line_a_year_ahead_is_jumped_not_walked(tmp_path: Path):
    """A flat account and a recording whose last line is a year later: ticks at each trading-day
    start and each lockout's end, not 31 million; an open position is walked second by second."""
    at = lambda s: T0 + dt.timedelta(seconds=s)  # noqa: E731
    year = dt.timedelta(days=365)
    recording = write_recording(tmp_path, [_account(at(0)), _quote(at(1)), _quote(T0 + year)])
    records, summary = replay_json(recording)
    assert summary["ticks"] < 400 and summary["jumped_seconds"] > 364 * 86400
    assert summary["to"] == (T0 + year).isoformat()
    held = write_recording(tmp_path, [_account(at(0)), _quote(at(1)), _position(at(2), 1), _quote(at(7200))])
    _, summary = replay_json(held)
    assert summary["jumped_seconds"] == 0 and summary["ticks"] >= 7190


def test_a_timestamp_going_backwards_is_counted_reported_and_applied_at_the_clock(tmp_path: Path):
    at = lambda s: T0 + dt.timedelta(seconds=s)  # noqa: E731
    recording = write_recording(tmp_path, [_account(at(0)), _quote(at(10)), _quote(at(4)), _quote(at(12))])
    result = replay(str(recording), "--policy", str(TOPSTEP), "--json")
    assert result.exit_code == 0
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    [back] = [line["backwards"] for line in lines if "backwards" in line]
    assert back["line"] == 3 and back["ts"] == at(4).isoformat() and back["clock"] == at(10).isoformat()
    assert lines[-1]["summary"]["backwards"] == 1
    text = replay(str(recording), "--policy", str(TOPSTEP))
    assert "time goes back line 3" in text.output and "applied at the clock's time" in text.output


@pytest.mark.parametrize("year", ["0001", "1900", "9999"])
def test_a_time_outside_the_years_riskc_reads_is_a_malformed_line_or_an_absent_stamp(tmp_path: Path, year: str):
    """.NET writes 0001-01-01 for a time it never set; the calendar, the local clock and a
    lockout's end cannot place such an instant (the datetime arithmetic overflows). A line
    stamped so is malformed, with the reason; a payload's timestamp so is absent (the receive
    time stands in) and the update is applied."""
    at = lambda s: T0 + dt.timedelta(seconds=s)  # noqa: E731
    far = f"{year}-12-31T23:59:59.500000+00:00"
    odd = _quote(at(2)).replace(at(2).isoformat(), far)  # the line's `ts`
    stamped = json.loads(_position(at(3), 1))
    stamped["args"][0]["data"]["creationTimestamp"] = far
    quote = json.loads(_quote(at(4)))
    quote["args"][1]["timestamp"] = far
    recording = write_recording(
        tmp_path, [_account(at(0)), _quote(at(1)), odd, json.dumps(stamped), json.dumps(quote), _quote(at(40))]
    )
    records, summary = replay_json(recording)
    assert summary["malformed"] == 1 and summary["messages"] == 5
    assert [r["action"] for r in records if r["rule"] == "stop_required"] == ["close"]  # the position was applied
    reported = replay(str(recording), "--policy", str(TOPSTEP), "--json").stderr
    assert "line 3" not in reported and '"line": 3' in reported and "outside the years riskc reads" in reported
