"""Teams over HTTP: the collections a key may read (``GET /v1/collections``) and the admin routes for
teams, members, team budgets and collection ownership (under ``/admin``, admin key only).

Listing shows only what the caller may read: their teams' collections, and the default collection while
no team owns it. Nothing here reveals another team's collections, members or spend.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from litestar import Request, delete, get, post, put
from litestar.params import FromPath, JSONBody
from msgspec import Struct

from assistant.api.auth import default_collection, ledger_of, principal_of, require_api_key
from assistant.api.errors import ApiError
from assistant.ledger import TeamRole, Window, usd_to_micro
from assistant.ledger.prices import format_usd
from index.store import validate_collection_name


class NewTeam(Struct, forbid_unknown_fields=True):
    name: str
    budget_usd: float | str | None = None
    window: Window = "month"
    alert_ratio: float = 0.8


class Membership(Struct, forbid_unknown_fields=True):
    role: TeamRole = "member"


class TeamBudgetUpdate(Struct, forbid_unknown_fields=True):
    usd: float | str
    window: Window = "month"
    alert_ratio: float = 0.8


class Ownership(Struct, forbid_unknown_fields=True):
    team: str


@get("/v1/collections", guards=[require_api_key], sync_to_thread=True)
def own_collections(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The collections this key may read, with the team that owns each (null: open to every key)."""
    ledger = ledger_of(request)
    principal = principal_of(request)
    readable: dict[str, str | None] = {}
    if principal.key_id is None:  # the system user (--no-auth) reads everything
        readable.update(ledger.collection_owners())
    else:
        readable.update(ledger.readable_collections(principal))
    default = default_collection(request)
    if default not in ledger.collection_owners():
        readable[default] = None
    return {
        "object": "list",
        "data": [{"name": name, "team": team} for name, team in sorted(readable.items())],
    }


def _team_budget(
    request: Request[Any, Any, Any], name: str, usd: float | str, window: Window, ratio: float
) -> dict:
    budget = ledger_of(request).set_team_budget(name, usd_to_micro(usd, "budget usd"), window, ratio)
    return {**dataclasses.asdict(budget), "limit_usd": format_usd(budget.limit_micro_usd)}


@get("/teams", sync_to_thread=True)
def admin_list_teams(request: Request[Any, Any, Any]) -> dict[str, Any]:
    ledger = ledger_of(request)
    owners = ledger.collection_owners()
    return {
        "data": [
            {
                "name": team.name,
                "members": [{"user": m.user_name, "role": m.role} for m in ledger.members(team.name)],
                "collections": sorted(c for c, owner in owners.items() if owner == team.name),
            }
            for team in ledger.list_teams()
        ]
    }


@post("/teams", status_code=201, sync_to_thread=True)
def admin_create_team(data: JSONBody[NewTeam], request: Request[Any, Any, Any]) -> dict[str, Any]:
    team = ledger_of(request).create_team(data.name)
    budget = None
    if data.budget_usd is not None:
        budget = _team_budget(request, team.name, data.budget_usd, data.window, data.alert_ratio)
    return {"id": team.id, "name": team.name, "budget": budget}


@put("/teams/{team:str}/members/{user:str}", sync_to_thread=True)
def admin_set_member(
    team: FromPath[str],
    user: FromPath[str],
    request: Request[Any, Any, Any],
    data: JSONBody[Membership | None] = None,
) -> dict[str, Any]:
    """Add USER to TEAM, or change their role (member or admin)."""
    member = ledger_of(request).set_member(team, user, (data or Membership()).role)
    return {"team": member.team_name, "user": member.user_name, "role": member.role}


@delete("/teams/{team:str}/members/{user:str}", status_code=200, sync_to_thread=True)
def admin_remove_member(
    team: FromPath[str], user: FromPath[str], request: Request[Any, Any, Any]
) -> dict[str, Any]:
    ledger_of(request).remove_member(team, user)
    return {"team": team, "user": user, "removed": True}


@put("/teams/{team:str}/budget", sync_to_thread=True)
def admin_set_team_budget(
    team: FromPath[str], data: JSONBody[TeamBudgetUpdate], request: Request[Any, Any, Any]
) -> dict[str, Any]:
    return _team_budget(request, team, data.usd, data.window, data.alert_ratio)


@get("/collections", sync_to_thread=True)
def admin_list_collections(request: Request[Any, Any, Any]) -> dict[str, Any]:
    owners = ledger_of(request).collection_owners()
    return {"data": [{"name": name, "team": team} for name, team in owners.items()]}


@put("/collections/{name:str}", sync_to_thread=True)
def admin_assign_collection(
    name: FromPath[str], data: JSONBody[Ownership], request: Request[Any, Any, Any]
) -> dict[str, Any]:
    """Give the collection to a team: from now on only its members read it, and their paid calls on it
    are charged to its budget."""
    try:
        validate_collection_name(name)
    except ValueError as exc:
        raise ApiError(400, str(exc), param="name") from None
    ledger_of(request).assign_collection(name, data.team)
    return {"name": name, "team": data.team}


@delete("/collections/{name:str}", status_code=200, sync_to_thread=True)
def admin_unassign_collection(name: FromPath[str], request: Request[Any, Any, Any]) -> dict[str, Any]:
    ledger_of(request).unassign_collection(name)
    return {"name": name, "team": None}


TEAM_ADMIN_ROUTES: list[Any] = [
    admin_list_teams,
    admin_create_team,
    admin_set_member,
    admin_remove_member,
    admin_set_team_budget,
    admin_list_collections,
    admin_assign_collection,
    admin_unassign_collection,
]
