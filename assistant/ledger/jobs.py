"""Ingest jobs: an HTTP upload's state and per-file results, in the database so that any API process,
before or after a restart, can report on it.

A job is visible to the user who created it (and the admin key); to anyone else it does not exist, so a
job id cannot be probed. Jobs left queued or running by a process that died are failed (their spooled
files are gone with the worker that held them): the client uploads again. Several API replicas share one
ledger, so each job names its ``owner`` (the ingest worker holding it), which stamps ``heartbeat_at`` while
it lives: a replica fails its own jobs when it starts again, and another's only once their heartbeat has
stopped, never the jobs a live replica is indexing.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from assistant.ledger.base import LedgerBase, naive_utc
from assistant.ledger.errors import NotFound
from assistant.ledger.records import IngestJob, Principal
from assistant.ledger.schema import ingest_jobs

INTERRUPTED = "interrupted: the server stopped before this job finished; upload the files again"
UNFINISHED = ("queued", "running")


def _job(row: Any) -> IngestJob:
    return IngestJob(
        id=row.id,
        user_id=row.user_id,
        collection=row.collection,
        status=row.status,
        files=list(row.files),
        error=row.error,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


class Jobs(LedgerBase):
    def create_job(
        self,
        principal: Principal | None,
        collection: str,
        names: Sequence[str],
        *,
        owner: str | None = None,
    ) -> IngestJob:
        """A queued job for ``names`` (in upload order); ``principal`` None: the admin key; ``owner``: the
        ingest worker that will run it (see the module docstring)."""
        job_id = f"job_{secrets.token_hex(12)}"
        files = [{"name": name, "status": "queued", "chunks": 0, "error": None} for name in names]
        now = self._now()
        with self._write() as conn:
            conn.execute(
                ingest_jobs.insert().values(
                    id=job_id,
                    user_id=principal.user_id if principal else None,
                    collection=collection,
                    status="queued",
                    files=files,
                    created_at=now,
                    owner=owner,
                    heartbeat_at=now,
                )
            )
        return self.job(job_id)

    def heartbeat_jobs(self, owner: str) -> None:
        """``owner`` is alive: stamp the jobs it still holds, so that no other replica fails them."""
        with self._write() as conn:
            conn.execute(
                ingest_jobs.update()
                .where(ingest_jobs.c.owner == owner, ingest_jobs.c.status.in_(UNFINISHED))
                .values(heartbeat_at=self._now())
            )

    def start_job(self, job_id: str) -> None:
        with self._write() as conn:
            conn.execute(
                ingest_jobs.update()
                .where(ingest_jobs.c.id == job_id)
                .values(status="running", started_at=self._now())
            )

    def finish_job(self, job_id: str, files: list[dict[str, Any]]) -> None:
        """Done, with every file's result (a job whose files all failed is still done: see ``files``)."""
        self._end(job_id, status="done", files=files)

    def fail_job(self, job_id: str, error: str) -> None:
        """The job as a whole could not run (the index was unreachable, the process stopped)."""
        self._end(job_id, status="failed", error=error[:1000])

    def _end(self, job_id: str, **values: Any) -> None:
        with self._write() as conn:
            conn.execute(
                ingest_jobs.update()
                .where(ingest_jobs.c.id == job_id)
                .values(finished_at=self._now(), **values)
            )

    def job(self, job_id: str, principal: Principal | None = None) -> IngestJob:
        """The job; NotFound when it does not exist or, with ``principal``, belongs to another user."""
        with self._read() as conn:
            row = conn.execute(sa.select(ingest_jobs).where(ingest_jobs.c.id == job_id)).first()
        if row is None or (principal is not None and row.user_id != principal.user_id):
            raise NotFound(f"no job {job_id!r}")
        return _job(row)

    def fail_unfinished_jobs(
        self,
        owner: str | None = None,
        *,
        stale_after_s: float = 0.0,
        now: datetime | None = None,
    ) -> list[str]:
        """Fail the jobs a stopped process left queued or running; their ids.

        Failed: ``owner``'s own (a worker starting fails what it held before it stopped: call before
        queueing new ones), jobs nobody owns, and jobs whose heartbeat is older than ``stale_after_s``
        (their process died). The defaults fail every unfinished job (one process uses this ledger).
        """
        now = naive_utc(now) if now else self._now()
        abandoned = sa.or_(
            ingest_jobs.c.owner.is_(None),
            ingest_jobs.c.heartbeat_at.is_(None),
            ingest_jobs.c.heartbeat_at < now - timedelta(seconds=stale_after_s),
            *([ingest_jobs.c.owner == owner] if owner is not None else []),
        )
        where = sa.and_(ingest_jobs.c.status.in_(UNFINISHED), abandoned)
        with self._write() as conn:
            ids = [r.id for r in conn.execute(sa.select(ingest_jobs.c.id).where(where)).all()]
            if ids:
                conn.execute(
                    ingest_jobs.update()
                    .where(ingest_jobs.c.id.in_(ids), ingest_jobs.c.status.in_(UNFINISHED))
                    .values(status="failed", error=INTERRUPTED, finished_at=now)
                )
        return ids
