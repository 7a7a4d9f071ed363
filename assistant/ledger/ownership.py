"""Total cost of ownership, by collection or by team: each group's answers (paid, local generation,
retrieval and evaluator), its ingest runs and its days of storage, and their sum.

Paid spend here is the answers' (``answers.paid_cost_micro_usd``): ledger entries carry no collection, so
paid spend outside answers (shadow checks, calibration) is in ``usage()`` by user, not here. Each ingest run
and each day of storage is counted once, under the collection it was for and the team that owned it then.
Storage belongs to a collection, not to a user: narrowed to a user, the report has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa

from assistant.ledger.errors import LedgerError
from assistant.ledger.records import OWNERSHIP_BYS, OwnershipBy
from assistant.ledger.schema import answers, ingest_costs, storage_accruals, teams
from assistant.ledger.teams import Teams
from assistant.ledger.usage import narrowed

NO_COLLECTION = "(none)"  # answers asked of the caller's passages
NO_TEAM = "(no team)"


@dataclass
class OwnershipRow:
    """One collection's or team's cost of ownership, in micro-USD. ``compute_unknown`` counts answers
    recorded before their retrieval and evaluator were priced (migration 11): left out, never as 0."""

    key: str
    answers: int = 0
    paid_micro_usd: int = 0
    local_micro_usd: int = 0
    retrieval_micro_usd: int = 0
    evaluation_micro_usd: int = 0
    compute_unknown: int = 0
    ingests: int = 0
    ingest_seconds: float = 0.0
    ingest_micro_usd: int = 0
    storage_bytes: int = 0  # the latest measured day's, summed over the group's collections
    storage_micro_usd: int = 0

    @property
    def total_micro_usd(self) -> int:
        return (
            self.paid_micro_usd
            + self.local_micro_usd
            + self.retrieval_micro_usd
            + self.evaluation_micro_usd
            + self.ingest_micro_usd
            + self.storage_micro_usd
        )


class OwnershipReports(Teams):
    def ownership(
        self,
        *,
        by: OwnershipBy = "collection",
        user: str | None = None,
        team: str | None = None,
        since: date | datetime | None = None,
    ) -> list[OwnershipRow]:
        """Cost of ownership per collection or team; ``user`` narrows it to that user's answers and ingest
        runs, ``team`` to what was charged to the team; ``since`` to answers, runs and days from then."""
        if by not in OWNERSHIP_BYS:
            choices = ", ".join(OWNERSHIP_BYS)
            raise LedgerError(f"cannot group cost of ownership by {by!r}: use one of {choices}")
        user_id = self.get_user(user).id if user is not None else None
        team_id = self.get_team(team).id if team is not None else None
        if isinstance(since, datetime):
            since = since.date()
        start = None if since is None else datetime(since.year, since.month, since.day)
        rows: dict[str, OwnershipRow] = {}
        with self._read() as conn:
            names = dict(conn.execute(sa.select(teams.c.id, teams.c.name)).all())

            def key(collection: str | None, owner: int | None) -> str:
                if by == "collection":
                    return collection or NO_COLLECTION
                return names.get(owner, NO_TEAM) if owner is not None else NO_TEAM

            def row(collection: str | None, owner: int | None) -> OwnershipRow:
                name = key(collection, owner)
                return rows.setdefault(name, OwnershipRow(name))

            for collection, owner, *n in conn.execute(_answers_query(user_id, team_id, start)):
                line = row(collection, owner)
                line.answers += int(n[0])
                line.paid_micro_usd += int(n[1] or 0)
                line.local_micro_usd += int(n[2] or 0)
                line.retrieval_micro_usd += int(n[3] or 0)
                line.evaluation_micro_usd += int(n[4] or 0)
                line.compute_unknown += int(n[5] or 0)
            ingests = conn.execute(_ingest_query(user_id, team_id, start))
            for collection, owner, runs, seconds, cost in ingests:
                line = row(collection, owner)
                line.ingests += int(runs)
                line.ingest_seconds += float(seconds or 0)
                line.ingest_micro_usd += int(cost or 0)
            if user_id is None:
                for collection, owner, cost in conn.execute(_storage_query(team_id, since)):
                    row(collection, owner).storage_micro_usd += int(cost or 0)
                for collection, owner, size in conn.execute(_latest_bytes_query(team_id, since)):
                    row(collection, owner).storage_bytes += int(size or 0)
        return sorted(rows.values(), key=lambda line: line.key)


def _answers_query(user_id: int | None, team_id: int | None, start: datetime | None) -> sa.Select:
    unknown = sa.case((answers.c.retrieval_micro_usd.is_(None), 1), else_=0)
    query = sa.select(
        answers.c.collection,
        answers.c.team_id,
        sa.func.count(),
        sa.func.sum(answers.c.paid_cost_micro_usd),
        sa.func.sum(answers.c.local_cost_micro_usd),
        sa.func.sum(answers.c.retrieval_micro_usd),
        sa.func.sum(answers.c.evaluation_micro_usd),
        sa.func.sum(unknown),
    ).group_by(answers.c.collection, answers.c.team_id)
    return narrowed(query, answers, user_id, team_id, start)


def _ingest_query(user_id: int | None, team_id: int | None, start: datetime | None) -> sa.Select:
    query = sa.select(
        ingest_costs.c.collection,
        ingest_costs.c.team_id,
        sa.func.count(),
        sa.func.sum(ingest_costs.c.seconds),
        sa.func.sum(ingest_costs.c.micro_usd),
    ).group_by(ingest_costs.c.collection, ingest_costs.c.team_id)
    return narrowed(query, ingest_costs, user_id, team_id, start)


def _storage_where(query: sa.Select, team_id: int | None, since: date | None) -> sa.Select:
    if team_id is not None:
        query = query.where(storage_accruals.c.team_id == team_id)
    if since is not None:
        query = query.where(storage_accruals.c.day >= since)
    return query


def _storage_query(team_id: int | None, since: date | None) -> sa.Select:
    query = sa.select(
        storage_accruals.c.collection, storage_accruals.c.team_id, sa.func.sum(storage_accruals.c.micro_usd)
    ).group_by(storage_accruals.c.collection, storage_accruals.c.team_id)
    return _storage_where(query, team_id, since)


def _latest_bytes_query(team_id: int | None, since: date | None) -> sa.Select:
    """Each collection's bytes on its latest accrued day (in range), with the team of that row."""
    latest = _storage_where(
        sa.select(storage_accruals.c.collection, sa.func.max(storage_accruals.c.day).label("day")).group_by(
            storage_accruals.c.collection
        ),
        team_id,
        since,
    ).subquery()
    at_latest = sa.and_(
        storage_accruals.c.collection == latest.c.collection, storage_accruals.c.day == latest.c.day
    )
    columns = (storage_accruals.c.collection, storage_accruals.c.team_id, storage_accruals.c.bytes)
    return sa.select(*columns).join(latest, at_latest)
