"""What owning a collection costs besides its answers: each ingest run's compute and each day of its index on
disk, recorded at the price table's rates, and the share of ingest an answer carries.

An ingest run is priced at the instance price (``[local]``) for its measured wall seconds: ingest keeps the
machine busy (the embedder uses every core) for that long. Storage is priced per day from one measurement of
the collection's bytes (``[storage]``): bytes x $/GB-month / days in that month, rounded up once per row.
Both rows name the team that owned the collection when they were written, so a later reassignment does not
move past cost.

Amortised ingest (the ``penny`` block's ``ingest_amortised``): the collection's ingest cost so far divided by
the answers served from it so far, this one included, rounded up. An early answer carries a large share and
later ones less, as the ingest pays for itself over use; the shares are a view and are never summed into
the reports, which count each ingest once.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from assistant.ledger.base import LedgerBase
from assistant.ledger.prices import ceil_div
from assistant.ledger.schema import answers, collections, ingest_costs, storage_accruals


@dataclass(frozen=True)
class IngestCost:
    """One ingest run of a collection: what it did, how long it took and what that cost."""

    collection: str
    team_id: int | None
    user_id: int | None  # None: the admin key
    files: int
    chunks: int
    seconds: float
    micro_usd: int
    price_version: str
    created_at: datetime
    job_id: str | None = None


@dataclass(frozen=True)
class StorageAccrual:
    """One day of a collection's index on disk. ``new`` is False when that day was already accrued: the
    stored row (the day's first measurement) is what is returned."""

    collection: str
    team_id: int | None
    day: date
    bytes: int
    micro_usd: int
    price_version: str
    new: bool


class Costs(LedgerBase):
    def record_ingest(
        self,
        user_id: int | None,
        collection: str,
        *,
        files: int,
        chunks: int,
        seconds: float,
        job_id: str | None = None,
    ) -> IngestCost:
        """Record one ingest run by ``user_id`` (None: the admin key), priced here from measured seconds."""
        values: dict[str, Any] = {
            "collection": collection,
            "user_id": user_id,
            "job_id": job_id,
            "files": files,
            "chunks": chunks,
            "seconds": seconds,
            "micro_usd": self.compute_cost_micro_usd(seconds),
            "price_version": self.prices.version,
            "created_at": self._now(),
        }
        with self._write() as conn:
            values["team_id"] = _owner(conn, collection)
            conn.execute(ingest_costs.insert().values(**values))
        return IngestCost(**values)

    def ingest_costs(self, collection: str | None = None) -> list[IngestCost]:
        """Ingest runs, oldest first (of one collection, or all)."""
        query = sa.select(ingest_costs).order_by(ingest_costs.c.id)
        if collection is not None:
            query = query.where(ingest_costs.c.collection == collection)
        with self._read() as conn:
            rows = conn.execute(query).all()
        fields = IngestCost.__dataclass_fields__
        return [IngestCost(**{k: v for k, v in row._mapping.items() if k in fields}) for row in rows]

    def accrue_storage(self, sizes: Mapping[str, int], day: date | None = None) -> list[StorageAccrual]:
        """One row per collection for ``day`` (default: today, UTC) from its measured bytes. A day already
        accrued keeps its first row (``new`` False), so running this twice a day charges once."""
        day = day or self._now().date()
        days_in_month = calendar.monthrange(day.year, day.month)[1]
        insert = (postgresql if self.engine.dialect.name == "postgresql" else sqlite).insert
        result = []
        with self._write() as conn:
            for name, size in sorted(sizes.items()):
                micro_usd = self.prices.storage_day_micro_usd(size, days_in_month)
                team_id = _owner(conn, name)
                written = conn.execute(
                    insert(storage_accruals)
                    .values(
                        collection=name,
                        team_id=team_id,
                        day=day,
                        bytes=size,
                        micro_usd=micro_usd,
                        price_version=self.prices.version,
                        created_at=self._now(),
                    )
                    .on_conflict_do_nothing(index_elements=["collection", "day"])
                    .returning(storage_accruals.c.id)
                ).first()
                row = conn.execute(
                    sa.select(storage_accruals).where(
                        storage_accruals.c.collection == name, storage_accruals.c.day == day
                    )
                ).one()
                result.append(
                    StorageAccrual(
                        row.collection,
                        row.team_id,
                        row.day,
                        row.bytes,
                        row.micro_usd,
                        row.price_version,
                        new=written is not None,
                    )
                )
        return result

    def amortised_ingest_micro_usd(self, collection: str | None) -> int:
        """This answer's share of its collection's ingest: ingest cost so far / (answers so far + this one),
        rounded up. One read: an indexed SUM and COUNT."""
        if collection is None:
            return 0
        spent = (
            sa.select(sa.func.coalesce(sa.func.sum(ingest_costs.c.micro_usd), 0))
            .where(ingest_costs.c.collection == collection)
            .scalar_subquery()
        )
        served = sa.select(sa.func.count()).where(answers.c.collection == collection).scalar_subquery()
        with self._read() as conn:
            total, count = conn.execute(sa.select(spent, served)).one()
        return ceil_div(int(total), int(count) + 1)


def _owner(conn: sa.Connection, collection: str) -> int | None:
    """The team owning ``collection`` now (None: no team)."""
    return conn.execute(sa.select(collections.c.team_id).where(collections.c.name == collection)).scalar()
