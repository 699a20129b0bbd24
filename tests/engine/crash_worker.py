"""The process test_crash.py kills: the engine over a recording, with a real store and a broker
that lives in the parent process (PRODUCT.md §7, §8).

    python crash_worker.py RECORDING STATE POLICY BROKER_SOCKET

It does what the daemon does after a start, then what replay does per message:

1. open the store; the lines already done are in the store (``crash_worker_progress``), so a
   restart resumes mid-stream: after the last line done, or after the last line the broker has
   seen if that is later (the world moved on while riskc was down; like a daemon after a
   restart, it learns that part from the broker's state, not from old feed messages);
2. reconcile with the broker's state (``Engine.reconcile``): the book is rebuilt from the broker,
   and every action planned or sent but never confirmed is verified against that state before
   anything is resent (``_recover_unconfirmed``); the calls that evaluation plans are executed;
3. for each remaining line: the 1-second ticks up to its time, then the broker observes it (the
   broker's world moves first, the feed reports it), then the engine applies it and whatever the
   broker answered; every call is ``mark_sent`` (committed) before it leaves, ``finished`` after.
   Then the line is committed as done.

"Acknowledged" means committed and reported: after each line, and after each ``mark_sent``, it
prints ``ACK <line> <seq> <hash>`` with the audit head, once the commit has returned. The parent
checks that every acknowledged record is still there after any number of kills.

The broker protocol is one JSON object per line over a Unix socket: ``observe`` (line number),
``send`` (a call), ``state``. Numbers cross as decimal strings.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import sys
from decimal import Decimal
from pathlib import Path

from riskc.engine.adapters.port import BrokerCall, BrokerState
from riskc.engine.adapters.projectx.decode import broker_state, decode
from riskc.engine.adapters.projectx.intake import Message, parse_line
from riskc.engine.enforce.enforcer import Effects
from riskc.engine.enforce.executor import took_effect
from riskc.engine.runner import Engine, PolicySet
from riskc.engine.store import Store

ACCOUNT = 13298777
SECOND = dt.timedelta(seconds=1)
PROGRESS = "crash_worker_progress"


class BrokerClient:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.reader = self.sock.makefile("r", encoding="utf-8")

    def ask(self, request: dict) -> dict:
        self.sock.sendall((json.dumps(request, default=str) + "\n").encode())
        line = self.reader.readline()
        if not line:
            raise SystemExit("broker went away")
        return json.loads(line, parse_float=Decimal)

    def observe(self, line: int) -> list[Message]:
        return _messages(self.ask({"op": "observe", "line": line})["messages"])

    def send(self, call: BrokerCall) -> dict:
        reply = self.ask({"op": "send", "call": call.to_record()})
        reply["messages"] = _messages(reply.get("messages", []))
        return reply

    def state(self) -> tuple[BrokerState, int]:
        """The broker's state, and the last line it observed (its clock)."""
        reply = self.ask({"op": "state"})
        state = broker_state(reply["positions"], reply["orders"], reply["trades"], reply["account"], _utcnow())
        return state, reply["observed"]


def _utcnow():
    import datetime

    return datetime.datetime.now(datetime.UTC)


def _messages(lines: list[str]) -> list[Message]:
    return [parse_line(text, 0) for text in lines]


class Worker:
    def __init__(self, recording: Path, state: Path, policy: Path, broker: str) -> None:
        self.lines = [parse_line(text, n) for n, text in enumerate(recording.read_text().splitlines(), 1)]
        self.store = Store.open(state)
        self.store.db.execute(
            f"CREATE TABLE IF NOT EXISTS {PROGRESS} (id INTEGER PRIMARY KEY CHECK (id = 1), line INTEGER NOT NULL)"
        )
        policies, diagnostics, _ = PolicySet.from_paths([policy])
        if policies is None:
            raise SystemExit("\n".join(map(str, diagnostics)))
        self.engine = Engine(policies, self.store, account_id=ACCOUNT)
        self.broker = BrokerClient(broker)

    def done(self) -> int:
        row = self.store.db.execute(f"SELECT line FROM {PROGRESS} WHERE id = 1").fetchone()
        return 0 if row is None else row[0]

    def run(self) -> None:
        state, observed = self.broker.state()
        done = max(self.done(), observed)
        # A real reconciliation happens at wall time, after everything the broker reports: here,
        # at the time of the last line the broker saw.
        _, effects = self.engine.reconcile(state, self.lines[max(done, 1) - 1].ts)
        self.execute(effects)
        for number in range(done + 1, len(self.lines) + 1):
            self.unit(number)
        print("DONE", flush=True)

    def unit(self, number: int) -> None:
        message = self.lines[number - 1]
        if number > 1:
            tick = self.lines[number - 2].ts.replace(microsecond=0) + SECOND
            while tick <= message.ts:
                self.execute(self.engine.on_tick(tick))
                tick += SECOND
        answers = self.broker.observe(number)
        self.execute(self.engine.on_events(decode(message)))
        for answer in answers:
            self.execute(self.engine.on_events(decode(answer)))
        with self.store.db.conn:  # its own transaction, after every commit of this line returned
            self.store.db.execute(f"INSERT OR REPLACE INTO {PROGRESS} (id, line) VALUES (1, ?)", [number])
        self.ack(number)

    def execute(self, effects: Effects) -> None:
        engine = self.engine
        for call in effects.calls:
            now = engine.book.now
            engine.mark_sent(call, now)
            self.ack(0)
            reply = self.broker.send(call)
            if reply["ok"]:
                engine.finished(call, True, now, result={"broker": "fake"})
            else:
                state, _ = self.broker.state()
                engine.finished(call, took_effect(call, state), now, reply["error"])
            for answer in reply["messages"]:
                self.execute(engine.on_events(decode(answer)))

    def ack(self, line: int) -> None:
        head = self.store.audit_head()
        if head is not None:
            print(f"ACK {line} {head[0]} {head[1]}", flush=True)


def main(argv: list[str]) -> None:
    recording, state, policy, broker = argv
    Worker(Path(recording), Path(state), Path(policy), broker).run()


if __name__ == "__main__":
    main(sys.argv[1:])
