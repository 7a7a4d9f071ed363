"""Versioned schema migrations: an ordered list, applied once each, recorded in ``schema_version``.

Migrations run inside one transaction under a lock (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on
PostgreSQL), so two processes starting together do not both migrate. A migration, once released, never
changes: a schema change is a new migration appended to ``MIGRATIONS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from assistant.ledger import schema
from assistant.ledger.errors import SchemaTooNew

PG_MIGRATION_LOCK = 0x70656E6E79  # "penny": any constant shared by all Penny processes


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[sa.Connection], None]


def _create(*tables: sa.Table) -> Callable[[sa.Connection], None]:
    def apply(conn: sa.Connection) -> None:
        for table in tables:
            table.create(conn)

    return apply


def _add_columns(*columns: sa.Column) -> Callable[[sa.Connection], None]:
    """Add nullable columns to existing tables. A database created after the column joined ``schema`` got
    it from its table's first migration, so a column already there is skipped: both paths end equal."""

    def apply(conn: sa.Connection) -> None:
        inspector = sa.inspect(conn)
        for column in columns:
            table = column.table
            if column.name in {c["name"] for c in inspector.get_columns(table.name)}:
                continue
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))

    return apply


def _create_index(index: sa.Index) -> Callable[[sa.Connection], None]:
    def apply(conn: sa.Connection) -> None:
        index.create(conn, checkfirst=True)

    return apply


def _all(*steps: Callable[[sa.Connection], None]) -> Callable[[sa.Connection], None]:
    def apply(conn: sa.Connection) -> None:
        for step in steps:
            step(conn)

    return apply


def _widen_alert_kinds(conn: sa.Connection) -> None:
    """The alert kinds' CHECK takes the kinds in ``schema.ALERT_KINDS``. PostgreSQL swaps the constraint;
    SQLite cannot alter one, so its stored table definition is edited in place, the procedure SQLite
    documents for changing CHECK constraints (https://www.sqlite.org/lang_altertable.html#otheralter):
    every existing row already passes the wider check, so no data is touched."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("ALTER TABLE alert_events DROP CONSTRAINT alert_kind_known"))
        conn.execute(
            sa.text(
                f"ALTER TABLE alert_events ADD CONSTRAINT alert_kind_known CHECK ({schema.ALERT_KIND_CHECK})"
            )
        )
        return
    stored = conn.execute(
        sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'alert_events'")
    )
    sql = stored.scalar_one()
    old = "kind IN ('alert_ratio', 'exhausted')"
    if old not in sql:  # created by this version's schema: the wide check is there already
        return
    version = conn.execute(sa.text("PRAGMA schema_version")).scalar_one()
    conn.execute(sa.text("PRAGMA writable_schema = ON"))
    conn.execute(
        sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' AND name = 'alert_events'"),
        {"sql": sql.replace(old, schema.ALERT_KIND_CHECK)},
    )
    conn.execute(sa.text(f"PRAGMA schema_version = {int(version) + 1}"))
    conn.execute(sa.text("PRAGMA writable_schema = OFF"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "users, api keys, budgets, reservations, ledger entries",
        _create(schema.users, schema.api_keys, schema.budgets, schema.reservations, schema.ledger_entries),
    ),
    Migration(2, "answer records and idempotency keys", _create(schema.answers, schema.idempotency_keys)),
    Migration(
        3, "shadow labels: served local answers checked by the paid tier", _create(schema.shadow_labels)
    ),
    Migration(4, "rate-limit overrides per user and per key", _create(schema.rate_limits)),
    Migration(
        5,
        "key expiry, profiles and labels; teams, team budgets, collection ownership",
        _all(
            _add_columns(
                schema.api_keys.c.expires_at,
                schema.api_keys.c.profiles,
                schema.api_keys.c.label,
                schema.reservations.c.team_id,
                schema.ledger_entries.c.team_id,
                schema.answers.c.team_id,
            ),
            _create(schema.teams, schema.team_members, schema.team_budgets, schema.collections),
            _create_index(schema.ix_entries_team_charged),
        ),
    ),
    Migration(
        6,
        "spend alerts: an outbox of alert events and their deliveries",
        _create(schema.alert_events, schema.alert_deliveries),
    ),
    Migration(7, "ingest jobs: HTTP uploads and their per-file results", _create(schema.ingest_jobs)),
    Migration(
        8,
        "feedback on answers; each answer's abstention and evaluator features",
        _all(
            _add_columns(schema.answers.c.abstained, schema.answers.c.features),
            _create(schema.answer_feedback),
        ),
    ),
    Migration(
        9,
        "ingest jobs: the API replica holding each one, and its heartbeat",
        _add_columns(schema.ingest_jobs.c.owner, schema.ingest_jobs.c.heartbeat_at),
    ),
    Migration(
        10,
        "answers: what paid-only would have cost for each (NULL: unknown)",
        _add_columns(schema.answers.c.paid_only_micro_usd),
    ),
    Migration(
        11,
        "full cost: ingest runs, daily storage accruals, each answer's retrieval and evaluator compute",
        _all(
            _add_columns(
                schema.answers.c.retrieval_seconds,
                schema.answers.c.evaluation_seconds,
                schema.answers.c.retrieval_micro_usd,
                schema.answers.c.evaluation_micro_usd,
            ),
            _create_index(schema.ix_answers_collection),
            _create(schema.ingest_costs, schema.storage_accruals),
        ),
    ),
    Migration(12, "alert kinds: spend anomalies (projection, spike)", _widen_alert_kinds),
)
LATEST = MIGRATIONS[-1].version


def current_version(conn: sa.Connection) -> int:
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    return conn.execute(
        sa.select(sa.func.coalesce(sa.func.max(schema.schema_version.c.version), 0))
    ).scalar_one()


def migrate(engine: sa.Engine, target: int = LATEST) -> list[int]:
    """Bring the database to ``target``; returns the versions applied (empty when already there)."""
    applied: list[int] = []
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
        schema.schema_version.create(conn, checkfirst=True)
        version = current_version(conn)
        if version > LATEST:
            raise SchemaTooNew(
                f"the ledger database is at schema version {version}, newer than this Penny knows "
                f"({LATEST}); upgrade Penny or point PENNY_LEDGER__DB_URL at another database"
            )
        for migration in MIGRATIONS:
            if version < migration.version <= target:
                migration.apply(conn)
                conn.execute(
                    schema.schema_version.insert().values(
                        version=migration.version,
                        name=migration.name,
                        applied_at=datetime.now(UTC).replace(tzinfo=None),
                    )
                )
                applied.append(migration.version)
    return applied
