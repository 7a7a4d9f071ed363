"""HTTP ingestion's worker: one thread in the API process runs upload jobs, one at a time, in order.

The API process owns the embedded Chroma index (its ``PersistentClient`` is single-process), so it must be
the one writing: uploads are spooled under the data dir, queued here, and indexed by the same ``Ingester``
``penny ingest`` uses. One job at a time because embedding is CPU-bound and competes with answering.
Job state lives in the ledger, so a job's result outlives the process that ran it.

API replicas share the ledger: each worker owns the jobs it queued (``owner``: this host and data dir, so
the same server restarted is the same owner) and stamps their heartbeat every ``HEARTBEAT_S``. A worker
starting fails its own unfinished jobs (its queue died with the old process) and, then and every
heartbeat, the jobs of owners silent for ``ABANDONED_AFTER_S``; another replica's live jobs are left alone.
"""

from __future__ import annotations

import logging
import queue
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assistant.service import Penny

log = logging.getLogger("penny.ingest")

_STOP = object()
HEARTBEAT_S = 10.0
ABANDONED_AFTER_S = 120.0  # twelve missed heartbeats: that replica is gone, not slow


class IngestWorker:
    def __init__(self, penny: Penny) -> None:
        self.penny = penny
        self.spool = penny.settings.ingest_spool_dir
        self.owner = f"{socket.gethostname()}:{penny.settings.data_dir.resolve()}"
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def start(self) -> None:
        """Fail the jobs this server left unfinished before it restarted and those of stopped replicas,
        clear the spool, then start the thread and the heartbeat."""
        with self._lock:
            if self._thread is not None:
                return
            ledger = self.penny.ledger
            for job_id in ledger.fail_unfinished_jobs(self.owner, stale_after_s=ABANDONED_AFTER_S):
                log.warning("ingest job %s was interrupted by a restart; marked failed", job_id)
            shutil.rmtree(self.spool, ignore_errors=True)
            self._stopping = stopping = threading.Event()
            self._thread = threading.Thread(target=self._run, name="penny-ingest", daemon=True)
            self._thread.start()
            beat = threading.Thread(target=self._heartbeat, args=(stopping,), name="penny-ingest-heartbeat")
            beat.daemon = True
            beat.start()

    def job_dir(self, job_id: str) -> Path:
        return self.spool / job_id

    def submit(self, job_id: str, files: list[tuple[Path, str]]) -> None:
        """Queue a created job whose ``(spooled path, source name)`` files are already under its dir."""
        self.start()
        self._queue.put((job_id, files))

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish the running job (never cut mid-write), then stop; queued jobs fail at the next start."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stopping.set()
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout=timeout_s)

    def _heartbeat(self, stopping: threading.Event) -> None:
        """Keep this server's jobs alive in the ledger; fail those of replicas that stopped."""
        ledger = self.penny.ledger
        while not stopping.wait(HEARTBEAT_S):
            try:
                ledger.heartbeat_jobs(self.owner)
                for job_id in ledger.fail_unfinished_jobs(stale_after_s=ABANDONED_AFTER_S):
                    log.warning("ingest job %s was abandoned by a stopped server; marked failed", job_id)
            except Exception:  # the database may be back at the next beat
                log.exception("ingest job heartbeat failed")

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            job_id, files = item  # type: ignore[misc]
            try:
                self.run(job_id, files)
            except Exception:  # the thread must outlive any one job
                log.exception("ingest job %s crashed", job_id)

    def run(self, job_id: str, files: list[tuple[Path, str]]) -> None:
        ledger = self.penny.ledger
        try:
            job = ledger.job(job_id)
            ledger.start_job(job_id)
            ingester = self.penny.ingester(job.collection)
            started = time.perf_counter()
            results = ingester.ingest_files(files)
            seconds = time.perf_counter() - started
            by_file = [
                {
                    "name": r.source,
                    "status": r.status,
                    "chunks": r.chunks,
                    "error": r.error,
                    "duplicate_of": r.duplicate_of,
                }
                for r in results
            ]
            ledger.record_ingest(  # before the job is done: a client seeing it done finds its cost
                job.user_id,
                job.collection,
                files=len(results),
                chunks=sum(r.chunks for r in results if r.status == "indexed"),
                seconds=seconds,
                job_id=job_id,
            )
            ledger.finish_job(job_id, by_file)
            log.info("ingest job %s into %s: %s", job_id, job.collection, [r.status for r in results])
        except Exception as exc:
            log.exception("ingest job %s failed", job_id)
            ledger.fail_job(job_id, f"{type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
