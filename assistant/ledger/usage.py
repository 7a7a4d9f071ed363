"""Usage reports: spend and tokens grouped by user, day, model or tier.

Paid lines come from the ledger entries (a request's entries sum to what it cost, including spend of a
process that died before recording its answer); local lines come from the answer records.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

import sqlalchemy as sa

from assistant.ledger.schema import answers, ledger_entries, users

GroupBy = Literal["user", "day", "model", "tier"]
GROUP_BYS: tuple[GroupBy, ...] = ("user", "day", "model", "tier")
PAID_KINDS = ("reserve", "settle", "release", "adjust")


@dataclass(frozen=True)
class UsageRow:
    key: str
    requests: int
    prompt_tokens: int
    cached_prompt_tokens: int
    completion_tokens: int
    cost_micro_usd: int

    @property
    def cost_usd(self) -> str:
        return f"{self.cost_micro_usd / 1_000_000:.6f}"


def _lines(user_id: int | None, since: datetime | None) -> sa.Subquery:
    paid = sa.select(
        ledger_entries.c.user_id,
        ledger_entries.c.charged_at.label("at"),
        ledger_entries.c.model.label("model"),
        sa.literal("paid", sa.String).label("tier"),
        sa.case((ledger_entries.c.kind == "settle", 1), else_=0).label("requests"),
        ledger_entries.c.prompt_tokens,
        ledger_entries.c.cached_prompt_tokens,
        ledger_entries.c.completion_tokens,
        ledger_entries.c.amount_micro_usd.label("cost"),
    ).where(ledger_entries.c.kind.in_(PAID_KINDS))
    local = sa.select(
        answers.c.user_id,
        answers.c.created_at.label("at"),
        answers.c.local_model.label("model"),
        sa.literal("local", sa.String).label("tier"),
        sa.literal(1, sa.Integer).label("requests"),
        answers.c.local_prompt_tokens.label("prompt_tokens"),
        sa.literal(0, sa.Integer).label("cached_prompt_tokens"),
        answers.c.local_completion_tokens.label("completion_tokens"),
        answers.c.local_cost_micro_usd.label("cost"),
    ).where(answers.c.local_model.is_not(None))
    if user_id is not None:
        paid = paid.where(ledger_entries.c.user_id == user_id)
        local = local.where(answers.c.user_id == user_id)
    if since is not None:
        paid = paid.where(ledger_entries.c.charged_at >= since)
        local = local.where(answers.c.created_at >= since)
    return sa.union_all(paid, local).subquery("lines")


def usage_query(user_id: int | None, since: datetime | None, by: GroupBy) -> sa.Select:
    lines = _lines(user_id, since)
    if by == "user":
        key: sa.ColumnElement = users.c.name
        source: sa.FromClause = lines.join(users, users.c.id == lines.c.user_id)
    else:
        key = {"day": sa.func.date(lines.c.at), "model": lines.c.model, "tier": lines.c.tier}[by]
        source = lines
    return (
        sa.select(
            key.label("key"),
            sa.func.sum(lines.c.requests),
            sa.func.sum(lines.c.prompt_tokens),
            sa.func.sum(lines.c.cached_prompt_tokens),
            sa.func.sum(lines.c.completion_tokens),
            sa.func.sum(lines.c.cost),
        )
        .select_from(source)
        .group_by(key)
        .order_by(key)
    )


def to_rows(result: sa.Result) -> list[UsageRow]:
    rows = []
    for key, *numbers in result:
        if isinstance(key, date):
            key = key.isoformat()
        rows.append(UsageRow(str(key), *(int(n or 0) for n in numbers)))
    return rows


def paid_by_day_model_query(start: datetime, end: datetime) -> sa.Select:
    """Paid-tier totals per (day, model) for reconciliation: prompt tokens include cached ones."""
    day = sa.func.date(ledger_entries.c.charged_at)
    return (
        sa.select(
            day,
            ledger_entries.c.model,
            sa.func.sum(sa.case((ledger_entries.c.kind == "settle", 1), else_=0)),
            sa.func.sum(ledger_entries.c.prompt_tokens),
            sa.func.sum(ledger_entries.c.completion_tokens),
            sa.func.sum(ledger_entries.c.amount_micro_usd),
        )
        .where(
            ledger_entries.c.kind.in_(PAID_KINDS),
            ledger_entries.c.charged_at >= start,
            ledger_entries.c.charged_at < end,
        )
        .group_by(day, ledger_entries.c.model)
    )
