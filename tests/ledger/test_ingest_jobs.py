"""Ingest jobs and write access in the ledger, on SQLite and PostgreSQL: a job is its creator's, survives
in the database, and is failed at the next start if its process stopped (and, when API replicas share the
ledger, only then: never while its owner is alive); who may write which collection."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from assistant.ledger import (
    CollectionForbidden,
    Ledger,
    LedgerError,
    NotFound,
    PriceTable,
    Principal,
    migrations,
)
from assistant.ledger.engine import create_ledger_engine

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices


def user(ledger: Ledger, name: str, teams: tuple[str, ...] = ()) -> Principal:
    ledger.add_user(name)
    _, key = ledger.create_key(name)
    for team in teams:
        ledger.set_member(team, name)
    principal = ledger.authenticate(key)
    assert principal is not None
    return principal


def test_job_lifecycle_visibility_and_restart(ledger: Ledger, ledger_url: str, prices) -> None:  # type: ignore[no-untyped-def]
    alice, bob = user(ledger, "alice"), user(ledger, "bob")
    job = ledger.create_job(alice, "docs", ["a.md", "b.pdf"])
    assert job.id.startswith("job_") and job.status == "queued"
    assert [f["status"] for f in job.files] == ["queued", "queued"]
    with pytest.raises(NotFound):
        ledger.job(job.id, bob)
    ledger.start_job(job.id)
    ledger.finish_job(job.id, [{"name": "a.md", "status": "indexed", "chunks": 3, "error": None}])
    other = Ledger.open(ledger_url, prices)  # another process, or the same one after a restart
    try:
        done = other.job(job.id, alice)
        assert done.status == "done" and done.files[0]["chunks"] == 3 and done.finished_at is not None
        stuck = ledger.create_job(None, "docs", ["c.txt"])  # the admin key's job
        assert other.fail_unfinished_jobs() == [stuck.id]
        failed = other.job(stuck.id)
        assert failed.status == "failed" and "upload the files again" in (failed.error or "")
    finally:
        other.close()


def test_write_access_rules(ledger: Ledger) -> None:
    for team in ("red", "blue"):
        ledger.create_team(team)
    ana, ben, cy, dee = (
        user(ledger, "ana", ("red",)),
        user(ledger, "ben", ("blue",)),
        user(ledger, "cy", ("red", "blue")),
        user(ledger, "dee"),
    )
    assert ledger.authorize_collection_write(ana, "red-new", exists=False) == "red"  # claimed
    assert ledger.collection_owners()["red-new"] == "red"
    assert ledger.authorize_collection_write(cy, "red-new", exists=True) == "red"
    messages = set()
    for principal, name, exists in ((ben, "red-new", True), (dee, "dee-new", False), (ana, "stray", True)):
        with pytest.raises(CollectionForbidden) as denied:
            ledger.authorize_collection_write(principal, name, exists=exists)
        messages.add(str(denied.value).replace(name, ""))
    assert len(messages) == 1
    with pytest.raises(LedgerError, match="several teams"):
        ledger.authorize_collection_write(cy, "cy-new", exists=False)
    assert ledger.authorize_collection_write(cy, "cy-new", exists=False, team="blue") == "blue"
    with pytest.raises(CollectionForbidden):  # a new collection for a team one is not in
        ledger.authorize_collection_write(ana, "other-new", exists=False, team="blue")
    with pytest.raises(CollectionForbidden):  # claiming never moves a collection
        ledger.claim_collection("red-new", "blue")


def test_replicas_sharing_the_ledger_fail_only_the_jobs_a_stopped_one_left(ledger: Ledger) -> None:
    a, b = "host-a:/data", "host-b:/data"  # two API replicas' ingest workers
    running = ledger.create_job(None, "docs", ["a.md"], owner=a)
    ledger.start_job(running.id)
    left = ledger.create_job(None, "docs", ["b.md"], owner=b)
    # B starts again: the job its old process held is failed; A's, being indexed, is left alone.
    assert ledger.fail_unfinished_jobs(b, stale_after_s=120) == [left.id]
    assert ledger.job(running.id).status == "running"
    start = ledger.clock()
    ledger.clock = lambda: start + timedelta(seconds=100)
    ledger.heartbeat_jobs(a)  # A is alive
    assert ledger.fail_unfinished_jobs(stale_after_s=120, now=start + timedelta(seconds=200)) == []
    # A dies: 120 s after its last heartbeat, any replica fails its job.
    assert ledger.fail_unfinished_jobs(stale_after_s=120, now=start + timedelta(seconds=221)) == [running.id]
    failed = ledger.job(running.id)
    assert failed.status == "failed" and "upload the files again" in (failed.error or "")


def test_migration_9_adds_the_owner_and_heartbeat_to_a_version_8_database(
    ledger_url: str, prices: PriceTable
) -> None:
    engine = create_ledger_engine(ledger_url)
    migrations.migrate(engine, target=8)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE ingest_jobs DROP COLUMN heartbeat_at"))  # as version 8 left it
        conn.execute(sa.text("ALTER TABLE ingest_jobs DROP COLUMN owner"))
    assert migrations.migrate(engine, target=9) == [9]
    with engine.connect() as conn:
        assert {"owner", "heartbeat_at"} <= {c["name"] for c in sa.inspect(conn).get_columns("ingest_jobs")}
    engine.dispose()
