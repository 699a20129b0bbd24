"""The schema, as named migrations applied once each (sqlite-utils ``Migrations``): a state file
written by an older riskc is upgraded in place, never recreated, because it holds lockouts a
trader was promised and the audit chain.

Each migration runs in its own transaction together with the row that records it in
``_sqlite_migrations``, so a crash mid-upgrade leaves it pending, not half-applied. Add new
migrations at the end; never edit one that has shipped.

Statements are executed one by one: ``executescript`` would COMMIT the migration's transaction
half-way. (``applied_at`` is stamped by sqlite-utils from the wall clock: it describes the file,
not trading, so it is the one time the store does not take from its caller.)
"""

from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

MIGRATIONS = Migrations("riskc.store")

_INITIAL = (
    """CREATE TABLE lockouts (
        id INTEGER PRIMARY KEY,
        scope TEXT NOT NULL CHECK (scope IN ('account', 'symbol')),
        account_id INTEGER NOT NULL,
        symbol TEXT,
        rule TEXT NOT NULL,
        reason TEXT NOT NULL,
        since TEXT NOT NULL,
        until TEXT,
        condition TEXT,
        origin TEXT NOT NULL CHECK (origin IN ('rule', 'personal', 'admin')),
        released_at TEXT,
        released_by TEXT,
        release_reason TEXT,
        CHECK ((until IS NULL) <> (condition IS NULL)),
        CHECK ((scope = 'account') = (symbol IS NULL))
    )""",
    "CREATE INDEX lockouts_account ON lockouts (account_id, released_at)",
    """CREATE TABLE timers (
        account_id INTEGER NOT NULL,
        key TEXT NOT NULL,
        started_at TEXT NOT NULL,
        expires_at TEXT,
        payload TEXT NOT NULL,
        PRIMARY KEY (account_id, key)
    )""",
    """CREATE TABLE trades (
        account_id INTEGER NOT NULL,
        trade_id TEXT NOT NULL,
        trading_day TEXT NOT NULL,
        contract_id TEXT NOT NULL,
        ts TEXT NOT NULL,
        side INTEGER NOT NULL,
        size INTEGER NOT NULL,
        price TEXT NOT NULL,
        pnl TEXT,
        fees TEXT NOT NULL,
        voided INTEGER NOT NULL CHECK (voided IN (0, 1)),
        PRIMARY KEY (account_id, trade_id)
    )""",
    "CREATE INDEX trades_day ON trades (account_id, trading_day)",
    """CREATE TABLE balances (
        account_id INTEGER NOT NULL,
        trading_day TEXT NOT NULL,
        last_balance TEXT NOT NULL,
        last_ts TEXT,
        high_water TEXT NOT NULL,
        eod_balance TEXT,
        eod_high_water TEXT,
        PRIMARY KEY (account_id, trading_day)
    )""",
    """CREATE TABLE book (
        account_id INTEGER PRIMARY KEY,
        positions TEXT NOT NULL,
        orders TEXT NOT NULL,
        ts TEXT NOT NULL
    )""",
    """CREATE TABLE policies (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        loaded_at TEXT NOT NULL
    )""",
    "CREATE INDEX policies_path ON policies (path, id)",
    """CREATE TABLE actions (
        key TEXT PRIMARY KEY,
        account_id INTEGER NOT NULL,
        rule TEXT NOT NULL,
        policy_hash TEXT,
        action TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('planned', 'sent', 'confirmed', 'failed')),
        planned_at TEXT NOT NULL,
        sent_at TEXT,
        finished_at TEXT,
        result TEXT,
        error TEXT,
        retryable INTEGER,
        attempts INTEGER NOT NULL DEFAULT 1
    )""",
    "CREATE INDEX actions_state ON actions (state)",
    """CREATE TABLE admin (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        passphrase_hash TEXT NOT NULL,
        set_at TEXT NOT NULL
    )""",
)

_AUDIT = (
    """CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('event', 'decision', 'action_planned', 'broker_call',
            'outcome', 'policy_loaded', 'lockout', 'unlock', 'drift', 'error', 'admin')),
        account_id INTEGER,
        policy_hash TEXT,
        payload TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    # Append-only: the database itself refuses, so no code path (ours or a careless script's)
    # can rewrite history without first dropping these triggers.
    """CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: DELETE refused'); END""",
    # The head (last seq and hash) lives apart from the log so that cutting off the tail of the
    # log is detectable; it may only advance one record at a time and never disappear.
    """CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL
    )""",
    """CREATE TRIGGER audit_head_advance BEFORE UPDATE ON audit_head
        WHEN NEW.seq <> OLD.seq + 1
        BEGIN SELECT RAISE(ABORT, 'the audit head only moves forward one record at a time'); END""",
    """CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head
        BEGIN SELECT RAISE(ABORT, 'the audit head cannot be deleted'); END""",
)


def _run(db: Database, statements: tuple[str, ...]) -> None:
    for statement in statements:
        db.execute(statement)


@MIGRATIONS(name="0001_state_tables")
def state_tables(db: Database) -> None:
    _run(db, _INITIAL)


@MIGRATIONS(name="0002_audit_log")
def audit_log(db: Database) -> None:
    _run(db, _AUDIT)


@MIGRATIONS(name="0003_state_in_the_chain")
def state_in_the_chain(db: Database) -> None:
    """Lockouts, timers and the admin passphrase become derivable from the audit chain
    (``derived``): what an older riskc left in the tables is recorded once, as the baseline every
    later change builds on. The index finds those records without reading every decision."""
    from datetime import UTC, datetime

    from riskc.engine.store import audit, derived

    db.execute("CREATE INDEX audit_kind ON audit (kind)")
    payload = derived.baseline(db)
    if payload is not None:
        audit.append(db, "event", payload, datetime.now(UTC))


def apply_migrations(db: Database) -> None:
    MIGRATIONS.apply(db)


# -- the daemon's heartbeat and staged policy edits (PRODUCT.md §9) -----------------------------

_HEARTBEAT = (
    # One row: the daemon that last ran on this file, and when it was last alive. `riskc status`
    # reads it to say "daemon alive (2 s ago)" or "no daemon since 09:41".
    """CREATE TABLE heartbeat (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        started_at TEXT NOT NULL,
        beat_at TEXT NOT NULL,
        every_seconds REAL NOT NULL,
        stopped_at TEXT
    )""",
)

_STAGED_POLICIES = (
    # Per config account (its label): the policy set in force ('active') and an edit waiting for
    # the next trading-day start ('staged'), each with its sources, so that what becomes active is
    # exactly what was checked, and a restart neither loses the wait nor skips it.
    """CREATE TABLE policy_sets (
        account TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('active', 'staged')),
        digest TEXT NOT NULL,
        sources TEXT NOT NULL,
        since TEXT NOT NULL,
        activates_at TEXT,
        apply_now INTEGER NOT NULL DEFAULT 0 CHECK (apply_now IN (0, 1)),
        PRIMARY KEY (account, role)
    )""",
)


@MIGRATIONS(name="0004_heartbeat")
def heartbeat_table(db: Database) -> None:
    _run(db, _HEARTBEAT)


@MIGRATIONS(name="0005_staged_policies")
def staged_policies(db: Database) -> None:
    _run(db, _STAGED_POLICIES)
