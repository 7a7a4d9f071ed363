"""After a crash: stale reservations are resolved, and the checks an operator runs on what recovery did.

A reservation whose process died is either never sent (released: nothing was spent) or sent but never
settled (charged at its worst case and flagged for reconciliation against the provider's export).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa

from assistant.ledger.base import naive_utc
from assistant.ledger.records import RecoveryReport, Usage
from assistant.ledger.schema import ledger_entries, reservations
from assistant.ledger.spend import RECOVERED_NOTE, Spend, reservation_from_row

log = logging.getLogger("penny.ledger")


class Recovery(Spend):
    def keep_open(self, request_ids: Sequence[str]) -> int:
        """Push the expiry of these open reservations one TTL from now: their calls are still running (a
        batch waits up to 24 h) and their process is alive. A process that dies stops calling this, so
        recovery still charges its sent calls, one TTL after its last sign of life. Returns how many."""
        if not request_ids:
            return 0
        expires = self._now() + timedelta(seconds=self.reservation_ttl_s)
        with self._write() as conn:
            return conn.execute(
                reservations.update()
                .where(reservations.c.request_id.in_(list(request_ids)), reservations.c.state == "open")
                .values(expires_at=expires)
            ).rowcount

    def recover_stale(self, now: datetime | None = None) -> RecoveryReport:
        """Resolve expired open reservations (run at start-up and periodically).

        Never sent → released (nothing was spent). Sent but never settled → the process died after the
        paid tier may have charged us: settle at the reserved worst case and flag it for reconciliation.
        """
        now = naive_utc(now) if now else self._now()
        with self._read() as conn:
            stale = conn.execute(
                sa.select(reservations.c.request_id, reservations.c.user_id, reservations.c.team_id).where(
                    reservations.c.state == "open", reservations.c.expires_at <= now
                )
            ).all()
        released: list[str] = []
        settled: list[str] = []
        for request_id, user_id, team_id in stale:
            with self._write() as conn:
                self._lock_budgets(conn, user_id, team_id)
                row = self._lock_reservation(conn, request_id)
                if row.state != "open":
                    continue  # settled or released meanwhile by its own process
                if row.sent_at is None:
                    self._release_row(conn, row, "expired before the upstream call was sent", now)
                    released.append(request_id)
                    continue
                self._entry(
                    conn,
                    reservation_from_row(row),
                    "settle",
                    0,
                    now,
                    Usage(0, 0, estimated=True),
                    note=RECOVERED_NOTE,
                )
                conn.execute(
                    reservations.update()
                    .where(reservations.c.request_id == request_id)
                    .values(
                        state="settled",
                        cost_micro_usd=row.worst_case_micro_usd,
                        needs_reconciliation=True,
                        resolved_at=now,
                        note=RECOVERED_NOTE,
                    )
                )
                settled.append(request_id)
        if released or settled:
            log.warning(
                "recovered stale reservations: %d released, %d settled at worst case",
                len(released),
                len(settled),
            )
        return RecoveryReport(released=released, settled_worst_case=settled)

    def needing_reconciliation(self) -> list[str]:
        with self._read() as conn:
            return list(
                conn.execute(
                    sa.select(reservations.c.request_id)
                    .where(reservations.c.needs_reconciliation.is_(True))
                    .order_by(reservations.c.created_at)
                ).scalars()
            )

    def check_balances(self) -> list[str]:
        """Every request's entries must sum to what its reservation says it cost; returns the mismatches."""
        expected = sa.case(
            (reservations.c.state == "open", reservations.c.worst_case_micro_usd),
            else_=reservations.c.cost_micro_usd,
        )
        totals = (
            sa.select(
                ledger_entries.c.request_id, sa.func.sum(ledger_entries.c.amount_micro_usd).label("total")
            )
            .group_by(ledger_entries.c.request_id)
            .subquery()
        )
        query = sa.select(
            reservations.c.request_id, reservations.c.state, expected, totals.c.total
        ).outerjoin(totals, totals.c.request_id == reservations.c.request_id)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            f"{request_id} ({state}): entries sum to {total}, expected {want}"
            for request_id, state, want, total in rows
            if total != want
        ]
