"""A simulated desk worker (issue 21): leases accounts on a PostgreSQL desk and enforces one
scripted breach per account with the store's exactly-once protocol, so that failover and fencing
can be tested (tests/engine/test_desk_failover.py) and measured without a broker.

Each account ``a`` breaches at ``t0 + offset(a)``; its owner then locks it (a lockout), plans a
flatten under its lease epoch, marks it sent under the epoch (durable, fenced), "sends" it (one
line appended and fsynced to the simulated broker's log, which is what the tests count), and
marks it confirmed. An account taken over is first recovered from the store as after a restart:
an unconfirmed call is verified against the broker's log, confirmed if it is there, else failed
(retryable) and planned again under the new epoch.

    python -m riskc.engine.sim.desk URL --accounts 1-30 --broker-log calls.jsonl --t0 EPOCH_S
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from riskc.engine.store import LeaseLost, Store, idempotency_key
from riskc.engine.store.desk import Desk

RULE = "daily_loss"
DAY = "2025-10-29"
STEP_S = 0.05


def breach_offset(account_id: int, spread_s: float, count: int) -> float:
    return (account_id % count) * spread_s / count


class SimBrokerLog:
    """The broker's side: every call that reached it, one JSON line each, fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def send(self, key: str, account_id: int, worker: str, epoch: int) -> None:
        line = json.dumps({"key": key, "account": account_id, "worker": worker, "epoch": epoch}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def keys(self) -> set[str]:
        if not self.path.exists():
            return set()
        return {json.loads(line)["key"] for line in self.path.read_text().splitlines() if line.strip()}


class SimWorker:
    def __init__(self, url: str, accounts: list[int], broker: SimBrokerLog, t0: float, spread_s: float, **desk) -> None:
        self.desk = Desk(url, accounts, **desk)
        self.store = Store.open(url)
        self.broker = broker
        self.t0, self.spread_s, self.count = t0, spread_s, len(accounts)
        self.done: set[int] = set()
        self.pause_account = int(os.environ.get("RISKC_SIM_PAUSE_BEFORE_SENT", "0") or 0)

    def now(self) -> datetime:
        return datetime.now(UTC)

    def poll(self) -> None:
        gained, lost = self.desk.poll()
        for account_id in lost:
            self.done.discard(account_id)
            print(f"lost {account_id}", flush=True)
        for account_id in gained:
            print(f"gained {account_id} epoch {self.desk.held[account_id]}", flush=True)
            self.recover(account_id)

    def recover(self, account_id: int) -> None:
        """As after a restart: what was planned or sent is verified against the broker."""
        sent = self.broker.keys()
        for record in self.store.unconfirmed_actions(account_id):
            if record.key in sent:
                self.store.mark_confirmed(record.key, self.now(), {"verified": "in the broker's log"})
            else:
                self.store.mark_failed(record.key, self.now(), "not at the broker after takeover", retryable=True)

    def step(self) -> None:
        elapsed = time.time() - self.t0
        for account_id, epoch in list(self.desk.held.items()):
            if account_id in self.done or elapsed < breach_offset(account_id, self.spread_s, self.count):
                continue
            try:
                self.enforce(account_id, epoch)
            except LeaseLost as refusal:
                print(f"refused {account_id}: {refusal}", flush=True)
                self.desk.held.pop(account_id, None)

    def enforce(self, account_id: int, epoch: int) -> None:
        now = self.now()
        self.store.add_lockout(account_id, RULE, "scripted breach", now, until=now + timedelta(days=1))
        key = idempotency_key(RULE, f"account:{account_id}", DAY, 1)
        record, is_new = self.store.plan_action(key, account_id, RULE, {"action": "flatten"}, now, lease_epoch=epoch)
        if not is_new:
            if record.state == "confirmed":
                self.done.add(account_id)
            return
        if account_id == self.pause_account:
            print(f"pausing before sent {account_id}", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)
        self.store.mark_sent(key, self.now(), lease_epoch=epoch)
        self.broker.send(key, account_id, self.desk.worker, epoch)
        self.store.mark_confirmed(key, self.now(), {"sent_by": self.desk.worker})
        self.done.add(account_id)
        print(f"sent {account_id}", flush=True)

    def run(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        next_poll = 0.0
        while time.monotonic() < end:
            if time.monotonic() >= next_poll:
                self.poll()
                next_poll = time.monotonic() + self.desk.poll_s
            self.step()
            time.sleep(STEP_S)
        self.desk.close()
        self.store.close()


def _accounts(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m riskc.engine.sim.desk")
    parser.add_argument("url")
    parser.add_argument("--accounts", required=True, type=_accounts, help="FIRST-LAST")
    parser.add_argument("--broker-log", required=True, type=Path)
    parser.add_argument("--t0", type=float, default=None, help="when the session starts (epoch seconds)")
    parser.add_argument("--spread", type=float, default=6.0, help="breaches spread over this many seconds")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--worker", default=None)
    parser.add_argument("--ttl", type=float, default=5.0)
    parser.add_argument("--poll", type=float, default=1.0)
    args = parser.parse_args(argv)
    worker = SimWorker(
        args.url,
        args.accounts,
        SimBrokerLog(args.broker_log),
        args.t0 or time.time(),
        args.spread,
        worker=args.worker,
        ttl_s=args.ttl,
        poll_s=args.poll,
    )
    print("ready", flush=True)
    worker.run(args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
