"""Spend alerts: the outbox of alert events, their delivery attempts, and budgets' spend for the gauges.

``check_crossing`` and ``record_alert`` run inside the spending transaction (``spend.py``), under the
budget locks, so an event is committed exactly when the spend change that crossed the threshold is.
Delivery is someone else's job (``assistant.alerts``): it claims due events here with a short lease (the
row lock is held only while claiming, never across the HTTP call), records each attempt, and either marks
the event delivered or schedules the next attempt.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from assistant.ledger.base import LedgerBase
from assistant.ledger.records import AlertDelivery, AlertEvent, AlertKind, BudgetScope, BudgetSpend
from assistant.ledger.schema import (
    alert_deliveries,
    alert_events,
    budgets,
    ledger_entries,
    team_budgets,
    teams,
    users,
)
from assistant.ledger.windows import window_bounds

log = logging.getLogger("penny.ledger")

WINDOW_KINDS = ("day", "month", "total")


def record_alert(
    conn: sa.Connection,
    *,
    kind: AlertKind,
    scope: BudgetScope,
    subject_id: int,
    subject_name: str | None,
    budget: Any,
    window_start: datetime,
    spend_micro_usd: int,
    now: datetime,
) -> bool:
    """Write the event unless this crossing already has one; True when it is new. ``budget``: a budget row,
    or anything with its ``window``, ``limit_micro_usd`` and ``alert_ratio`` (anomalies.py's Threshold)."""
    if subject_name is None:
        subject_name = conn.execute(sa.select(users.c.name).where(users.c.id == subject_id)).scalar_one()
    values = {
        "id": uuid.uuid4().hex,
        "kind": kind,
        "scope": scope,
        "subject_id": subject_id,
        "subject_name": subject_name,
        "window": budget.window,
        "window_start": window_start,
        "spend_micro_usd": spend_micro_usd,
        "limit_micro_usd": budget.limit_micro_usd,
        "alert_ratio": budget.alert_ratio,
        "created_at": now,
        "attempts": 0,
        "next_attempt_at": now,
    }
    # ON CONFLICT DO NOTHING, not a caught IntegrityError: on PostgreSQL a failed INSERT aborts the whole
    # transaction, and this one carries the spend change.
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    # RETURNING, not rowcount: psycopg reports no reliable rowcount for a skipped conflict.
    insert = dialect.insert(alert_events).values(**values).on_conflict_do_nothing()
    inserted = conn.execute(insert.returning(alert_events.c.id)).first() is not None
    if inserted:
        what = {
            "exhausted": "exhausted the {window} budget",
            "alert_ratio": "crossed {ratio:.0%} of the {window} budget",
            "projection": "is projected past the {window} budget by the window's end",
            "spike": "spent {ratio:g}x its usual hourly rate in the last hour",
        }[kind].format(window=budget.window, ratio=budget.alert_ratio)
        log.warning(
            "%s %s: %s (%d of %d micro-USD)",
            scope,
            subject_name,
            what,
            spend_micro_usd,
            budget.limit_micro_usd,
        )
    return bool(inserted)


def check_crossing(
    conn: sa.Connection,
    *,
    scope: BudgetScope,
    subject_id: int,
    subject_name: str | None,
    budget: sa.Row,
    window_start: datetime,
    spend_micro_usd: int,
    now: datetime,
) -> None:
    """Record the thresholds that committed spend (settled + held) has now reached."""
    kinds: list[AlertKind] = []
    if spend_micro_usd >= budget.alert_ratio * budget.limit_micro_usd:
        kinds.append("alert_ratio")
    if spend_micro_usd >= budget.limit_micro_usd:
        kinds.append("exhausted")
    for kind in kinds:
        record_alert(
            conn,
            kind=kind,
            scope=scope,
            subject_id=subject_id,
            subject_name=subject_name,
            budget=budget,
            window_start=window_start,
            spend_micro_usd=spend_micro_usd,
            now=now,
        )


class Alerts(LedgerBase):
    def claim_alerts(
        self, *, limit: int, lease_s: float, include_scheduled: bool = False
    ) -> list[AlertEvent]:
        """Undelivered events due now (``include_scheduled``: also those waiting out a backoff), leased to
        this caller for ``lease_s`` so another process does not send them meanwhile. PostgreSQL skips rows
        another claimer holds (``SKIP LOCKED``); SQLite's single writer serialises claims anyway."""
        now = self._now()
        query = (
            sa.select(alert_events)
            .where(
                alert_events.c.delivered_at.is_(None),
                sa.or_(alert_events.c.claimed_until.is_(None), alert_events.c.claimed_until <= now),
            )
            .order_by(alert_events.c.created_at, alert_events.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if not include_scheduled:
            query = query.where(alert_events.c.next_attempt_at <= now)
        with self._write() as conn:
            rows = conn.execute(query).all()
            if rows:
                conn.execute(
                    alert_events.update()
                    .where(alert_events.c.id.in_([r.id for r in rows]))
                    .values(claimed_until=now + timedelta(seconds=lease_s))
                )
        return [_event(r) for r in rows]

    def record_delivery(
        self,
        event: AlertEvent,
        *,
        status_code: int | None,
        error: str | None,
        next_attempt_at: datetime | None,
    ) -> AlertDelivery:
        """Record one attempt; a 2xx marks the event delivered, anything else schedules the next attempt
        (``next_attempt_at``) and lets go of the lease."""
        now = self._now()
        delivered = status_code is not None and 200 <= status_code < 300
        with self._write() as conn:
            attempts = conn.execute(
                sa.select(alert_events.c.attempts).where(alert_events.c.id == event.id).with_for_update()
            ).scalar_one()
            attempt = attempts + 1
            conn.execute(
                alert_deliveries.insert().values(
                    event_id=event.id,
                    attempt=attempt,
                    attempted_at=now,
                    status_code=status_code,
                    error=error[:300] if error else None,
                    delivered=delivered,
                )
            )
            values: dict[str, object] = {"attempts": attempt, "claimed_until": None}
            if delivered:
                values["delivered_at"] = now
            else:
                values["next_attempt_at"] = next_attempt_at or now
            conn.execute(alert_events.update().where(alert_events.c.id == event.id).values(**values))
        return AlertDelivery(event.id, attempt, now, status_code, error, delivered)

    def alert_events(self, *, pending_only: bool = False, limit: int = 100) -> list[AlertEvent]:
        """The newest events first; ``pending_only``: those not delivered yet."""
        query = sa.select(alert_events).order_by(alert_events.c.created_at.desc(), alert_events.c.id)
        if pending_only:
            query = query.where(alert_events.c.delivered_at.is_(None))
        with self._read() as conn:
            rows = conn.execute(query.limit(limit)).all()
        return [_event(r) for r in rows]

    def alert_deliveries(self, event_id: str) -> list[AlertDelivery]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(alert_deliveries)
                .where(alert_deliveries.c.event_id == event_id)
                .order_by(alert_deliveries.c.attempt)
            ).all()
        return [
            AlertDelivery(r.event_id, r.attempt, r.attempted_at, r.status_code, r.error, r.delivered)
            for r in rows
        ]

    def budget_spend(self) -> list[BudgetSpend]:
        """Every user and team that has a budget, with its committed spend this window: one grouped SUM
        per window kind and scope, not a query per subject."""
        now = self._now()
        result: list[BudgetSpend] = []
        with self._read() as conn:
            for window in WINDOW_KINDS:
                start, _ = window_bounds(window, now)  # type: ignore[arg-type]
                for scope, table, key, names, entry_key in (
                    ("user", budgets, budgets.c.user_id, users, ledger_entries.c.user_id),
                    ("team", team_budgets, team_budgets.c.team_id, teams, ledger_entries.c.team_id),
                ):
                    spent = (
                        sa.select(
                            entry_key.label("subject"),
                            sa.func.sum(ledger_entries.c.amount_micro_usd).label("spent"),
                        )
                        .where(ledger_entries.c.charged_at >= start, entry_key.is_not(None))
                        .group_by(entry_key)
                        .subquery()
                    )
                    rows = conn.execute(
                        sa.select(
                            names.c.name,
                            table.c.limit_micro_usd,
                            sa.func.coalesce(spent.c.spent, 0),
                            key,
                            table.c.alert_ratio,
                        )
                        .join(names, names.c.id == key)
                        .outerjoin(spent, spent.c.subject == key)
                        .where(table.c.window == window)
                    ).all()
                    result += [
                        BudgetSpend(scope, r[0], int(r[2]), int(r[1]), window, r[3], r[4])  # type: ignore[arg-type]
                        for r in rows
                    ]
        return result


def _event(row: sa.Row) -> AlertEvent:
    return AlertEvent(
        id=row.id,
        kind=row.kind,
        scope=row.scope,
        subject=row.subject_name,
        window=row.window,
        window_start=row.window_start,
        spend_micro_usd=row.spend_micro_usd,
        limit_micro_usd=row.limit_micro_usd,
        alert_ratio=row.alert_ratio,
        created_at=row.created_at,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        delivered_at=row.delivered_at,
    )
