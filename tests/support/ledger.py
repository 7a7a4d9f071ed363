"""Ledger fixtures: every ledger test runs on SQLite (a file in tmp_path) and on PostgreSQL (a fresh schema
in database ``test`` on 127.0.0.1:5432, dropped afterwards), so both backends pass the same suite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from assistant.ledger import Ledger, PriceTable
from assistant.ledger.schema import answers, ledger_entries, reservations

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_url(schema: str) -> str:
    return f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"


class PgSchema:
    """A throwaway PostgreSQL schema: isolation without needing CREATE DATABASE rights."""

    def __init__(self) -> None:
        self.name = f"penny_test_{uuid.uuid4().hex[:12]}"
        self.engine = sa.create_engine(PG_ADMIN_URL, poolclass=sa.pool.NullPool)

    def __enter__(self) -> str:
        with self.engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{self.name}"'))
        return pg_url(self.name)

    def __exit__(self, *_: object) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
        self.engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    with PgSchema() as url:
        yield url


@pytest.fixture(scope="session")
def prices() -> PriceTable:
    return PriceTable.load()


@pytest.fixture
def ledger(ledger_url: str, prices: PriceTable) -> Iterator[Ledger]:
    ledger = Ledger.open(ledger_url, prices, pool_size=12)
    yield ledger
    ledger.close()


Held = dict[str, tuple[str, int, int]]  # request id -> (reservation state, worst case, cost)


def books(ledger: Ledger, user_id: int | None = None) -> tuple[dict[str, int], Held, int]:
    """(answer paid cost by request, reservation (state, worst, cost) by request, SUM of the entries), all
    of them or one user's; asserts that no request was closed twice."""

    def mine(query: sa.Select[Any], table: sa.Table) -> sa.Select[Any]:
        return query if user_id is None else query.where(table.c.user_id == user_id)

    with ledger.engine.connect() as conn:
        answered = dict(
            conn.execute(mine(sa.select(answers.c.request_id, answers.c.paid_cost_micro_usd), answers)).all()
        )
        held = {
            row.request_id: (row.state, row.worst_case_micro_usd, row.cost_micro_usd or 0)
            for row in conn.execute(mine(sa.select(reservations), reservations))
        }
        total = conn.execute(
            mine(sa.select(sa.func.sum(ledger_entries.c.amount_micro_usd)), ledger_entries)
        ).scalar_one()
        doubles = conn.execute(
            sa.select(ledger_entries.c.request_id)
            .where(ledger_entries.c.kind.in_(["settle", "release"]))
            .group_by(ledger_entries.c.request_id)
            .having(sa.func.count() > 1)
        ).all()
    assert doubles == []  # closed at most once: never settled twice, never settled and released
    return answered, held, int(total or 0)


def committed(held: Held) -> int:
    """What the reservations say is spent or held: an open one holds its worst case."""
    return sum(worst if state == "open" else cost for state, worst, cost in held.values())
