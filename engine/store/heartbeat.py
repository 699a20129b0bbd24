"""The daemon's heartbeat (PRODUCT.md §9): one row saying which process last ran on this state
file and when it was last alive, so `riskc status` can tell a running guard from one that died.

Times are the wall clock, passed in by the caller like every store time: a heartbeat is about the
process, not about trading (the demo's engine runs on recorded time, its heartbeat does not).
A beat is an ordinary commit (synchronous=NORMAL): losing the last one to a power cut only makes
the daemon look dead a few seconds earlier than it was.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from riskc.engine.store.codec import parse_time, time_text


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pid: int
    host: str
    started_at: dt.datetime
    beat_at: dt.datetime
    every: dt.timedelta
    stopped_at: dt.datetime | None

    def is_fresh(self, now: dt.datetime, misses: int = 3) -> bool:
        """Beaten within ``misses`` intervals (plus a second of slack for a slow commit)."""
        return self.stopped_at is None and now - self.beat_at <= self.every * misses + dt.timedelta(seconds=1)


def start(store: Any, now: dt.datetime, *, pid: int, host: str, every: dt.timedelta) -> None:
    with store._write():
        store.db.execute(
            "INSERT INTO heartbeat (id, pid, host, started_at, beat_at, every_seconds, stopped_at)"
            " VALUES (1, ?, ?, ?, ?, ?, NULL) ON CONFLICT (id) DO UPDATE SET pid = excluded.pid,"
            " host = excluded.host, started_at = excluded.started_at, beat_at = excluded.beat_at,"
            " every_seconds = excluded.every_seconds, stopped_at = NULL",
            [pid, host, time_text(now), time_text(now), every.total_seconds()],
        )


def beat(store: Any, now: dt.datetime) -> None:
    with store._write():
        store.db.execute("UPDATE heartbeat SET beat_at = ? WHERE id = 1", [time_text(now)])


def stop(store: Any, now: dt.datetime) -> None:
    """A clean stop: `riskc status` then says the daemon stopped, not that it died."""
    with store._write():
        store.db.execute("UPDATE heartbeat SET beat_at = ?, stopped_at = ? WHERE id = 1", [time_text(now)] * 2)


def read(store: Any) -> Heartbeat | None:
    row = store.db.execute(
        "SELECT pid, host, started_at, beat_at, every_seconds, stopped_at FROM heartbeat WHERE id = 1"
    ).fetchone()
    if row is None:
        return None
    return Heartbeat(
        row[0],
        row[1],
        parse_time(row[2]),
        parse_time(row[3]),
        dt.timedelta(seconds=row[4]),
        parse_time(row[5]),
    )  # type: ignore[arg-type]
