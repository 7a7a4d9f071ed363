"""Usage reports: spend, tokens and savings grouped by user, day, model or tier, and the paid tier's totals
per day and model that reconciliation compares with a provider's export.

Paid lines come from the ledger entries (a request's entries sum to what it cost, including spend of a
process that died before recording its answer); local lines come from the answer records. Savings come
from the answer records alone: each answer's paid-only cost against what it cost (local + paid).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from assistant.ledger.errors import LedgerError
from assistant.ledger.prices import format_signed_usd, format_usd
from assistant.ledger.records import GROUP_BYS, GroupBy, UsageRow
from assistant.ledger.schema import answers, ledger_entries, users
from assistant.ledger.teams import Teams

PAID_KINDS = ("reserve", "settle", "release", "adjust")
SAVINGS_FIELDS = ("paid_only_micro_usd", "known_cost_micro_usd", "known_answers", "unknown_answers")


class UsageReports(Teams):
    def usage(
        self,
        *,
        user: str | None = None,
        team: str | None = None,
        since: date | datetime | None = None,
        by: GroupBy = "user",
    ) -> list[UsageRow]:
        """Spend and tokens grouped by ``by``; ``user`` and ``team`` narrow it to what was charged to them
        (a team's lines are its members' requests on its collections)."""
        if by not in GROUP_BYS:
            raise LedgerError(f"cannot group usage by {by!r}: use one of {', '.join(GROUP_BYS)}")
        user_id = self.get_user(user).id if user is not None else None
        team_id = self.get_team(team).id if team is not None else None
        if isinstance(since, date) and not isinstance(since, datetime):
            since = datetime(since.year, since.month, since.day)
        with self._read() as conn:
            rows = to_rows(conn.execute(usage_query(user_id, since, by, team_id)))
            savings = conn.execute(savings_query(user_id, since, by, team_id)).all()
        return with_savings(rows, savings)

    def paid_by_day_model(self, start: date, end: date) -> dict[tuple[str, str], tuple[int, int, int, int]]:
        """{(day, model): (requests, prompt tokens, completion tokens, cost micro-USD)} for [start, end]."""
        lo = datetime(start.year, start.month, start.day)
        hi = datetime(end.year, end.month, end.day) + timedelta(days=1)
        with self._read() as conn:
            rows = conn.execute(paid_by_day_model_query(lo, hi)).all()
        result = {}
        for day, model, *numbers in rows:
            key = (day.isoformat() if isinstance(day, date) else str(day), str(model))
            result[key] = tuple(int(n or 0) for n in numbers)
        return result  # type: ignore[return-value]


def _lines(user_id: int | None, since: datetime | None, team_id: int | None = None) -> sa.Subquery:
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
    if team_id is not None:
        paid = paid.where(ledger_entries.c.team_id == team_id)
        local = local.where(answers.c.team_id == team_id)
    if since is not None:
        paid = paid.where(ledger_entries.c.charged_at >= since)
        local = local.where(answers.c.created_at >= since)
    return sa.union_all(paid, local).subquery("lines")


def usage_query(
    user_id: int | None, since: datetime | None, by: GroupBy, team_id: int | None = None
) -> sa.Select:
    lines = _lines(user_id, since, team_id)
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


def savings_query(
    user_id: int | None, since: datetime | None, by: GroupBy, team_id: int | None = None
) -> sa.Select:
    """Per group: paid-only cost and actual cost (local + paid) of the answers whose paid-only cost is
    known, how many those are, and how many are not (NULL: before migration 10, or no paid model). By
    model, an answer counts for the model that produced it; one no model produced (a cache hit, an
    abstention without generation) for its tier."""
    known = answers.c.paid_only_micro_usd.is_not(None)
    actual = answers.c.local_cost_micro_usd + answers.c.paid_cost_micro_usd
    source: sa.FromClause = answers
    if by == "user":
        key: sa.ColumnElement = users.c.name
        source = answers.join(users, users.c.id == answers.c.user_id)
    elif by == "model":
        produced = sa.case((answers.c.tier == "paid", answers.c.paid_model), else_=answers.c.local_model)
        key = sa.func.coalesce(produced, answers.c.tier)
    else:
        key = {"day": sa.func.date(answers.c.created_at), "tier": answers.c.tier}[by]
    query = (
        sa.select(
            key.label("key"),
            sa.func.sum(sa.case((known, answers.c.paid_only_micro_usd), else_=0)),
            sa.func.sum(sa.case((known, actual), else_=0)),
            sa.func.sum(sa.case((known, 1), else_=0)),
            sa.func.sum(sa.case((known, 0), else_=1)),
        )
        .select_from(source)
        .group_by(key)
    )
    return narrowed(query, answers, user_id, team_id, since)


def narrowed(
    query: sa.Select, table: sa.Table, user_id: int | None, team_id: int | None, start: datetime | None
) -> sa.Select:
    """``query`` over ``table`` (answers, or ingest runs) narrowed to a user, a team and a start time."""
    if user_id is not None:
        query = query.where(table.c.user_id == user_id)
    if team_id is not None:
        query = query.where(table.c.team_id == team_id)
    if start is not None:
        query = query.where(table.c.created_at >= start)
    return query


def usage_total(rows: Sequence[UsageRow]) -> UsageRow:
    """The ``TOTAL`` line of a report: requests, cost and savings summed (tokens left at 0: a sum across
    models counts unlike tokens)."""
    sums = {
        field: sum(getattr(row, field) for row in rows)
        for field in ("requests", "cost_micro_usd", *SAVINGS_FIELDS)
    }
    return UsageRow("TOTAL", prompt_tokens=0, cached_prompt_tokens=0, completion_tokens=0, **sums)


def savings_shown(row: UsageRow) -> tuple[str, str, str]:
    """PAID_ONLY, SAVED and SAVED_% as people read them ("$0.0107", "-$0.00003", "52.6%"), "-" where
    nothing is known: what `penny usage` prints and the spend dashboard shows."""
    saved, percent = row.saved_micro_usd, row.saved_percent
    if saved is None:
        return "-", "-", "-"
    shown = "-" if percent is None else f"{percent:.1f}%"
    return format_usd(row.paid_only_micro_usd), format_signed_usd(saved), shown


def with_savings(rows: list[UsageRow], savings: Sequence[sa.Row]) -> list[UsageRow]:
    """The report's lines with their savings. A group with savings but no spend line (cache hits that cost
    nothing) is added when its paid-only cost is known: that is money saved."""
    found = {_key(key): tuple(int(n or 0) for n in numbers) for key, *numbers in savings}
    merged = [replace(row, **_savings_fields(found.pop(row.key, (0, 0, 0, 0)))) for row in rows]
    added = [
        UsageRow(key, 0, 0, 0, 0, 0, **_savings_fields(numbers))
        for key, numbers in found.items()
        if numbers[2]
    ]
    return sorted(merged + added, key=lambda row: row.key) if added else merged


def _savings_fields(numbers: tuple[int, ...]) -> dict[str, int]:
    paid_only, known_cost, known, unknown = numbers
    return {
        "paid_only_micro_usd": paid_only,
        "known_cost_micro_usd": known_cost,
        "known_answers": known,
        "unknown_answers": unknown,
    }


def _key(key: object) -> str:
    return key.isoformat() if isinstance(key, date) else str(key)


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
