"""Spend over time, for the spend dashboard: cost per day and tier, how answers ended, budget burn with a
projection to the window's end.

The dashboard is read by people deciding whether to act before the bill comes, so every number here is
one the ledger already keeps (the usage report's lines, the answer records, the budgets' committed
spend); nothing is estimated except the projection, which says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa

from assistant.ledger.records import BudgetScope, Window
from assistant.ledger.schema import answers
from assistant.ledger.usage import UsageReports, _lines
from assistant.ledger.windows import projected_spend, window_bounds


@dataclass(frozen=True)
class DayCost:
    """What one tier cost on one day (UTC)."""

    day: str  # ISO date
    tier: str  # "local" or "paid"
    cost_micro_usd: int


@dataclass(frozen=True)
class Outcomes:
    """How the answers of a period ended: how many, how many the local tier escalated, how many said
    "I don't know"."""

    answers: int
    escalated: int
    abstained: int

    @property
    def escalation_rate(self) -> float | None:
        return self.escalated / self.answers if self.answers else None


@dataclass(frozen=True)
class BudgetBurn:
    """A budget's committed spend this window and, for a window that ends, where the spend rate so far
    takes it by then (linear: spend ÷ elapsed share of the window)."""

    scope: BudgetScope
    name: str
    window: Window
    spend_micro_usd: int
    limit_micro_usd: int
    projected_micro_usd: int | None  # None: a total budget never ends, so nothing to project to
    resets_at: datetime | None

    @property
    def projected_over(self) -> bool:
        return self.projected_micro_usd is not None and self.projected_micro_usd > self.limit_micro_usd


class Trends(UsageReports):
    def cost_by_day(self, *, since: date, team: str | None = None) -> list[DayCost]:
        """Cost per day and tier from ``since`` (UTC days), for everyone or for what was charged to a team."""
        team_id = self.get_team(team).id if team is not None else None
        lines = _lines(None, datetime(since.year, since.month, since.day), team_id)
        day = sa.func.date(lines.c.at)
        query = (
            sa.select(day, lines.c.tier, sa.func.sum(lines.c.cost))
            .group_by(day, lines.c.tier)
            .order_by(day, lines.c.tier)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            DayCost(d.isoformat() if isinstance(d, date) else str(d), str(tier), int(cost or 0))
            for d, tier, cost in rows
        ]

    def outcomes(self, *, since: date, team: str | None = None) -> Outcomes:
        query = sa.select(
            sa.func.count(),
            sa.func.sum(sa.case((answers.c.escalated, 1), else_=0)),
            sa.func.sum(sa.case((answers.c.abstained, 1), else_=0)),
        ).where(answers.c.created_at >= datetime(since.year, since.month, since.day))
        if team is not None:
            query = query.where(answers.c.team_id == self.get_team(team).id)
        with self._read() as conn:
            total, escalated, abstained = conn.execute(query).one()
        return Outcomes(int(total or 0), int(escalated or 0), int(abstained or 0))

    def budget_burn(self, *, team: str | None = None) -> list[BudgetBurn]:
        """Every budget (or a team's and its members'), the ones heading furthest past their limit first."""
        now = self._now()
        members = {m.user_name for m in self.members(team)} if team is not None else None
        burns = []
        for budget in self.budget_spend():
            if members is not None and not (
                (budget.scope == "team" and budget.name == team)
                or (budget.scope == "user" and budget.name in members)
            ):
                continue
            if budget.window is None:
                continue
            _, resets_at = window_bounds(budget.window, now)
            burns.append(
                BudgetBurn(
                    budget.scope,
                    budget.name,
                    budget.window,
                    budget.spend_micro_usd,
                    budget.limit_micro_usd,
                    projected_spend(budget.spend_micro_usd, budget.window, now),
                    resets_at,
                )
            )

        def heading(burn: BudgetBurn) -> tuple[float, str, str]:
            reach = burn.projected_micro_usd if burn.projected_micro_usd is not None else burn.spend_micro_usd
            share = reach / burn.limit_micro_usd if burn.limit_micro_usd else float("inf")
            return -share, burn.scope, burn.name

        return sorted(burns, key=heading)
