"""API-key and admin-key guards.

``require_api_key``: ``Authorization: Bearer pny_…`` → the key's ``Principal`` in
``scope["penny_principal"]`` (401 for a missing, unknown, revoked or expired key — one message for the
last three, so a caller cannot tell which keys once existed). Authentication happens once per request: a
key revoked while its answer streams does not cut that stream (the answer was authorised and its spend
reserved when it started); the key's next request is a 401. ``require_profile`` and
``authorize_collection`` are the per-request checks that follow: the key's allowed profiles, and the team
owning the collection asked (403 otherwise). With auth off (``state.auth`` False, ``--no-auth``) every
request acts as the system user. ``require_admin``: the key in ``PENNY_ADMIN_KEY``, compared in constant
time (401 without a key, 403 with a wrong one or when no admin key is configured). Keys are never logged.
"""

from __future__ import annotations

import hmac
import os
from typing import Any

import anyio
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from assistant.api.errors import ApiError
from assistant.ledger import Ledger, Principal

ADMIN_KEY_ENV = "PENNY_ADMIN_KEY"
PRINCIPAL_SCOPE_KEY = "penny_principal"
ADMIN_SCOPE_KEY = "penny_admin"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    scheme, _, token = connection.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def ledger_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Ledger:
    """The app's ledger: ``state.ledger`` if set, else the service's (``state.penny.ledger``)."""
    state = connection.app.state
    ledger = state.get("ledger")
    return ledger if ledger is not None else state.penny.ledger


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    principal = connection.scope.get(PRINCIPAL_SCOPE_KEY)  # type: ignore[call-overload]
    if principal is None:
        raise RuntimeError("route has no require_api_key guard")
    return principal


async def require_api_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    ledger = ledger_of(connection)
    if not connection.app.state.get("auth", True):
        principal: Principal | None = await anyio.to_thread.run_sync(ledger.system_user)
    else:
        token = bearer_token(connection)
        if token is None:
            raise ApiError(
                401,
                "missing API key: send 'Authorization: Bearer <key>' (an operator creates keys with "
                "`penny keys create USER`)",
                code="missing_api_key",
                headers=_CHALLENGE,
            )
        principal = await anyio.to_thread.run_sync(ledger.authenticate, token)
        if principal is None:
            raise ApiError(
                401, "invalid, expired or revoked API key", code="invalid_api_key", headers=_CHALLENGE
            )
    connection.scope[PRINCIPAL_SCOPE_KEY] = principal  # type: ignore[literal-required]


def is_admin_key(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """The request carries the configured admin key (compared in constant time)."""
    token, expected = bearer_token(connection), os.environ.get(ADMIN_KEY_ENV, "")
    return bool(token and expected) and hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8"))


async def require_api_or_admin_key(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """A user's key, or the admin key (the operator manages every collection): see ``acting_principal``."""
    if is_admin_key(connection):
        connection.scope[ADMIN_SCOPE_KEY] = True  # type: ignore[literal-required]
        return
    await require_api_key(connection, handler)


def acting_principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal | None:
    """The key's principal, or None for the admin key (after ``require_api_or_admin_key``)."""
    if connection.scope.get(ADMIN_SCOPE_KEY):  # type: ignore[call-overload]
        return None
    return principal_of(connection)


async def require_admin(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    token = bearer_token(connection)
    if token is None:
        raise ApiError(
            401,
            "missing admin key: send 'Authorization: Bearer <admin key>'",
            code="missing_api_key",
            headers=_CHALLENGE,
        )
    expected = os.environ.get(ADMIN_KEY_ENV, "")
    if not expected:
        raise ApiError(403, f"the admin API is off: set {ADMIN_KEY_ENV} on the server", code="admin_disabled")
    if not hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")):
        raise ApiError(403, "this key is not the admin key", code="not_admin")


def require_profile(principal: Principal, profile: str) -> None:
    """403 when the key was created for other profiles only (``penny keys create --profiles``)."""
    if not principal.may_use(profile):
        allowed = ", ".join(sorted(principal.profiles or ()))
        raise ApiError(
            403,
            f"this key may not use the {profile!r} profile (allowed: {allowed})",
            param="model",
            code="profile_not_allowed",
        )


def default_collection(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """``state.default_collection`` if set (apps without a Penny), else the service's setting."""
    state = connection.app.state
    return str(state.get("default_collection") or state.penny.settings.index.collection)


async def authorize_collection(
    connection: ASGIConnection[Any, Any, Any, Any], collection: str | None
) -> tuple[Principal, str]:
    """(the principal to charge, the collection's name) for a request reading ``collection`` (None: the
    default). Raises CollectionForbidden (403, one message whether it exists or not) for a collection
    owned by a team the key's user is not in, or owned by nobody — except the default collection, which
    stays readable by every key until an operator assigns it to a team (the single-team setup, and the
    sample collection ``make run`` serves)."""
    default = default_collection(connection)
    name = collection or default
    ledger = ledger_of(connection)
    principal = await anyio.to_thread.run_sync(
        lambda: ledger.authorize_collection(principal_of(connection), name, open_if_unowned=name == default)
    )
    return principal, name
