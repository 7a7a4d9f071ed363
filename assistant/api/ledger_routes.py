"""Usage and admin routes over the ledger.

``GET /v1/usage`` returns the caller's own usage and budget, nothing else. ``/admin/…`` (admin key) manages
users, keys and budgets; a created key is in the response body once and never again.

Register in ``create_app``: ``route_handlers=[..., *LEDGER_ROUTES]``; errors map to statuses in
``assistant/api/errors.py``.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import Any

from litestar import Request, Router, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody
from msgspec import Struct

from assistant.api.auth import ledger_of, principal_of, require_admin, require_api_key
from assistant.api.errors import ApiError
from assistant.ledger import (
    ApiKeyInfo,
    BudgetStatus,
    GroupBy,
    Ledger,
    UsageRow,
    Window,
    usd_to_micro,
)
from assistant.ledger.prices import format_usd


class NewUser(Struct, forbid_unknown_fields=True):
    name: str
    budget_usd: float | str | None = None
    window: Window = "month"
    alert_ratio: float = 0.8


class BudgetUpdate(Struct, forbid_unknown_fields=True):
    usd: float | str
    window: Window = "month"
    alert_ratio: float = 0.8


def usage_rows(rows: list[UsageRow]) -> list[dict[str, Any]]:
    return [{**dataclasses.asdict(row), "cost_usd": row.cost_usd} for row in rows]


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


def key_body(info: ApiKeyInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "user": info.user_name,
        "display": info.display,
        "created_at": info.created_at.isoformat() + "Z",
        "revoked_at": info.revoked_at.isoformat() + "Z" if info.revoked_at else None,
    }


@get("/v1/usage", guards=[require_api_key], sync_to_thread=True)
def own_usage(
    request: Request[Any, Any, Any],
    by: FromQuery[GroupBy] = "day",
    since: FromQuery[date | None] = None,
    user: FromQuery[str | None] = None,  # only your own name is allowed
) -> dict[str, Any]:
    """Your spend and tokens, and where you stand against your budget. Never another user's."""
    principal = principal_of(request)
    if user is not None and user != principal.user_name:
        raise ApiError(403, "you can only read your own usage", param="user", code="forbidden")
    ledger = ledger_of(request)
    rows = ledger.usage(user=principal.user_name, since=since, by=by)
    return {
        "object": "usage",
        "user": principal.user_name,
        "by": by,
        "data": usage_rows(rows),
        "budget": budget_body(ledger.budget_status(principal)),
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
def admin_create_key(name: FromPath[str], request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The key is in this response only; store it now."""
    info, key = ledger_of(request).create_key(name)
    return {**key_body(info), "key": key}


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
    by: FromQuery[GroupBy] = "user",
    since: FromQuery[date | None] = None,
    user: FromQuery[str | None] = None,
) -> dict[str, Any]:
    rows = ledger_of(request).usage(user=user, since=since, by=by)
    return {"object": "usage", "by": by, "data": usage_rows(rows)}


admin_router = Router(
    "/admin",
    route_handlers=[
        admin_list_users,
        admin_add_user,
        admin_create_key,
        admin_list_keys,
        admin_revoke_key,
        admin_set_budget,
        admin_usage,
    ],
    guards=[require_admin],
    include_in_schema=True,
)

LEDGER_ROUTES: list[Any] = [own_usage, admin_router]
