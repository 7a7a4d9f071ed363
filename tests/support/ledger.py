"""Ledger fixtures: every ledger test runs on SQLite (a file in tmp_path) and on PostgreSQL (a fresh schema
in database ``test`` on 127.0.0.1:5432, dropped afterwards), so both backends pass the same suite."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from assistant.ledger import Ledger, PriceTable

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
