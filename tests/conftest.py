"""Shared test helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def repo() -> Path:
    return REPO


# -- PostgreSQL (issue 21): one throwaway server per session, one fresh schema per test ----------


@pytest.fixture(scope="session")
def pg_server():
    """The suite's own PostgreSQL (tests/pgserver.py). Never skipped: if it cannot start, every
    test that uses it errors with the reason."""
    from pgserver import PgServer

    server = PgServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A URL for an empty desk (its own schema) on the session's server."""
    return pg_server.new_desk()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_location(request, tmp_path: Path) -> str | Path:
    """Where a store lives, once per backend: a file, or a PostgreSQL desk."""
    if request.param == "sqlite":
        return tmp_path / "state" / "riskc.db"
    return request.getfixturevalue("pg_url")
