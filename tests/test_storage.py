"""Storage accrual over a real Chroma directory: each collection's bytes are its own files plus its share of
chroma.sqlite3 by records, the server's daily tick accrues once a UTC day, and a Chroma server is refused
rather than guessed at."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from assistant.ledger import Ledger, PriceTable
from assistant.settings import Settings
from assistant.storage import DailyAccrual, accrue_storage, footprints
from index.footprint import CHROMA_DB, FootprintUnavailable, tree_bytes
from index.store import get_collection, open_client


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _index(settings: Settings, sizes: dict[str, int]) -> dict[str, str]:
    """Collections with ``sizes`` records each (4-d vectors: Chroma stores what it is given); their ids."""
    client = open_client(settings.chroma_path)
    ids = {}
    for name, n in sizes.items():
        collection = get_collection(client, name)
        collection.upsert(
            ids=[f"{name}-{i}" for i in range(n)],
            embeddings=[[float(i % 7), 1.0, 2.0, 3.0] for i in range(n)],
            documents=[f"document {i} of {name}, " * 10 for i in range(n)],
            metadatas=[{"source": name}] * n,
        )
        ids[name] = str(collection.id)
    return ids


def test_bytes_are_own_files_plus_a_share_of_chroma_sqlite_by_records(settings: Settings) -> None:
    ids = _index(settings, {"big": 60, "small": 20})
    bm25 = settings.bm25_path / ids["big"]
    bm25.mkdir(parents=True)
    (bm25 / "state.json").write_bytes(b"x" * 1000)  # what ingest saves there is counted whole
    found = footprints(settings)
    shared = tree_bytes(settings.chroma_path / CHROMA_DB) + tree_bytes(
        Path(f"{settings.chroma_path / CHROMA_DB}-wal")
    )
    big, small = found["big"], found["small"]
    assert (big.records, small.records) == (60, 20)
    assert (big.shared_bytes, small.shared_bytes) == (shared * 60 // 80, shared * 20 // 80)
    assert big.own_bytes - small.own_bytes == 1000  # same HNSW layout each, plus big's BM25 file


def test_the_daily_tick_accrues_once_a_day(settings: Settings, tmp_path: Path) -> None:
    _index(settings, {"docs": 10})
    clock = Clock(datetime(2026, 3, 31, 23, 0))
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", PriceTable.load(), clock=clock)
    try:
        daily = DailyAccrual(settings, ledger)
        daily.tick()
        daily.tick()  # same day: nothing more
        clock.now += timedelta(hours=2)  # 1 April, UTC
        daily.tick()
        rows = ledger.ownership(by="collection")
        size = footprints(settings)["docs"].bytes
        again = accrue_storage(settings, ledger)  # a cron run the same day changes nothing
    finally:
        ledger.close()
    [docs] = rows
    march, april = (
        ledger.prices.storage_day_micro_usd(size, 31),
        ledger.prices.storage_day_micro_usd(size, 30),
    )
    assert (docs.key, docs.storage_bytes, docs.storage_micro_usd) == ("docs", size, march + april)
    assert [(row.day.isoformat(), row.new) for row, _ in again] == [("2026-04-01", False)]


def test_a_chroma_server_is_refused_not_guessed(settings: Settings, tmp_path: Path) -> None:
    remote = settings.model_copy(update={"index": settings.index.model_copy(update={"chroma_url": "h:8001"})})
    with pytest.raises(FootprintUnavailable, match="Chroma runs as a server"):
        footprints(remote)
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", PriceTable.load())
    try:
        daily = DailyAccrual(remote, ledger)
        daily.tick()  # logged, and not tried again until tomorrow
        assert daily.last_day is not None and ledger.ownership(by="collection") == []
    finally:
        ledger.close()
