"""``penny teams``: teams, their members and roles, team budgets; ``penny collections assign|unassign``
gives a collection to a team (its members alone may read it, and their paid calls on it are charged to
the team's budget as well as their own)."""

from __future__ import annotations

import click

from assistant.cli.ledger_cmds import WINDOW, fail, micro, operator_ledger, table
from assistant.ledger import TEAM_ROLES, TeamRole, Window


@click.group()
def teams() -> None:
    """Create teams, add members, set team budgets."""


@teams.command("create")
@click.argument("name")
@click.option("--budget-usd", default=None, help="Budget the members share, in USD per window.")
@click.option("--window", type=WINDOW, default="month", show_default=True)
@click.option("--alert-ratio", type=float, default=0.8, show_default=True)
def teams_create(name: str, budget_usd: str | None, window: Window, alert_ratio: float) -> None:
    """Create team NAME, optionally with a budget its members share."""
    from assistant.ledger import LedgerError
    from assistant.ledger.prices import format_usd

    limit = micro(budget_usd, "--budget-usd") if budget_usd is not None else None
    book = operator_ledger()
    try:
        team = book.create_team(name)
        if limit is not None:
            book.set_team_budget(team.name, limit, window, alert_ratio)
    except LedgerError as exc:
        raise fail(exc) from exc
    budget = f", budget {format_usd(limit)} per {window}" if limit is not None else ", no budget"
    click.echo(f"created team {team.name}{budget}")


@teams.command("list")
def teams_list() -> None:
    """Teams, their members (admins marked *), collections and budgets."""
    from assistant.ledger.prices import format_usd

    book = operator_ledger()
    owners = book.collection_owners()
    rows = []
    for team in book.list_teams():
        members = ",".join(m.user_name + ("*" if m.role == "admin" else "") for m in book.members(team.name))
        status = book.team_budget_status(team.name)
        rows.append(
            [
                team.name,
                members or "-",
                ",".join(c for c, owner in owners.items() if owner == team.name) or "-",
                f"{format_usd(status.budget.limit_micro_usd)}/{status.budget.window}" if status else "-",
                format_usd(status.committed_micro_usd) if status else "-",
            ]
        )
    table(["TEAM", "MEMBERS (*admin)", "COLLECTIONS", "BUDGET", "SPENT+RESERVED"], rows)


@teams.command("add")
@click.argument("team")
@click.argument("user")
@click.option("--role", type=click.Choice(TEAM_ROLES), default="member", show_default=True)
def teams_add(team: str, user: str, role: TeamRole) -> None:
    """Add USER to TEAM (or change their role). Admins may read the team's usage."""
    from assistant.ledger import LedgerError

    try:
        member = operator_ledger().set_member(team, user, role)
    except LedgerError as exc:
        raise fail(exc) from exc
    click.echo(
        f"{member.user_name} is a{'n' if role == 'admin' else ''} {member.role} of team {member.team_name}"
    )


@teams.command("remove")
@click.argument("team")
@click.argument("user")
def teams_remove(team: str, user: str) -> None:
    """Remove USER from TEAM: their keys stop reading its collections at once."""
    from assistant.ledger import LedgerError

    try:
        operator_ledger().remove_member(team, user)
    except LedgerError as exc:
        raise fail(exc) from exc
    click.echo(f"removed {user} from team {team}")


@teams.command("budget")
@click.argument("team")
@click.option("--usd", required=True, help="Limit in USD per window, e.g. 50.")
@click.option("--window", type=WINDOW, default="month", show_default=True)
@click.option("--alert-ratio", type=float, default=0.8, show_default=True)
def teams_budget(team: str, usd: str, window: Window, alert_ratio: float) -> None:
    """Set TEAM's shared budget (replaces the previous one; spend so far in the window still counts)."""
    from assistant.ledger import LedgerError
    from assistant.ledger.prices import format_usd

    try:
        result = operator_ledger().set_team_budget(team, micro(usd, "--usd"), window, alert_ratio)
    except LedgerError as exc:
        raise fail(exc) from exc
    click.echo(
        f"budget for team {result.team_name}: {format_usd(result.limit_micro_usd)} per {result.window}, "
        f"alert at {result.alert_ratio:.0%}"
    )


def assign(name: str, team: str) -> None:
    """Give collection NAME to TEAM: only its members' keys may read it from now on."""
    from assistant.ledger import LedgerError
    from index.store import validate_collection_name

    try:
        validate_collection_name(name)
        operator_ledger().assign_collection(name, team)
    except (LedgerError, ValueError) as exc:
        raise fail(exc) from exc
    click.echo(f"collection {name} belongs to team {team}")


def unassign(name: str) -> None:
    """Take collection NAME from its team: then only the operator reads it (the default collection: every
    key)."""
    from assistant.ledger import LedgerError

    try:
        operator_ledger().unassign_collection(name)
    except LedgerError as exc:
        raise fail(exc) from exc
    click.echo(f"collection {name} belongs to no team")
