"""Spend anomalies: alert events raised before a budget is hit, not when it is.

A budget's own alerts fire when committed spend crosses a share of the limit, inside the spending
transaction. Two warnings cannot come from there, because no single spend change crosses them:

- **projection**: at the rate so far, the window's end is projected past the budget (``windows.py``:
  spend ÷ elapsed share). Only once ``min_elapsed`` of the window has passed, since a projection from the
  first hours is mostly noise; at most once per budget window and limit, as the budget's alerts.
- **spike**: a user's or a team's spend in the last hour is over ``factor`` × its own mean hourly spend
  in the ``baseline_days`` before that hour, and at least ``min_micro_usd``. A subject with no spend in
  the baseline has no baseline, so it cannot spike (its budget's alerts still apply). At most one per
  subject per UTC day. The event's ``window`` is ``hour`` and ``window_start`` the hour's start;
  ``spend_micro_usd`` is the hour's spend, ``limit_micro_usd`` the threshold it passed and
  ``alert_ratio`` the factor.

``check_spend_anomalies`` runs every ``alerts.anomaly_interval_s`` in the server and in
``penny alerts check``; events go through the same outbox and webhook as the budget's alerts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from assistant.ledger.alerts import Alerts, record_alert
from assistant.ledger.records import BudgetScope, Window
from assistant.ledger.schema import alert_events, ledger_entries, teams, users
from assistant.ledger.windows import elapsed_share, projected_spend, window_bounds

if TYPE_CHECKING:
    from assistant.settings import AlertSettings


@dataclass(frozen=True)
class Threshold:
    """What an event records as the line crossed (``record_alert`` reads these three)."""

    window: Window | str
    limit_micro_usd: int
    alert_ratio: float


@dataclass(frozen=True)
class AnomalyRules:
    spike_factor: float = 5.0
    baseline_days: int = 7
    spike_min_micro_usd: int = 100_000
    projection_min_elapsed: float = 0.1

    @classmethod
    def from_settings(cls, alerts: AlertSettings) -> AnomalyRules:
        return cls(
            spike_factor=alerts.spike_factor,
            baseline_days=alerts.spike_baseline_days,
            spike_min_micro_usd=round(alerts.spike_min_usd * 1_000_000),
            projection_min_elapsed=alerts.projection_min_elapsed,
        )


class Anomalies(Alerts):
    def check_spend_anomalies(self, rules: AnomalyRules = AnomalyRules()) -> int:
        """Record the projection and spike events due now; returns how many were new."""
        now = self._now()
        return self._projections(rules, now) + self._spikes(rules, now)

    def _projections(self, rules: AnomalyRules, now: datetime) -> int:
        new = 0
        for budget in self.budget_spend():
            if budget.window is None or budget.subject_id is None or budget.alert_ratio is None:
                continue
            share = elapsed_share(budget.window, now)
            projected = projected_spend(budget.spend_micro_usd, budget.window, now)
            if share is None or projected is None or share < rules.projection_min_elapsed:
                continue
            if budget.spend_micro_usd >= budget.limit_micro_usd or projected <= budget.limit_micro_usd:
                continue  # already exhausted (its own alert), or on track
            start, _ = window_bounds(budget.window, now)
            with self._write() as conn:
                new += record_alert(
                    conn,
                    kind="projection",
                    scope=budget.scope,
                    subject_id=budget.subject_id,
                    subject_name=budget.name,
                    budget=Threshold(budget.window, budget.limit_micro_usd, budget.alert_ratio),
                    window_start=start,
                    spend_micro_usd=budget.spend_micro_usd,
                    now=now,
                )
        return new

    def _spikes(self, rules: AnomalyRules, now: datetime) -> int:
        hour_start = now - timedelta(hours=1)
        baseline_start = hour_start - timedelta(days=rules.baseline_days)
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        hours = rules.baseline_days * 24
        new = 0
        with self._read() as conn:
            found = [
                (scope, subject, name, int(last), int(before))
                for scope, key, names in (
                    ("user", ledger_entries.c.user_id, users),
                    ("team", ledger_entries.c.team_id, teams),
                )
                for subject, name, last, before in conn.execute(
                    _spend_query(key, names, hour_start, baseline_start)
                )
            ]
            already = {
                (scope, subject)
                for scope, subject in conn.execute(
                    sa.select(alert_events.c.scope, alert_events.c.subject_id).where(
                        alert_events.c.kind == "spike", alert_events.c.created_at >= day_start
                    )
                )
            }
        for scope, subject, name, last, before in found:
            if before <= 0 or (scope, subject) in already:
                continue
            threshold = math.ceil(rules.spike_factor * before / hours)
            if last <= threshold or last < rules.spike_min_micro_usd:
                continue
            with self._write() as conn:
                new += record_alert(
                    conn,
                    kind="spike",
                    scope=_scope(scope),
                    subject_id=subject,
                    subject_name=name,
                    budget=Threshold("hour", threshold, rules.spike_factor),
                    window_start=hour_start,
                    spend_micro_usd=last,
                    now=now,
                )
        return new


def _scope(scope: str) -> BudgetScope:
    return "team" if scope == "team" else "user"


def _spend_query(
    key: sa.Column, names: sa.Table, hour_start: datetime, baseline_start: datetime
) -> sa.Select:
    """Per subject with spend since ``baseline_start``: its name, the last hour's spend, and the spend in
    the baseline before that hour (ledger entries: settled, held and released amounts net out)."""
    at = ledger_entries.c.charged_at
    amount = ledger_entries.c.amount_micro_usd
    return (
        sa.select(
            key,
            names.c.name,
            sa.func.sum(sa.case((at >= hour_start, amount), else_=0)),
            sa.func.sum(sa.case((at < hour_start, amount), else_=0)),
        )
        .join(names, names.c.id == key)
        .where(at >= baseline_start, key.is_not(None))
        .group_by(key, names.c.name)
    )
