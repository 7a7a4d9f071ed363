"""Database engines for the ledger: SQLite (default) and PostgreSQL (``postgresql+psycopg://``).

SQLite: WAL (readers never block the writer), ``BEGIN IMMEDIATE`` for every write transaction (the write
lock is taken up front, so two reservations cannot both read the same spend and both pass), a busy
timeout instead of instant "database is locked", and ``synchronous=FULL`` by default because this is money.
PostgreSQL: READ COMMITTED plus ``SELECT ... FOR UPDATE`` on the budget row (see ``Ledger``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from assistant.ledger.errors import LedgerError

SQLITE_BUSY_TIMEOUT_S = 30.0
READ_ONLY = "penny_read_only"


SqliteSync = Literal["FULL", "NORMAL"]


def create_ledger_engine(
    url: str, *, pool_size: int = 32, max_overflow: int = 10, sqlite_synchronous: SqliteSync = "FULL"
) -> sa.Engine:
    """``sqlite_synchronous``: FULL survives power loss; NORMAL only process crashes, but skips an fsync
    per commit (see benchmarks/bench_ledger.py for the difference)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if sqlite_synchronous not in ("FULL", "NORMAL"):
            raise LedgerError(f"sqlite_synchronous must be FULL or NORMAL, not {sqlite_synchronous!r}")
        return _sqlite_engine(parsed, pool_size, max_overflow, sqlite_synchronous)
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(parsed, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True)
    raise LedgerError(f"unsupported ledger database {url!r}: use sqlite:///path or postgresql+psycopg://…")


def _sqlite_engine(parsed: sa.URL, pool_size: int, max_overflow: int, synchronous: SqliteSync) -> sa.Engine:
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        raise LedgerError(
            "the ledger needs a SQLite file (sqlite:///path/ledger.db), not an in-memory database"
        )
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        parsed,
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
        poolclass=sa.pool.QueuePool,
        pool_size=pool_size,
        max_overflow=max_overflow,
    )

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would otherwise BEGIN DEFERRED lazily).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")

    return engine


@contextmanager
def read_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that only reads: on SQLite it does not take the write lock."""
    with engine.connect() as conn:
        conn = conn.execution_options(**{READ_ONLY: True})
        with conn.begin():
            yield conn
