"""The state file on disk: connecting, telling a usable file from one that is not, creating a new
one atomically, and the daemon's exclusive lock.

A state file holds lockouts a trader was promised. So an existing file that is empty, truncated,
foreign or corrupt is never taken for a fresh start (``file_problem`` says what is wrong, and
the caller refuses, naming the file); ``--new-state`` moves it aside, never deletes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from riskc.engine.store.migrations import MIGRATIONS, apply_migrations
from riskc.engine.store.models import StateFileError

SQLITE_HEADER = b"SQLite format 3\x00"
BUSY_TIMEOUT_MS = 5000


def lenient_text(raw: bytes) -> str:
    """SQLite TEXT to str without ever raising: a flipped byte in the file becomes U+FFFD, so the
    record it is in fails its hash check (and is reported) instead of the read crashing."""
    return raw.decode("utf-8", "replace")


def connect(path: Path, *, readonly: bool = False, busy_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) if readonly else sqlite3.connect(path)
    conn.text_factory = lenient_text
    conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
    return conn


def file_problem(path: Path) -> str | None:
    """Why the existing file at ``path`` cannot be used as a state file, or None."""
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if not header:
        return "is empty (0 bytes)"
    if header != SQLITE_HEADER:
        return "is not an SQLite database (a foreign or overwritten file)"
    try:
        conn = connect(path, readonly=True)
        try:
            return content_problem(conn)
        finally:
            conn.close()
    except sqlite3.OperationalError as error:
        if "locked" in str(error):
            return None  # a writer holds it: its content is checked by whoever opens it next
        return f"cannot be read as SQLite ({error})"
    except sqlite3.DatabaseError as error:
        return f"is corrupt or truncated ({error})"


def content_problem(conn: sqlite3.Connection) -> str | None:
    """A connected file: SQLite's own structural check, then whether riskc wrote it."""
    check = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
    if check != ["ok"]:
        return f"is corrupt or truncated (SQLite quick_check: {'; '.join(check)})"
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if MIGRATIONS.migrations_table not in tables:
        return "is an SQLite database but not a riskc state file" if tables else "is an empty SQLite database"
    if not MIGRATIONS.applied(Database(conn, execute_plugins=False)):
        return "is an SQLite database but not a riskc state file"
    return None


def refusal(path: Path, problem: str) -> StateFileError:
    return StateFileError(
        f"{path} {problem}: riskc will not start over on it (it may be what is left of lockouts and "
        "the audit log); restore it from a backup, or pass --new-state to keep it aside and start afresh"
    )


def move_aside(path: Path) -> Path:
    """``--new-state``: the unusable file (and its sidecars) under a new name, kept as evidence."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.unusable-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            os.replace(source, aside.with_name(aside.name + suffix))
    return aside


def create_fresh(path: Path) -> None:
    """A new state file appears complete or not at all: it is built under a temporary name (0600
    from its first instant) and renamed into place, so a crash during the first start never
    leaves an empty file at ``path``, which the next start would rightly refuse."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.new-{os.getpid()}")
    temp.unlink(missing_ok=True)
    os.close(os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    db = Database(connect(temp), execute_plugins=False)
    try:
        apply_migrations(db)
    finally:
        db.close()
    os.replace(temp, path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def tighten(path: Path) -> None:
    """The file and its sidecars are 0600: they hold accounts, P&L and the passphrase hash."""
    for suffix in ("", "-wal", "-shm"):
        sidecar = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            os.chmod(sidecar, 0o600)


# -- one daemon per state file ----------------------------------------------------------------


class DaemonLock:
    """An exclusive ``flock`` on ``<state>.lock``, held for the daemon's whole life: a second
    daemon on the same state file would send every broker call twice and interleave two books in
    one ledger. The lock file says who holds it (pid, host, since); the kernel drops the lock when
    the process dies, even by ``kill -9``, so a stale file never blocks a restart."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, state: Path) -> DaemonLock:
        import fcntl

        path = state.with_name(state.name + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise StateFileError(
                f"{state} is in use by another riskc daemon ({holder}); one daemon per state file"
            ) from None
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(UTC).isoformat()}
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = -1


def _read_holder(fd: int) -> str:
    try:
        info: dict[str, Any] = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        info = {}
    if not info.get("pid"):
        return "holder unknown"
    return f"pid {info['pid']} on {info.get('host', '?')}, since {info.get('since', '?')}"
