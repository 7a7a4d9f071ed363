"""The ingest worker with API replicas sharing one ledger: a replica that starts (or restarts) fails the
jobs its own previous process left, never those another live replica holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.service import Penny
from assistant.settings import Settings


def test_a_replica_starting_leaves_the_jobs_of_a_live_one_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PENNY_CONFIG", str(tmp_path / "absent.toml"))
    db_url = f"sqlite:///{tmp_path / 'ledger.db'}"

    def replica(name: str) -> Penny:
        return Penny(Settings(data_dir=tmp_path / name, ledger={"db_url": db_url}))  # type: ignore[arg-type]

    a, b = replica("a"), replica("b")
    started = [a, b]
    try:
        a.ingest_worker.start()
        job = a.ledger.create_job(None, "docs", ["x.md"], owner=a.ingest_worker.owner)  # queued on A
        b.ingest_worker.start()  # B starts while A holds the job
        assert b.ledger.job(job.id).status == "queued"
        a.ingest_worker.stop()  # A stops with the job still queued, and starts again on its data dir
        again = replica("a")
        started.append(again)
        again.ingest_worker.start()
        assert again.ingest_worker.owner == a.ingest_worker.owner != b.ingest_worker.owner
        assert again.ledger.job(job.id).status == "failed"
    finally:
        for penny in started:
            penny.close()
