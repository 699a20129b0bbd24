"""A throwaway PostgreSQL server for the test suite (issue 21): ``initdb`` + ``pg_ctl`` on a
temporary directory and a free loopback port, started once per session.

PostgreSQL refuses to run as root, so as root the server runs as Debian's ``postgres`` user
(``runuser -u postgres --``). Nothing is skipped: when the binaries are missing (``./dev test``
installs Debian's ``postgresql`` package first) or the server will not start, ``PgServer.start``
raises with the server's own log, and every test that needs it fails loudly.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

START_TIMEOUT_S = 60


class PgServerError(RuntimeError):
    pass


def find_bin(name: str) -> str:
    """PATH first, then Debian's versioned directories, newest first."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version_key, reverse=True)
    if candidates:
        return candidates[0]
    raise PgServerError(
        f"PostgreSQL's {name} is not installed (not on PATH, not under /usr/lib/postgresql/*/bin): "
        "`./dev test` installs Debian's `postgresql` package when run as root; or install it yourself "
        "(apt-get install postgresql)"
    )


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.parent.name
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PgServer:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="riskc-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = "postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                raise PgServerError("running as root, and there is no `postgres` user to run PostgreSQL as") from None
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        else:
            self.user = pwd.getpwuid(os.geteuid()).pw_name

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=START_TIMEOUT_S)

    def start(self) -> PgServer:
        initdb, pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        done = self._run(
            initdb, "-D", str(self.data), "-U", self.user, "--auth=trust", "--locale=C", "--encoding=UTF8", "--no-sync"
        )
        if done.returncode != 0:
            raise PgServerError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        # Test speed, not durability: fsync off (the durability argument is the server's, not ours).
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        log = self.root / "server.log"
        done = self._run(pg_ctl, "-D", str(self.data), "-l", str(log), "-o", options, "-w", "-t", "60", "start")
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PgServerError(f"pg_ctl start failed: {done.stderr.strip() or done.stdout.strip()}\n{tail}")
        self._wait()
        return self

    def _wait(self) -> None:
        import psycopg

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    raise PgServerError(f"PostgreSQL on port {self.port} does not answer: {error}") from None
                time.sleep(0.1)

    def new_desk(self) -> str:
        """A URL for a fresh, empty schema: one desk per test."""
        import psycopg

        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return f"{self.url}?options=-csearch_path%3D{schema}"

    def stop(self) -> None:
        try:
            self._run(find_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
