"""Group commit: many threads' row inserts written by one writer in one transaction per batch.

A caller hands its row over and blocks until the transaction holding it has committed, so a call that
returns has the same durability as its own commit would have had (no fire-and-forget), while concurrent
callers share one commit (one fsync, one lock acquisition on SQLite, one round trip per batch with psycopg's
pipelined ``executemany``). Batches form by themselves: rows queue up while the previous batch commits, so
a lone caller never waits for company.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa

from assistant.ledger.errors import LedgerError

log = logging.getLogger("penny.ledger")

MAX_BATCH = 256


class GroupCommit:
    def __init__(
        self,
        transaction: Callable[[], AbstractContextManager[sa.Connection]],
        statement: sa.Executable,
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.transaction = transaction
        self.statement = statement
        self.max_batch = max_batch
        self._queue: list[tuple[dict[str, Any], Future[None]]] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def write(self, values: dict[str, Any]) -> None:
        """Insert one row; returns once it is committed, raises what its insert raised."""
        done: Future[None] = Future()
        with self._cond:
            if self._closed:
                raise LedgerError("the ledger is closed")
            self._start()
            self._queue.append((values, done))
            self._cond.notify()
        done.result()

    def close(self) -> None:
        """Commit what is queued, then stop the writer."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _start(self) -> None:
        # After a fork the writer thread is not in the child: start the child's own.
        if self._thread is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="ledger-group-commit", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
            self._commit(batch)

    def _commit(self, batch: list[tuple[dict[str, Any], Future[None]]]) -> None:
        try:
            with self.transaction() as conn:
                conn.execute(self.statement, [values for values, _ in batch])
        except Exception as exc:  # isolate the failing row: the others must still commit
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            log.warning("group commit of %d rows failed (%s); writing them one by one", len(batch), exc)
            for item in batch:
                self._commit([item])
            return
        for _, done in batch:
            done.set_result(None)
