"""Admin routes for rate-limit overrides (admin key): list them, set some limits of a user or a key, clear.

``null`` for a limit returns it to the default in settings, 0 makes it unlimited, a limit not sent keeps
its value. Servers pick a change up within ``limits.overrides_cache_s``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
from litestar import Request, Router, delete, get, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody
from msgspec import Struct

from assistant.api.auth import ledger_of, require_admin
from assistant.ledger import RateLimitOverride
from assistant.limits.policy import defaults


class LimitUpdate(Struct, forbid_unknown_fields=True):
    rpm: int | msgspec.UnsetType | None = msgspec.UNSET
    tpm: int | msgspec.UnsetType | None = msgspec.UNSET
    max_concurrent: int | msgspec.UnsetType | None = msgspec.UNSET

    def values(self) -> dict[str, int | None]:
        return {f: getattr(self, f) for f in self.__struct_fields__ if getattr(self, f) is not msgspec.UNSET}


def override_body(override: RateLimitOverride) -> dict[str, Any]:
    body = dataclasses.asdict(override)
    return {**body, "updated_at": override.updated_at.isoformat() + "Z"}


@get("/", sync_to_thread=True)
def list_limits(request: Request[Any, Any, Any], state: State) -> dict[str, Any]:
    """The defaults (from settings) and every override."""
    penny = state.get("penny")
    default = defaults(penny.settings.limits) if penny is not None else {}
    return {
        "defaults": {scope: dataclasses.asdict(limits) for scope, limits in default.items()},
        "data": [override_body(o) for o in ledger_of(request).rate_limit_overrides()],
    }


@put("/users/{name:str}", sync_to_thread=True)
def set_user_limits(
    name: FromPath[str], data: JSONBody[LimitUpdate], request: Request[Any, Any, Any]
) -> dict:
    return override_body(ledger_of(request).set_rate_limit(user=name, **data.values()))


@put("/keys/{key_id:str}", sync_to_thread=True)
def set_key_limits(
    key_id: FromPath[str], data: JSONBody[LimitUpdate], request: Request[Any, Any, Any]
) -> dict:
    return override_body(ledger_of(request).set_rate_limit(key_id=key_id, **data.values()))


@delete("/users/{name:str}", status_code=200, sync_to_thread=True)
def clear_user_limits(name: FromPath[str], request: Request[Any, Any, Any]) -> dict[str, Any]:
    return {"cleared": ledger_of(request).clear_rate_limit(user=name)}


@delete("/keys/{key_id:str}", status_code=200, sync_to_thread=True)
def clear_key_limits(key_id: FromPath[str], request: Request[Any, Any, Any]) -> dict[str, Any]:
    return {"cleared": ledger_of(request).clear_rate_limit(key_id=key_id)}


LIMIT_ROUTES: list[Any] = [
    Router(
        "/admin/limits",
        route_handlers=[list_limits, set_user_limits, set_key_limits, clear_user_limits, clear_key_limits],
        guards=[require_admin],
    )
]
