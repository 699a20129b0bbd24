"""kill -9 at random points, restart, and nothing is lost or sent twice (PRODUCT.md §7, §8).

``crash_worker.py`` streams a generated session through the engine with a real store; the broker
it enforces through lives here, in the parent, so it outlives every kill and can say what it
received. The session has trades, a scale-in over a per-symbol limit (a partial close), positions
without stops closed after the grace period, a daily-loss breach that flattens and locks the
account out, entries during the lockout (closed, cancelled), the 17:00 CT day boundary that ends
the lockout, and a last position whose grace period is still running at the end.

The parent runs it once without kills, then again with ≥ 20 SIGKILLs (seeded), restarting after
each, and compares: every acknowledged audit record still there, the hash chain intact, the same
lockouts, timers, day P&L and end-of-day balances as the clean run, the same broker effects, and
no broker call sent twice.

Kills land (a) inside a broker call: when the request has arrived, before or after the broker
carried it out, before the reply; (b) a few milliseconds after a line was acknowledged, i.e. in
the middle of the next line's ticks, store commits and evaluations; (c) early in a restart,
during reconciliation and recovery.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from gateway_messages import BUY, CANCELLED, ES, FILLED, LIMIT, MNQ, SELL, STOP, Feed

from riskc.engine.adapters.projectx.intake import Message, parse_line
from riskc.engine.core.instruments import DEFAULT_INSTRUMENTS, symbol_of
from riskc.engine.store import Store

WORKER = Path(__file__).with_name("crash_worker.py")
ACCOUNT = 13298777
SEED = 20251029
KILLS = 24
POLICY = """policy "crash test"
  timezone America/Chicago
  trading_day_starts 17:00

use daily_loss(limit: $300)
use stop_required(grace: 20s)
use max_contracts_per_symbol(limits: {MNQ: 3}, default: 2)
"""
# 16:20 CDT on Wednesday 2025-10-29: the trading day ends 40 minutes later, at 22:00Z.
START = dt.datetime(2025, 10, 29, 21, 20, tzinfo=dt.UTC)
BOUNDARY = dt.datetime(2025, 10, 29, 22, 0, tzinfo=dt.UTC)


# -- the session -------------------------------------------------------------------------------


def session() -> list[Message]:
    """The trader's side of the session, as the Gateway reports it."""
    f = Feed(account_id=ACCOUNT, start=START)
    out: list[tuple[float, Message]] = []

    def at(t: float, *messages: Message) -> None:
        out.extend((t, m) for m in messages)

    at(0, f.account(0, 50000))
    # (A fill that closes a position is reported position first, so that the broker, which learns
    # the trader's side from these lines, never sees a position the trader has already closed.)
    # 1. MNQ long 2 with a stop placed at once; the stop fills: -$40.
    at(10, f.trade(10, 5001, MNQ, side=BUY, size=2, price=21000, fees="0.74"), f.position(10, MNQ, 2, 21000))
    at(12, f.order(12, 101, MNQ, type=STOP, side=SELL, size=2, stop=20990))
    at(
        60,
        f.order(60, 101, MNQ, type=STOP, side=SELL, size=2, stop=20990, status=FILLED, fill_volume=2),
        f.position(60, MNQ, 0, opened=10),
        f.trade(60, 5002, MNQ, side=SELL, size=2, price=20990, pnl=-40, fees="0.74"),
    )
    # 2. ES short 1 and no stop: stop_required closes it at 100.
    at(80, f.trade(80, 5003, ES, side=SELL, size=1, price=6000, fees="1.40"), f.position(80, ES, -1, 6000))
    # 3. MNQ long 5 over the limit of 3: reduced by 2; the trader's stop for 3 fills later: -$90.
    at(140, f.trade(140, 5004, MNQ, side=BUY, size=5, price=21010, fees="1.85"), f.position(140, MNQ, 5, 21010))
    at(145, f.order(145, 102, MNQ, type=STOP, side=SELL, size=3, stop=20995))
    at(
        200,
        f.order(200, 102, MNQ, type=STOP, side=SELL, size=3, stop=20995, status=FILLED, fill_volume=3),
        f.position(200, MNQ, 0, opened=140),
        f.trade(200, 5005, MNQ, side=SELL, size=3, price=20995, pnl=-90, fees="1.11"),
    )
    # 4. MNQ long 1 with a stop, flipped to short 2 by a sell of 3: the new short has no stop.
    at(230, f.trade(230, 5006, MNQ, side=BUY, size=1, price=21000, fees="0.37"), f.position(230, MNQ, 1, 21000))
    at(232, f.order(232, 103, MNQ, type=STOP, side=SELL, size=1, stop=20990))
    at(
        250,
        f.trade(250, 5007, MNQ, side=SELL, size=3, price=20990, pnl=-20, fees="1.11"),
        f.position(250, MNQ, -2, 20990, opened=250),
    )
    at(251, f.order(251, 103, MNQ, type=STOP, side=SELL, size=1, stop=20990, status=CANCELLED))
    # 5. ES long 2 with a stop, an MNQ entry working, an MNQ long without a stop; the ES stop
    #    fills for -$400: daily_loss flattens (closes MNQ, cancels the entry) and locks out.
    at(300, f.trade(300, 5008, ES, side=BUY, size=2, price=6010, fees="2.80"), f.position(300, ES, 2, 6010))
    at(302, f.order(302, 104, ES, type=STOP, side=SELL, size=2, stop=6006))
    at(320, f.trade(320, 5009, MNQ, side=BUY, size=1, price=21020, fees="0.37"), f.position(320, MNQ, 1, 21020))
    at(330, f.order(330, 105, MNQ, type=LIMIT, side=BUY, size=1, limit=21000))
    at(
        335,
        f.order(335, 104, ES, type=STOP, side=SELL, size=2, stop=6006, status=FILLED, fill_volume=2),
        f.position(335, ES, 0, opened=300),
        f.trade(335, 5010, ES, side=SELL, size=2, price=6006, pnl=-400, fees="2.80"),
    )
    # 6. Locked out: a new position is closed, a new entry cancelled, again and again.
    at(400, f.trade(400, 5011, MNQ, side=BUY, size=1, price=21030, fees="0.37"), f.position(400, MNQ, 1, 21030))
    at(450, f.order(450, 106, MNQ, type=LIMIT, side=BUY, size=1, limit=21000))
    at(600, f.trade(600, 5012, ES, side=BUY, size=1, price=6020, fees="1.40"), f.position(600, ES, 1, 6020))
    at(900, f.order(900, 107, ES, type=STOP, side=BUY, size=1, stop=6050))
    # 7. After 17:00 CT (t=2400) a new day: the lockout is over; an MNQ long without a stop is
    #    still inside its grace period when the session ends.
    at(2405, f.trade(2405, 5013, MNQ, side=BUY, size=1, price=21050, fees="0.37"), f.position(2405, MNQ, 1, 21050))
    last = 2418
    price = {MNQ: Decimal(21000), ES: Decimal(6000)}
    for second in range(1, last + 1, 3):
        contract = MNQ if second % 2 else ES
        price[contract] += Decimal("0.25") * (1 if (second // 7) % 2 else -1)
        at(second + 0.5, f.quote(second + 0.5, contract, price[contract]))
    out.sort(key=lambda item: item[0])
    return [m for _, m in out]


# -- the broker, outside the killed process ----------------------------------------------------


def _fee(contract: str) -> Decimal:
    return Decimal("0.37") if symbol_of(contract).startswith("M") else Decimal("1.40")


class FakeBroker:
    """The account at the broker: the trader's side comes from the recording (``observe``), riskc's
    calls are carried out at once, a close filling 2 ticks against the position (deterministic,
    so a clean and a crashed run book the same P&L). ``log`` holds every call that arrived."""

    def __init__(self, lines: list[Message]) -> None:
        self.lines = lines
        self.observed = 0
        self.now = lines[0].ts
        self.positions: dict[str, dict[str, Any]] = {}
        self.episodes: Counter = Counter()  # contract -> how many positions it opened
        self.orders: dict[int, dict[str, Any]] = {}
        self.trades: list[dict[str, Any]] = []
        self.account: dict[str, Any] | None = None
        self.log: list[dict[str, Any]] = []
        self._ids = iter(range(900_001, 10**9))

    def observe(self, line: int) -> list[str]:
        if line <= self.observed:
            return []  # seen before a kill: the worker is redoing that line
        assert line == self.observed + 1, (line, self.observed)
        self.observed, message = line, self.lines[line - 1]
        self.now = message.ts
        if message.hub != "user":
            return []
        data = dict(message.args[0]["data"])
        target = message.target
        if target == "GatewayUserAccount":
            self.account = data
        elif target == "GatewayUserPosition":
            self._set_position(data)
        elif target == "GatewayUserOrder":
            self._set_order(data)
        elif target == "GatewayUserTrade":
            self.trades.append(data)
            return [self._balance(data["profitAndLoss"] or 0, data["fees"])]
        return []

    def _set_position(self, data: dict[str, Any]) -> None:
        contract, before = data["contractId"], self.positions.get(data["contractId"])
        if not data["size"]:
            self.positions.pop(contract, None)
            return
        if before is None or before["type"] != data["type"]:
            self.episodes[contract] += 1
        self.positions[contract] = data | {"episode": self.episodes[contract]}

    def _set_order(self, data: dict[str, Any]) -> None:
        if data["status"] in (1, 6):
            self.orders[data["id"]] = data
        else:
            self.orders.pop(data["id"], None)

    def send(self, call: dict[str, Any]) -> dict[str, Any]:
        entry = {
            "key": call["key"],
            "call": call["call"],
            "contract_id": call.get("contract_id"),
            "order_id": call.get("order_id"),
            "line": self.observed,
        }
        self.log.append(entry)
        kind = call["call"]
        if kind in ("close", "partial_close"):
            position = self.positions.get(call["contract_id"])
            if position is None:
                entry["refused"] = "no position"
                return {"ok": False, "error": "no open position"}
            entry["episode"] = (call["contract_id"], position["episode"])
            size = position["size"] if kind == "close" else int(call["size"])
            return {"ok": True, "messages": self._fill(position, size)}
        if kind == "cancel":
            order = self.orders.pop(int(call["order_id"]), None)
            if order is None:
                entry["refused"] = "no such order"
                return {"ok": False, "error": "order is not working"}
            update = order | {"status": CANCELLED, "updateTimestamp": self.now.isoformat()}
            return {"ok": True, "messages": [self._line("GatewayUserOrder", update)]}
        entry["refused"] = "unsupported"
        return {"ok": False, "error": f"{kind} is not supported here"}

    def _fill(self, position: dict[str, Any], size: int) -> list[str]:
        contract = position["contractId"]
        spec = DEFAULT_INSTRUMENTS.spec(symbol_of(contract))
        direction = 1 if position["type"] == 1 else -1
        price = Decimal(str(position["averagePrice"])) - 2 * spec.tick_size * direction
        pnl = (price - Decimal(str(position["averagePrice"]))) * direction * size / spec.tick_size * spec.tick_value
        fees = _fee(contract) * size
        trade = {
            "id": next(self._ids),
            "accountId": ACCOUNT,
            "contractId": contract,
            "creationTimestamp": self.now.isoformat(),
            "price": price,
            "profitAndLoss": pnl,
            "fees": fees,
            "side": SELL if direction > 0 else BUY,
            "size": size,
            "voided": False,
            "orderId": 0,
        }
        self.trades.append(trade)
        left = position["size"] - size
        after = position | {"size": left, "type": position["type"] if left else 0}
        if left:
            self.positions[contract] = after
        else:
            self.positions.pop(contract)
        public = {k: v for k, v in after.items() if k != "episode"}
        return [
            self._line("GatewayUserTrade", trade),
            self._line("GatewayUserPosition", public),
            self._balance(pnl, fees),
        ]

    def _balance(self, pnl: Any, fees: Any) -> str:
        balance = Decimal(str(self.account["balance"])) + Decimal(str(pnl)) - Decimal(str(fees))
        self.account = dict(self.account, balance=balance)
        return self._line("GatewayUserAccount", self.account)

    def _line(self, target: str, data: dict[str, Any]) -> str:
        return Message(self.now, "user", target, [{"action": 1, "data": data}]).to_json()

    def state(self) -> dict[str, Any]:
        public = [{k: v for k, v in p.items() if k != "episode"} for p in self.positions.values()]
        return {
            "positions": public,
            "orders": list(self.orders.values()),
            "trades": self.trades,
            "account": self.account,
            "observed": self.observed,
        }


# -- killing -----------------------------------------------------------------------------------


@dataclass
class Kill:
    """Where to kill one life of the worker.

    - ``send``: at the first broker call once the worker is on line ``line`` or later, ``before``
      or ``after`` the broker carried it out (never replying);
    - ``ack``: ``delay`` seconds after the worker acknowledged line ``line``;
    - ``restart``: at the ``request``-th request of the life (reconciliation, recovery, resends).
    """

    mode: str
    line: int = 0
    phase: str = "before"
    delay: float = 0.0
    request: int = 1


def kill_plan(rng: random.Random, lines: int, send_lines: list[int]) -> list[Kill]:
    sends = rng.sample(send_lines, min(8, len(send_lines)))
    plan = [Kill("send", line, rng.choice(["before", "after"])) for line in sends]
    plan += [Kill("ack", line, delay=rng.uniform(0, 0.004)) for line in rng.sample(range(2, lines - 1), 12)]
    plan.sort(key=lambda k: k.line)
    for _ in range(KILLS - len(plan)):  # a kill right after another one: during recovery
        at = rng.randrange(1, len(plan))
        plan.insert(at, Kill("restart", plan[at - 1].line, request=rng.randint(1, 3)))
    return plan


@dataclass
class Life:
    proc: subprocess.Popen
    kill: Kill | None
    requests: int = 0
    line: int = 0
    killed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def kill_now(self) -> None:
        with self.lock:
            if not self.killed and self.proc.poll() is None:
                self.killed = True  # before the kill: the main thread's proc.wait() may return at once
                os.kill(self.proc.pid, signal.SIGKILL)


class BrokerServer:
    """Serves one worker at a time over a Unix socket and kills it where its ``Life`` says."""

    def __init__(self, broker: FakeBroker, path: Path) -> None:
        self.broker = broker
        self.life: Life | None = None
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(1)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            life = self.life  # set before the worker that connects here was started
            try:
                with conn, conn.makefile("r", encoding="utf-8") as reader:
                    for text in reader:
                        # A request that arrives is carried out, even if its sender was killed
                        # meanwhile: a call on the wire when riskc dies still reaches the broker.
                        reply = self._handle(life, json.loads(text, parse_float=Decimal))
                        if reply is None:
                            break  # killed: no reply, the connection dies with the process
                        conn.sendall((json.dumps(reply, default=str) + "\n").encode())
            except OSError:
                pass  # the worker died while we answered

    def _handle(self, life: Life, request: dict[str, Any]) -> dict[str, Any] | None:
        broker = self.broker
        life.requests += 1
        op = request["op"]
        if op == "observe":
            life.line = request["line"]
        kill = life.kill
        if kill is not None and kill.mode == "restart" and life.requests >= kill.request:
            life.kill_now()
            return None
        due = (
            kill is not None
            and kill.mode == "send"
            and (op == "send" and life.line >= kill.line or life.line >= kill.line + 40)
        )
        if due and kill.phase == "before":
            life.kill_now()
            return None
        if op == "observe":
            reply = {"messages": broker.observe(request["line"])}
        elif op == "send":
            reply = broker.send(request["call"])
        else:
            reply = broker.state()
        if due:
            life.kill_now()
            return None
        return reply

    def close(self) -> None:
        self.listener.close()


@dataclass
class Run:
    store: Path
    broker: FakeBroker
    acked: set[tuple[int, str]] = field(default_factory=set)
    kills: int = 0
    lives: int = 0
    kill_modes: Counter = field(default_factory=Counter)


def run(tmp: Path, name: str, recording: Path, policy: Path, plan: list[Kill]) -> Run:
    lines = [parse_line(t, 0) for t in recording.read_text().splitlines()]
    result = Run(tmp / f"{name}.db", FakeBroker(lines))
    server = BrokerServer(result.broker, tmp / f"{name}.sock")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")])
    )
    plan = list(plan)
    try:
        while True:
            kill = plan.pop(0) if plan else None
            errors = tmp / f"{name}-{result.lives}.stderr"
            with errors.open("w") as stderr:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        str(WORKER),
                        str(recording),
                        str(result.store),
                        str(policy),
                        str(tmp / f"{name}.sock"),
                    ],
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                    env=env,
                )
            life = Life(proc, kill)
            server.life = life
            result.lives += 1
            done = _read(life, result)
            proc.wait(timeout=60)
            if life.killed:
                result.kills += 1
                result.kill_modes[kill.mode] += 1
                continue
            assert proc.returncode == 0 and done, f"worker failed ({proc.returncode}):\n{errors.read_text()}"
            return result  # the stream ended (kills left in the plan are not needed)
    finally:
        server.close()


def _read(life: Life, result: Run) -> bool:
    """Read the worker's acknowledgements until it exits; arm the `ack` kill."""
    kill, done = life.kill, False
    for text in life.proc.stdout:
        parts = text.split()
        if parts[:1] == ["ACK"] and len(parts) == 4 and len(parts[3]) == 64:
            line, seq, digest = int(parts[1]), int(parts[2]), parts[3]
            result.acked.add((seq, digest))
            if kill is not None and kill.mode == "ack" and line >= kill.line and not life.killed:
                threading.Timer(kill.delay, life.kill_now).start()
                kill = None
        elif parts == ["DONE"]:
            done = True
    return done


# -- what must hold ----------------------------------------------------------------------------


def outcome(path: Path) -> dict[str, Any]:
    """What a crash must not change, read from a state file."""
    with Store.open(path) as store:
        db = store.db
        return {
            "lockouts": sorted(
                db.execute("SELECT scope, symbol, rule, until, condition, released_at FROM lockouts"), key=repr
            ),
            "timers": [(t.key, t.started_at, t.expires_at) for t in store.timers(ACCOUNT)],
            "days": {day: store.day_totals(ACCOUNT, day) for day in ("2025-10-29", "2025-10-30")},
            "eod": db.execute(
                "SELECT trading_day, eod_balance, eod_high_water FROM balances"
                " WHERE eod_balance IS NOT NULL ORDER BY trading_day"
            ).fetchall(),
            "actions": Counter(state for (state,) in db.execute("SELECT state FROM actions")),
        }


def effects(broker: FakeBroker) -> Counter:
    """What riskc did at the broker: each executed call by what it acted on."""
    return Counter((e["call"], e.get("episode") or e.get("order_id")) for e in broker.log if "refused" not in e)


@pytest.mark.crash
def test_kill_9_at_random_points_loses_nothing_and_sends_nothing_twice(tmp_path):
    started = time.monotonic()
    recording, policy = tmp_path / "session.jsonl", tmp_path / "crash.risk"
    recording.write_text("".join(m.to_json() + "\n" for m in session()))
    policy.write_text(POLICY)

    clean = run(tmp_path, "clean", recording, policy, [])
    assert clean.kills == 0 and clean.lives == 1
    expected = outcome(clean.store)
    # The session does what it says: a partial close, closes after the grace period, a flatten
    # and closes under the lockout, cancels; a lockout until the boundary; a running timer.
    assert sorted(Counter(e["call"] for e in clean.broker.log).items()) == [
        ("cancel", 3),
        ("close", 5),
        ("partial_close", 1),
    ]
    assert [(lo[2], lo[3]) for lo in expected["lockouts"]] == [("daily_loss", "2025-10-29T22:00:00.000000+00:00")]
    assert [t[0] for t in expected["timers"]] == [f"uncovered:{MNQ}"]
    assert expected["days"]["2025-10-29"].realized_pnl < -300 and expected["eod"][0][0] == "2025-10-29"

    rng = random.Random(SEED)
    lines = len(recording.read_text().splitlines())
    send_lines = sorted({e["line"] for e in clean.broker.log})
    crashed = run(tmp_path, "crashed", recording, policy, kill_plan(rng, lines, send_lines))

    assert crashed.kills >= 20, crashed.kill_modes
    with Store.open(crashed.store) as store:
        verification = store.verify_audit()
        assert verification.ok, verification
        records = store.audit_records()
    # Each acknowledgement names the head of the chain: with the chain verified, the acknowledged
    # record being there with its hash means every record before it is there too.
    lost = crashed.acked - {(r.seq, r.hash) for r in records}
    assert not lost, f"{len(lost)} acknowledged audit records lost"
    recovered = Counter(
        json.loads(r.payload)["outcome"]
        for r in records
        if r.kind == "outcome"
        and "not found in broker state" in r.payload
        or r.kind == "outcome"
        and "recovered" in r.payload
    )
    got = outcome(crashed.store)
    for name in ("lockouts", "timers", "days", "eod"):
        assert got[name] == expected[name], name
    assert (
        set(got["actions"]) <= {"confirmed", "failed"}
        and got["actions"]["confirmed"] == expected["actions"]["confirmed"]
    )
    # Exactly once: no key reached the broker twice, no position was closed twice, nothing refused.
    keys = Counter(e["key"] for e in crashed.broker.log)
    assert [k for k, n in keys.items() if n > 1] == []
    assert [e for e in crashed.broker.log if "refused" in e] == []
    assert effects(crashed.broker) == effects(clean.broker)
    assert max(effects(crashed.broker).values()) == 1
    print(
        f"\ncrash test: {crashed.kills} kills over {crashed.lives} lives ({dict(crashed.kill_modes)}); "
        f"{len(crashed.acked)} acknowledgements up to record {max(crashed.acked)[0]} of {len(records)}; "
        f"{len(crashed.broker.log)} broker calls; unconfirmed calls verified after a restart: {dict(recovered)}; "
        f"{time.monotonic() - started:.1f}s"
    )
