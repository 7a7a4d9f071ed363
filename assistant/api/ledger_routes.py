"""Usage and admin routes over the ledger.

``GET /v1/usage`` returns the caller's own usage and budget (and, with ``?team=NAME``, that team's, to the
team's admins only). ``/admin/…`` (admin key) manages users, keys (expiry, profiles, labels, rotation) and
budgets; a created key is in the response body once and never again. Teams: ``team_routes.py``.

Register in ``create_app``: ``route_handlers=[..., *LEDGER_ROUTES]``; errors map to statuses in
``assistant/api/errors.py``.
"""

from __future__ import annotations

import dataclasses
from datetime import date, timedelta
from typing import Any, Literal

from litestar import Request, Router, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody
from msgspec import Struct

from assistant.api.auth import ledger_of, principal_of, require_admin, require_api_key
from assistant.api.chat import PROFILES
from assistant.api.errors import ApiError
from assistant.api.team_routes import TEAM_ADMIN_ROUTES, own_collections
from assistant.ledger import (
    OWNERSHIP_BYS,
    ApiKeyInfo,
    BudgetStatus,
    Ledger,
    UsageRow,
    Window,
    usd_to_micro,
)
from assistant.ledger.ownership import OwnershipRow
from assistant.ledger.prices import format_usd

# GroupBy, then OwnershipBy: spend and savings by user, day, model or tier; total cost of ownership by
# collection or team.
UsageBy = Literal["user", "day", "model", "tier", "collection", "team"]


class NewUser(Struct, forbid_unknown_fields=True):
    name: str
    budget_usd: float | str | None = None
    window: Window = "month"
    alert_ratio: float = 0.8


class NewKey(Struct, forbid_unknown_fields=True):
    label: str | None = None
    expires_in_s: int | None = None
    profiles: list[str] | None = None  # None: every profile


class Rotation(Struct, forbid_unknown_fields=True):
    grace_s: int = 86_400


class BudgetUpdate(Struct, forbid_unknown_fields=True):
    usd: float | str
    window: Window = "month"
    alert_ratio: float = 0.8


def usage_rows(rows: list[UsageRow]) -> list[dict[str, Any]]:
    """Each row's fields, with its cost in USD and its savings (None where no paid-only cost is known)."""
    return [
        {
            **dataclasses.asdict(row),
            "cost_usd": row.cost_usd,
            "saved_micro_usd": row.saved_micro_usd,
            "saved_percent": None if row.saved_percent is None else round(row.saved_percent, 2),
        }
        for row in rows
    ]


def ownership_rows(rows: list[OwnershipRow]) -> list[dict[str, Any]]:
    """Each collection's or team's cost of ownership, with its total."""
    return [{**dataclasses.asdict(row), "total_micro_usd": row.total_micro_usd} for row in rows]


def _report(
    ledger: Ledger, by: UsageBy, since: date | None, *, user: str | None = None, team: str | None = None
) -> list[dict[str, Any]]:
    """The usage rows (``by`` user, day, model or tier) or the cost of ownership rows (collection, team)."""
    if by in OWNERSHIP_BYS:
        return ownership_rows(ledger.ownership(by=by, user=user, team=team, since=since))  # type: ignore[arg-type]
    return usage_rows(ledger.usage(user=user, team=team, since=since, by=by))  # type: ignore[arg-type]


def budget_body(status: BudgetStatus | None) -> dict[str, Any] | None:
    if status is None:
        return None
    return {
        "limit_micro_usd": status.budget.limit_micro_usd,
        "window": status.budget.window,
        "alert_ratio": status.budget.alert_ratio,
        "committed_micro_usd": status.committed_micro_usd,
        "remaining_micro_usd": status.remaining_micro_usd,
        "resets_at": status.resets_at.isoformat() + "Z" if status.resets_at else None,
        "alert": status.alert,
    }


def _iso(moment: Any) -> str | None:
    return moment.isoformat() + "Z" if moment else None


def key_body(info: ApiKeyInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "user": info.user_name,
        "display": info.display,
        "label": info.label,
        "profiles": list(info.profiles) if info.profiles is not None else None,
        "created_at": _iso(info.created_at),
        "expires_at": _iso(info.expires_at),
        "revoked_at": _iso(info.revoked_at),
    }


def check_profiles(profiles: list[str] | None) -> list[str] | None:
    unknown = sorted(set(profiles or ()) - set(PROFILES))
    if unknown:
        raise ApiError(
            400, f"unknown profile(s) {', '.join(unknown)}: use {', '.join(PROFILES)}", param="profiles"
        )
    return profiles


@get("/v1/usage", guards=[require_api_key], sync_to_thread=True)
def own_usage(
    request: Request[Any, Any, Any],
    by: FromQuery[UsageBy] = "day",
    since: FromQuery[date | None] = None,
    user: FromQuery[str | None] = None,  # only your own name is allowed
    team: FromQuery[str | None] = None,  # only a team you are an admin of
) -> dict[str, Any]:
    """Your spend and tokens, where you stand against your budget, and your teams. Never another user's;
    a team's usage and budget only to that team's admins (403, the same for a team that does not exist).
    ``by=collection|team``: the cost of ownership of your answers and ingest runs (a team's admins: the
    team's, storage included)."""
    principal = principal_of(request)
    if user is not None and user != principal.user_name:
        raise ApiError(403, "you can only read your own usage", param="user", code="forbidden")
    ledger = ledger_of(request)
    if team is not None:
        found = ledger.require_team_admin(principal, team)
        return {
            "object": "usage",
            "team": found.name,
            "by": by,
            "data": _report(ledger, by, since, team=found.name),
            "budget": budget_body(ledger.team_budget_status(found.name)),
        }
    return {
        "object": "usage",
        "user": principal.user_name,
        "by": by,
        "data": _report(ledger, by, since, user=principal.user_name),
        "budget": budget_body(ledger.budget_status(principal)),
        "teams": [{"name": m.team_name, "role": m.role} for m in ledger.memberships(principal)],
    }


def _set_budget(ledger: Ledger, name: str, usd: float | str, window: Window, alert_ratio: float) -> dict:
    budget = ledger.set_budget(name, usd_to_micro(usd, "budget usd"), window, alert_ratio)
    return {**dataclasses.asdict(budget), "limit_usd": format_usd(budget.limit_micro_usd)}


@get("/users", sync_to_thread=True)
def admin_list_users(request: Request[Any, Any, Any]) -> dict[str, Any]:
    ledger = ledger_of(request)
    return {
        "data": [
            {"id": u.id, "name": u.name, "created_at": u.created_at.isoformat() + "Z"}
            for u in ledger.list_users()
        ]
    }


@post("/users", status_code=201, sync_to_thread=True)
def admin_add_user(data: JSONBody[NewUser], request: Request[Any, Any, Any]) -> dict[str, Any]:
    ledger = ledger_of(request)
    user = ledger.add_user(data.name)
    budget = None
    if data.budget_usd is not None:
        budget = _set_budget(ledger, user.name, data.budget_usd, data.window, data.alert_ratio)
    return {"id": user.id, "name": user.name, "budget": budget}


@post("/users/{name:str}/keys", status_code=201, sync_to_thread=True)
def admin_create_key(
    name: FromPath[str], request: Request[Any, Any, Any], data: JSONBody[NewKey | None] = None
) -> dict[str, Any]:
    """The key is in this response only; store it now. Optional: label, expiry, allowed profiles."""
    options = data or NewKey()
    if options.expires_in_s is not None and options.expires_in_s <= 0:
        raise ApiError(400, "expires_in_s must be positive", param="expires_in_s")
    ledger = ledger_of(request)
    info, key = ledger.create_key(
        name,
        label=options.label,
        expires_at=ledger.clock() + timedelta(seconds=options.expires_in_s) if options.expires_in_s else None,
        profiles=check_profiles(options.profiles),
    )
    return {**key_body(info), "key": key}


@post("/keys/{key_id:str}/rotate", status_code=201, sync_to_thread=True)
def admin_rotate_key(
    key_id: FromPath[str], request: Request[Any, Any, Any], data: JSONBody[Rotation | None] = None
) -> dict[str, Any]:
    """A new key for the same user, label and profiles; the old one works for ``grace_s`` more seconds."""
    grace = (data or Rotation()).grace_s
    if grace < 0:
        raise ApiError(400, "grace_s cannot be negative", param="grace_s")
    old, new, key = ledger_of(request).rotate_key(key_id, timedelta(seconds=grace))
    return {**key_body(new), "key": key, "replaces": key_body(old)}


@get("/users/{name:str}/keys", sync_to_thread=True)
def admin_list_keys(name: FromPath[str], request: Request[Any, Any, Any]) -> dict[str, Any]:
    ledger = ledger_of(request)
    ledger.get_user(name)
    return {"data": [key_body(info) for info in ledger.list_keys(name)]}


@delete("/keys/{key_id:str}", status_code=200, sync_to_thread=True)
def admin_revoke_key(key_id: FromPath[str], request: Request[Any, Any, Any]) -> dict[str, Any]:
    return key_body(ledger_of(request).revoke_key(key_id))


@put("/users/{name:str}/budget", sync_to_thread=True)
def admin_set_budget(
    name: FromPath[str], data: JSONBody[BudgetUpdate], request: Request[Any, Any, Any]
) -> dict[str, Any]:
    return _set_budget(ledger_of(request), name, data.usd, data.window, data.alert_ratio)


@get("/usage", sync_to_thread=True)
def admin_usage(
    request: Request[Any, Any, Any],
    by: FromQuery[UsageBy] = "user",
    since: FromQuery[date | None] = None,
    user: FromQuery[str | None] = None,
    team: FromQuery[str | None] = None,
) -> dict[str, Any]:
    return {"object": "usage", "by": by, "data": _report(ledger_of(request), by, since, user=user, team=team)}


admin_router = Router(
    "/admin",
    route_handlers=[
        admin_list_users,
        admin_add_user,
        admin_create_key,
        admin_rotate_key,
        admin_list_keys,
        admin_revoke_key,
        admin_set_budget,
        admin_usage,
        *TEAM_ADMIN_ROUTES,
    ],
    guards=[require_admin],
    include_in_schema=True,
)

LEDGER_ROUTES: list[Any] = [own_usage, own_collections, admin_router]
