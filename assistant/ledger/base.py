"""What every part of the ledger shares: the engine, the price table, the clock, and the two transaction
shapes (a write that takes the lock up front, a read that never does)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime

import sqlalchemy as sa

from assistant.ledger.engine import read_transaction
from assistant.ledger.prices import PriceTable

DEFAULT_RESERVATION_TTL_S = 300


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def naive_utc(moment: datetime) -> datetime:
    """The database stores naive UTC; an aware time from a caller is converted, a naive one trusted."""
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


class LedgerBase:
    def __init__(
        self,
        engine: sa.Engine,
        prices: PriceTable,
        *,
        reservation_ttl_s: int = DEFAULT_RESERVATION_TTL_S,
        local_micro_usd_per_hour: int | None = None,
        clock: Callable[[], datetime] = utcnow,
        group_commit: bool = True,
    ) -> None:
        self.engine = engine
        self.prices = prices
        self.reservation_ttl_s = reservation_ttl_s
        self.local_micro_usd_per_hour = local_micro_usd_per_hour
        self.clock = clock
        self.group_commit = group_commit
        # SQLite has one writer at a time; threads of this process queue on a lock and are woken as soon
        # as it is free, where SQLite's busy handler would have them sleep and retry (up to 100 ms a turn).
        self._write_lock: AbstractContextManager[object] = (
            threading.Lock() if engine.dialect.name == "sqlite" else nullcontext()
        )

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def _read(self) -> AbstractContextManager[sa.Connection]:
        return read_transaction(self.engine)

    def _now(self) -> datetime:
        return naive_utc(self.clock())

    def compute_cost_micro_usd(self, seconds: float) -> int:
        """Seconds of this machine's compute at the instance price: the local model's generation, and
        Penny's own work (ingest, retrieval, the evaluator)."""
        return self.prices.local_cost_micro_usd(seconds, self.local_micro_usd_per_hour)
