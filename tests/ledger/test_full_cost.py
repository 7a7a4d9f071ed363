"""Full cost on both backends: ingest runs and daily storage priced from the price table, each answer's
retrieval and evaluator compute, the amortised ingest share, the cost of ownership by collection and by team
(worked out by hand), and migration 11 from a version-10 database ending where a new database starts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from assistant.ledger import AnswerRecord, Ledger, PriceTable, PriceTableError, migrations
from assistant.ledger.answers import answer_values
from assistant.ledger.engine import create_ledger_engine
from tests.support.ledger import PgSchema

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices

GIB = 2**30


def test_storage_is_priced_per_gb_month_with_its_source_and_rounded_up(prices: PriceTable) -> None:
    assert prices.storage_micro_usd_per_gb_month == 80_000  # $0.08 per GB-month, EBS gp3
    assert prices.storage_source == "https://aws.amazon.com/ebs/pricing/"
    assert prices.storage_day_micro_usd(GIB, 30) == 2667  # 80000 / 30 = 2666.67, rounded up
    assert prices.storage_day_micro_usd(3 * GIB, 28) == 8572  # 240000 / 28 = 8571.43
    assert prices.storage_day_micro_usd(1, 31) == 1  # never under-counted
    assert prices.storage_day_micro_usd(0, 31) == 0
    with pytest.raises(ValueError):
        prices.storage_day_micro_usd(GIB, 32)
    table = {"version": "v1", "local": {"usd_per_hour": 0.1}, "models": {}}
    with pytest.raises(PriceTableError, match=r"missing \[storage\] usd_per_gb_month, source"):
        PriceTable.from_dict(table, "no storage")
    with pytest.raises(PriceTableError, match=r"missing \[storage\] source"):
        PriceTable.from_dict({**table, "storage": {"usd_per_gb_month": 0.08}}, "no source")


def _answer(request_id: str, who, collection: str | None, **costs) -> AnswerRecord:  # type: ignore[no-untyped-def]
    return AnswerRecord(request_id, who, "local", collection=collection, local_model="m", **costs)


def test_cost_of_ownership_by_collection_and_team(ledger: Ledger) -> None:
    """Team red owns `handbook`; `loose` has no team. By hand, at $0.085/h and $0.08/GB-month:

    - ingest handbook 36 s by alice = 36 x 85000 / 3600 = 850; ingest loose 7.2 s by the CLI = 170
    - storage 2026-02-10 (28 days): handbook 3 GiB = 8572, loose 0.5 GiB = 1429; 2026-02-11: handbook again
    - answers on handbook (alice, charged to red): a) local 40, retrieval 3, evaluation 5;
      b) local 60 + paid 5000, retrieval 4, evaluation 6; on loose (the CLI): c) recorded without compute
    """
    red = ledger.create_team("red")
    alice_user = ledger.add_user("alice")
    ledger.set_member("red", "alice", "admin")
    ledger.assign_collection("handbook", "red")
    key = ledger.authenticate(ledger.create_key("alice")[1])
    assert key is not None
    alice = ledger.authorize_collection(key, "handbook", open_if_unowned=False)
    assert alice.team_id == red.id
    system = ledger.system_user()

    run = ledger.record_ingest(alice_user.id, "handbook", files=3, chunks=40, seconds=36.0)
    assert (run.micro_usd, run.team_id, run.price_version) == (850, red.id, ledger.prices.version)
    assert ledger.record_ingest(system.user_id, "loose", files=1, chunks=5, seconds=7.2).micro_usd == 170
    assert ledger.amortised_ingest_micro_usd("handbook") == 850  # no answer yet: the first carries it all

    first = ledger.accrue_storage({"handbook": 3 * GIB, "loose": GIB // 2}, date(2026, 2, 10))
    assert [(a.collection, a.team_id, a.micro_usd, a.new) for a in first] == [
        ("handbook", red.id, 8572, True),
        ("loose", None, 1429, True),
    ]
    again = ledger.accrue_storage(
        {"handbook": 9 * GIB}, date(2026, 2, 10)
    )  # same day: kept as first measured
    assert [(a.bytes, a.micro_usd, a.new) for a in again] == [(3 * GIB, 8572, False)]
    ledger.accrue_storage({"handbook": 3 * GIB}, date(2026, 2, 11))

    ledger.record_answer(_answer("a", alice, "handbook", local_cost_micro_usd=40, **_compute(3, 5)))
    ledger.record_answer(
        _answer("b", alice, "handbook", local_cost_micro_usd=60, paid_cost_micro_usd=5000, **_compute(4, 6))
    )
    ledger.record_answer(_answer("c", system, "loose", local_cost_micro_usd=70))
    assert ledger.amortised_ingest_micro_usd("handbook") == 284  # 850 / (2 answers + this one), rounded up
    stored = ledger.answer("b")
    assert stored is not None and (stored["retrieval_micro_usd"], stored["evaluation_seconds"]) == (4, 0.6)

    handbook, loose = ledger.ownership(by="collection")
    assert (handbook.key, handbook.answers, handbook.paid_micro_usd, handbook.local_micro_usd) == (
        "handbook",
        2,
        5000,
        100,
    )
    assert (handbook.retrieval_micro_usd, handbook.evaluation_micro_usd, handbook.compute_unknown) == (
        7,
        11,
        0,
    )
    assert (handbook.ingests, handbook.ingest_seconds, handbook.ingest_micro_usd) == (1, 36.0, 850)
    assert (handbook.storage_micro_usd, handbook.storage_bytes) == (2 * 8572, 3 * GIB)
    assert handbook.total_micro_usd == 5000 + 100 + 7 + 11 + 850 + 2 * 8572
    assert (loose.key, loose.answers, loose.compute_unknown, loose.ingest_micro_usd) == ("loose", 1, 1, 170)
    assert loose.total_micro_usd == 70 + 170 + 1429

    by_team = {row.key: row for row in ledger.ownership(by="team")}
    assert set(by_team) == {"red", "(no team)"}
    assert by_team["red"].total_micro_usd == handbook.total_micro_usd
    assert by_team["(no team)"].total_micro_usd == loose.total_micro_usd

    [mine] = ledger.ownership(by="collection", user="alice")  # her answers and runs; storage is no user's
    assert (mine.key, mine.answers, mine.ingest_micro_usd, mine.storage_micro_usd) == ("handbook", 2, 850, 0)
    [red_only] = ledger.ownership(by="collection", team="red")
    assert red_only.total_micro_usd == handbook.total_micro_usd
    [later] = ledger.ownership(by="collection", team="red", since=date(2026, 2, 11))
    assert later.storage_micro_usd == 8572  # one day of storage from then; answers and runs are today's


def _compute(retrieval: int, evaluation: int) -> dict[str, float | int]:
    return {
        "retrieval_seconds": retrieval / 10,
        "evaluation_seconds": evaluation / 10,
        "retrieval_micro_usd": retrieval,
        "evaluation_micro_usd": evaluation,
    }


def _shape(engine: sa.Engine) -> dict[str, tuple[set[str], set[str]]]:
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        return {
            table: (
                {c["name"] for c in inspector.get_columns(table)},
                {i["name"] for i in inspector.get_indexes(table)},
            )
            for table in inspector.get_table_names()
        }


NEW_ANSWER_COLUMNS = (
    "retrieval_seconds",
    "evaluation_seconds",
    "retrieval_micro_usd",
    "evaluation_micro_usd",
)


@pytest.fixture
def fresh_url(ledger_url: str, tmp_path: Path) -> Iterator[str]:
    """A second, new database on the same backend as ``ledger_url``."""
    if ledger_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    with PgSchema() as url:
        yield url


def test_migration_11_from_a_version_10_database_ends_like_a_new_one(
    ledger_url: str, fresh_url: str, prices: PriceTable
) -> None:
    fresh = create_ledger_engine(fresh_url)
    migrations.migrate(fresh)
    engine = create_ledger_engine(ledger_url)
    migrations.migrate(engine, target=10)
    with engine.begin() as conn:  # as version 10 left it (a new database's answers have the columns at once)
        conn.execute(sa.text("DROP INDEX ix_answers_collection"))
        for column in NEW_ANSWER_COLUMNS:
            conn.execute(sa.text(f"ALTER TABLE answers DROP COLUMN {column}"))
    early = Ledger(engine, prices)
    old = AnswerRecord("old", early.system_user(), "local", collection="docs", local_cost_micro_usd=70)
    row = {k: v for k, v in answer_values(old, prices.version, datetime(2026, 1, 5)).items()}
    for column in NEW_ANSWER_COLUMNS:
        del row[column]  # the columns do not exist yet
    with engine.begin() as conn:
        conn.execute(sa.insert(sa.table("answers", *map(sa.column, row))).values(**row))
    assert migrations.migrate(engine, target=11) == [11]
    assert _shape(engine) == _shape(fresh)
    ledger = Ledger.open(ledger_url, prices)
    try:
        stored = ledger.answer("old")
        [line] = ledger.ownership(by="collection")
    finally:
        ledger.close()
        engine.dispose()
        fresh.dispose()
    assert stored is not None and stored["retrieval_micro_usd"] is None  # unknown, not zero
    assert (line.key, line.answers, line.local_micro_usd, line.compute_unknown) == ("docs", 1, 70, 1)
