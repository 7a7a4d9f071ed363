"""Teams: members with a role, a budget the members share, and the collections a team owns.

A collection belongs to at most one team, and only that team's members may read it. Which team a request
is charged to follows from the collection it asks: the owner (a user in several teams is charged by the
one whose documents they read). ``authorize_collection`` is the one place that decides both.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

import sqlalchemy as sa

from assistant.ledger.accounts import DEFAULT_ALERT_RATIO, Accounts, check_budget_terms
from assistant.ledger.errors import AlreadyExists, CollectionForbidden, LedgerError, NotFound, TeamForbidden
from assistant.ledger.records import (
    TEAM_ROLES,
    BudgetStatus,
    Principal,
    Team,
    TeamBudget,
    TeamMember,
    TeamRole,
    Window,
)
from assistant.ledger.schema import collections, ledger_entries, team_budgets, team_members, teams, users
from assistant.ledger.windows import window_bounds


def team_committed_micro_usd(conn: sa.Connection, team_id: int, since: datetime) -> int:
    """The team's settled spend + open reservations since ``since``: a SUM over entries charged to it."""
    return int(
        conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(ledger_entries.c.amount_micro_usd), 0)).where(
                ledger_entries.c.team_id == team_id, ledger_entries.c.charged_at >= since
            )
        ).scalar_one()
    )


def forbidden_collection(name: str) -> CollectionForbidden:
    return CollectionForbidden(
        f"no access to collection {name!r}: ask an operator to add you to the team that owns it"
    )


class Teams(Accounts):
    def create_team(self, name: str) -> Team:
        name = name.strip()
        if not name or len(name) > 100:
            raise LedgerError("a team name must be 1-100 characters")
        now = self._now()
        with self._write() as conn:
            if conn.execute(sa.select(teams.c.id).where(teams.c.name == name)).first():
                raise AlreadyExists(f"team {name!r} already exists")
            team_id = conn.execute(teams.insert().values(name=name, created_at=now)).inserted_primary_key[0]
        return Team(id=team_id, name=name, created_at=now)

    def get_team(self, name: str) -> Team:
        with self._read() as conn:
            row = conn.execute(sa.select(teams).where(teams.c.name == name)).first()
        if row is None:
            raise NotFound(f"no team {name!r}; create it with `penny teams create {name}`")
        return Team(id=row.id, name=row.name, created_at=row.created_at)

    def list_teams(self) -> list[Team]:
        with self._read() as conn:
            rows = conn.execute(sa.select(teams).order_by(teams.c.name)).all()
        return [Team(id=r.id, name=r.name, created_at=r.created_at) for r in rows]

    # -- members ------------------------------------------------------------------------------------

    def set_member(self, team_name: str, user_name: str, role: TeamRole = "member") -> TeamMember:
        """Add USER to TEAM with ROLE, or change their role if already a member."""
        if role not in TEAM_ROLES:
            raise LedgerError(f"unknown team role {role!r}: use one of {', '.join(TEAM_ROLES)}")
        team, user = self.get_team(team_name), self.get_user(user_name)
        with self._write() as conn:
            where = (team_members.c.team_id == team.id, team_members.c.user_id == user.id)
            if conn.execute(sa.select(team_members.c.role).where(*where).with_for_update()).first():
                conn.execute(team_members.update().where(*where).values(role=role))
            else:
                conn.execute(
                    team_members.insert().values(
                        team_id=team.id, user_id=user.id, role=role, added_at=self._now()
                    )
                )
        return TeamMember(team.name, user.name, role)

    def remove_member(self, team_name: str, user_name: str) -> None:
        team, user = self.get_team(team_name), self.get_user(user_name)
        with self._write() as conn:
            removed = conn.execute(
                team_members.delete().where(
                    team_members.c.team_id == team.id, team_members.c.user_id == user.id
                )
            ).rowcount
        if removed != 1:
            raise NotFound(f"{user.name} is not a member of team {team.name}")

    def members(self, team_name: str) -> list[TeamMember]:
        team = self.get_team(team_name)
        with self._read() as conn:
            rows = conn.execute(
                sa.select(users.c.name, team_members.c.role)
                .join(users, users.c.id == team_members.c.user_id)
                .where(team_members.c.team_id == team.id)
                .order_by(users.c.name)
            ).all()
        return [TeamMember(team.name, r.name, r.role) for r in rows]

    def memberships(self, principal: Principal) -> list[TeamMember]:
        """The teams a user belongs to, with their role in each."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(teams.c.name, team_members.c.role)
                .join(teams, teams.c.id == team_members.c.team_id)
                .where(team_members.c.user_id == principal.user_id)
                .order_by(teams.c.name)
            ).all()
        return [TeamMember(r.name, principal.user_name, r.role) for r in rows]

    def require_team_admin(self, principal: Principal, team_name: str) -> Team:
        """The team, if the principal is its admin; else TeamForbidden (the same for a missing team)."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(teams.c.id, teams.c.name, teams.c.created_at)
                .join(team_members, team_members.c.team_id == teams.c.id)
                .where(
                    teams.c.name == team_name,
                    team_members.c.user_id == principal.user_id,
                    team_members.c.role == "admin",
                )
            ).first()
        if row is None:
            raise TeamForbidden(f"only an admin of team {team_name!r} can read its usage")
        return Team(id=row.id, name=row.name, created_at=row.created_at)

    # -- team budgets -------------------------------------------------------------------------------

    def set_team_budget(
        self, team_name: str, limit_micro_usd: int, window: Window, alert_ratio: float = DEFAULT_ALERT_RATIO
    ) -> TeamBudget:
        check_budget_terms(limit_micro_usd, window, alert_ratio)
        team = self.get_team(team_name)
        values = {
            "limit_micro_usd": limit_micro_usd,
            "window": window,
            "alert_ratio": alert_ratio,
            "updated_at": self._now(),
        }
        with self._write() as conn:
            where = team_budgets.c.team_id == team.id
            if conn.execute(sa.select(team_budgets.c.team_id).where(where).with_for_update()).first():
                conn.execute(team_budgets.update().where(where).values(**values))
            else:
                conn.execute(team_budgets.insert().values(team_id=team.id, **values))
        return TeamBudget(team.name, limit_micro_usd, window, alert_ratio)

    def team_budget_status(self, team_name: str) -> BudgetStatus | None:
        team = self.get_team(team_name)
        now = self._now()
        with self._read() as conn:
            row = conn.execute(sa.select(team_budgets).where(team_budgets.c.team_id == team.id)).first()
            if row is None:
                return None
            start, reset = window_bounds(row.window, now)
            committed = team_committed_micro_usd(conn, team.id, start)
        budget = TeamBudget(team.name, row.limit_micro_usd, row.window, row.alert_ratio)
        return BudgetStatus(budget, start, reset, committed)

    # -- collections --------------------------------------------------------------------------------

    def assign_collection(self, collection: str, team_name: str) -> None:
        """Give COLLECTION to TEAM (moving it from any other team): from now on only its members read it."""
        team = self.get_team(team_name)
        with self._write() as conn:
            where = collections.c.name == collection
            if conn.execute(sa.select(collections.c.name).where(where).with_for_update()).first():
                conn.execute(
                    collections.update().where(where).values(team_id=team.id, assigned_at=self._now())
                )
            else:
                conn.execute(
                    collections.insert().values(name=collection, team_id=team.id, assigned_at=self._now())
                )

    def unassign_collection(self, collection: str) -> None:
        with self._write() as conn:
            removed = conn.execute(collections.delete().where(collections.c.name == collection)).rowcount
        if removed != 1:
            raise NotFound(f"collection {collection!r} belongs to no team")

    def collection_owners(self) -> dict[str, str]:
        """{collection: owning team} for every assigned collection."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(collections.c.name, teams.c.name.label("team"))
                .join(teams, teams.c.id == collections.c.team_id)
                .order_by(collections.c.name)
            ).all()
        return {r.name: r.team for r in rows}

    def readable_collections(self, principal: Principal) -> dict[str, str]:
        """{collection: owning team} for the collections the principal's teams own."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(collections.c.name, teams.c.name.label("team"))
                .join(teams, teams.c.id == collections.c.team_id)
                .join(team_members, team_members.c.team_id == collections.c.team_id)
                .where(team_members.c.user_id == principal.user_id)
                .order_by(collections.c.name)
            ).all()
        return {r.name: r.team for r in rows}

    def authorize_collection(
        self, principal: Principal, collection: str, *, open_if_unowned: bool
    ) -> Principal:
        """The principal to charge for reading ``collection``: with the owning team set when a member of it.

        Raises CollectionForbidden, with one message whether the collection exists or not, when the user is
        not in the owning team, or when nobody owns it and ``open_if_unowned`` is false. The system user (no
        key: the CLI, ``--no-auth``) reads everything and is never charged to a team.
        """
        if principal.key_id is None:
            return principal
        with self._read() as conn:
            owner = conn.execute(
                sa.select(teams.c.id, teams.c.name)
                .join(collections, collections.c.team_id == teams.c.id)
                .where(collections.c.name == collection)
            ).first()
            if owner is None:
                if open_if_unowned:
                    return dataclasses.replace(principal, team_id=None, team_name=None)
                raise forbidden_collection(collection)
            member = conn.execute(
                sa.select(team_members.c.role).where(
                    team_members.c.team_id == owner.id, team_members.c.user_id == principal.user_id
                )
            ).first()
        if member is None:
            raise forbidden_collection(collection)
        return dataclasses.replace(principal, team_id=owner.id, team_name=owner.name)

    def authorize_collection_write(
        self, principal: Principal, collection: str, *, exists: bool, team: str | None = None
    ) -> str | None:
        """The team owning ``collection`` once the principal may write to it (None: it stays unowned).

        Any member of the owning team may write (a team's documents are its members' shared work; team
        admins differ only in reading the team's usage). A collection that does not exist yet is claimed
        for the caller's team: their only team, or ``team`` when they are in several. An existing unowned
        collection, the default one included, is the operator's: CollectionForbidden for every key, with
        the one message reads use. The system user (CLI, ``--no-auth``) writes everywhere.
        """
        if principal.key_id is None:
            if team is not None:
                self.claim_collection(collection, team)
            return self.collection_owners().get(collection, team)
        owner = self.collection_owners().get(collection)
        teams_of = {m.team_name for m in self.memberships(principal)}
        if owner is not None:
            if owner not in teams_of or (team is not None and team != owner):
                raise forbidden_collection(collection)
            return owner
        if exists or not teams_of:
            raise forbidden_collection(collection)
        if team is None:
            if len(teams_of) > 1:
                raise LedgerError(
                    f"you are in several teams ({', '.join(sorted(teams_of))}): name the team that will "
                    "own the new collection with the form field 'team'"
                )
            team = next(iter(teams_of))
        if team not in teams_of:
            raise forbidden_collection(collection)
        self.claim_collection(collection, team)
        return team

    def claim_collection(self, collection: str, team_name: str) -> None:
        """Give an unowned COLLECTION to TEAM; CollectionForbidden if another team got it first (never
        moves a collection, unlike ``assign_collection``)."""
        team = self.get_team(team_name)
        try:
            with self._write() as conn:
                row = conn.execute(
                    sa.select(collections.c.team_id).where(collections.c.name == collection).with_for_update()
                ).first()
                if row is None:
                    conn.execute(
                        collections.insert().values(name=collection, team_id=team.id, assigned_at=self._now())
                    )
                    return
        except sa.exc.IntegrityError:  # claimed by a concurrent request between our read and insert
            pass
        if self.collection_owners().get(collection) != team.name:
            raise forbidden_collection(collection)
