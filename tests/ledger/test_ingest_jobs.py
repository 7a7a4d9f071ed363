"""Ingest jobs and write access in the ledger, on SQLite and PostgreSQL: a job is its creator's, survives
in the database, and is failed at the next start if its process stopped; who may write which collection."""

from __future__ import annotations

import pytest

from assistant.ledger import CollectionForbidden, Ledger, LedgerError, NotFound, Principal

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
