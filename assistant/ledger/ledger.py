"""The ledger: who may spend what, and what every answer cost.

Every paid call is bracketed: ``reserve`` (worst case, atomically checked against the budget) →
``mark_sent`` (just before the paid call) → ``settle`` (actual usage) or ``release`` (nothing spent).
Spend is the SUM of append-only entries, computed inside the same locked transaction that writes the next
entry, so there is no counter to drift. ``UNIQUE(request_id, kind)`` makes a second settle or release
impossible, so a retry or a recovery run can never charge twice.

``Ledger`` is the one object callers hold; each concept it offers lives in its own module (see README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa

from assistant.ledger import migrations
from assistant.ledger.anomalies import Anomalies
from assistant.ledger.answers import Answers
from assistant.ledger.base import DEFAULT_RESERVATION_TTL_S, utcnow
from assistant.ledger.costs import Costs
from assistant.ledger.engine import SqliteSync, create_ledger_engine
from assistant.ledger.feedback import Feedback
from assistant.ledger.idempotency import Idempotency
from assistant.ledger.jobs import Jobs
from assistant.ledger.labels import Labels
from assistant.ledger.ownership import OwnershipReports
from assistant.ledger.prices import PriceTable
from assistant.ledger.rate_limits import RateLimits
from assistant.ledger.recovery import Recovery
from assistant.ledger.trends import Trends


class Ledger(
    Recovery,
    Trends,
    OwnershipReports,
    Answers,
    Costs,
    Idempotency,
    Labels,
    Feedback,
    RateLimits,
    Anomalies,
    Jobs,
):
    @classmethod
    def open(
        cls,
        url: str,
        prices: PriceTable,
        *,
        reservation_ttl_s: int = DEFAULT_RESERVATION_TTL_S,
        local_micro_usd_per_hour: int | None = None,
        clock: Callable[[], datetime] = utcnow,
        pool_size: int = 32,
        sqlite_synchronous: SqliteSync = "FULL",
        group_commit: bool = True,
    ) -> Ledger:
        """Connect and bring the schema up to date. ``group_commit``: concurrent answer records share one
        transaction (each caller still returns only once its row is committed)."""
        engine = create_ledger_engine(url, pool_size=pool_size, sqlite_synchronous=sqlite_synchronous)
        migrations.migrate(engine)
        return cls(
            engine,
            prices,
            reservation_ttl_s=reservation_ttl_s,
            local_micro_usd_per_hour=local_micro_usd_per_hour,
            clock=clock,
            group_commit=group_commit,
        )

    def ping(self) -> None:
        """Raise if the database is unreachable (readiness check)."""
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self._close_answers()
        self.engine.dispose()
