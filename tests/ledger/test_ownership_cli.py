"""`penny ingest`, `penny usage accrue-storage` and `penny usage --by collection` on both backends: a real
ingest (real embedder, real Chroma on disk) is priced from its measured seconds, the collection's bytes on
disk from its files, and the cost of ownership table shows both."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from assistant.cli import cli
from assistant.ledger import Ledger, PriceTable
from assistant.ledger.prices import format_usd
from assistant.settings import get_settings
from index.footprint import measure

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger_url, prices

POLICY = "# Travel policy\n\nTrain tickets are refunded in full. Flights need a manager's approval first.\n"
LEAVE = "# Leave\n\nStaff take 31 days of paid leave a year; request it in the Koala portal.\n"


@pytest.fixture
def penny(ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv("PENNY_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("PENNY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PENNY_LEDGER__DB_URL", ledger_url)
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str) -> Result:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result

    yield run
    get_settings.cache_clear()


def test_an_ingest_and_its_storage_show_in_usage_by_collection(  # type: ignore[no-untyped-def]
    penny, ledger_url: str, prices: PriceTable, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "travel.md").write_text(POLICY)
    (docs / "leave.md").write_text(LEAVE)
    ingested = penny("ingest", str(docs), "--quiet", "-c", "handbook").output
    assert "added 2, updated 0" in ingested

    ledger = Ledger.open(ledger_url, prices)
    try:
        [run] = ledger.ingest_costs("handbook")
    finally:
        ledger.close()
    assert (run.files, run.chunks, run.user_id is not None) == (2, 2, True)
    assert 0 < run.seconds < 600
    assert run.micro_usd == math.ceil(run.seconds * 85_000 / 3600)  # $0.085 per instance hour
    assert f"ingest cost {format_usd(run.micro_usd)} ({run.seconds:.1f}s" in ingested

    accrued = penny("usage", "accrue-storage").output.splitlines()
    data = tmp_path / "data"
    found = measure(data / "chroma", data / "bm25", data / "sentvec")["handbook"]
    assert found.records == 2 and found.own_bytes > 0 and found.shared_bytes > 0
    assert (data / "bm25").is_dir()  # the BM25 state ingest saved is part of what is counted
    day_cost = prices.storage_day_micro_usd(found.bytes, _days_in_this_month())
    assert accrued[1].split()[:3] == ["handbook", accrued[1].split()[1], "2"]
    assert format_usd(day_cost) in accrued[1] and accrued[1].endswith("accrued")
    assert penny("usage", "accrue-storage").output.splitlines()[1].endswith("already accrued today")

    table = penny("usage", "--by", "collection").output.splitlines()
    assert table[0].split() == [
        "COLLECTION",
        "ANSWERS",
        "PAID_USD",
        "LOCAL_USD",
        "RETRIEVAL_EVAL_USD",
        "INGESTS",
        "INGEST_S",
        "INGEST_USD",
        "DISK_MIB",
        "STORAGE_USD",
        "TOTAL_USD",
    ]
    handbook = table[1].split()
    assert handbook[0] == "handbook" and handbook[1] == "0" and handbook[5] == "1"
    assert handbook[7] == format_usd(run.micro_usd) and handbook[9] == format_usd(day_cost)
    assert handbook[10] == format_usd(run.micro_usd + day_cost)
    assert table[2].split()[0] == "TOTAL" and table[2].split()[-1] == handbook[10]

    [row] = csv.DictReader(io.StringIO(penny("usage", "--by", "collection", "--csv").output))
    assert (row["COLLECTION"], row["INGEST_USD"]) == ("handbook", f"{run.micro_usd / 1e6:.6f}")
    assert row["TOTAL_USD"] == f"{(run.micro_usd + day_cost) / 1e6:.6f}"


def _days_in_this_month() -> int:
    import calendar
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return calendar.monthrange(now.year, now.month)[1]
