"""OpenAI-style errors (``{"error": {"message", "type", "param", "code"}}``) for every failure.

This is the one place that maps Penny's exceptions (``assistant.errors.PennyError`` and its subtrees) to
HTTP statuses: :func:`api_error_of` and the ``STATUS_OF`` table; ``EXCEPTION_HANDLERS`` registers it.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException

from assistant.errors import PennyError
from assistant.ledger.errors import (
    AlreadyExists,
    BudgetExceeded,
    CollectionForbidden,
    IdempotencyConflict,
    IdempotencyInProgress,
    LedgerError,
    NotFound,
    TeamForbidden,
)
from assistant.limits import LimiterUnavailable, RateLimited
from assistant.local.pool.base import PoolError, PoolOverloaded

log = logging.getLogger("penny.api")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """An error a client caused or must handle; its message is safe to show."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind or _TYPES.get(status, "server_error")
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> Response[Any]:
        return Response(self.body(), status_code=self.status, headers=self.headers)


# Most specific first: the first class an exception is an instance of decides (status, code).
STATUS_OF: tuple[tuple[type[PennyError], int, str], ...] = (
    (IdempotencyConflict, 422, "idempotency_key_reused"),
    (IdempotencyInProgress, 409, "idempotency_key_in_progress"),
    (CollectionForbidden, 403, "forbidden"),
    (TeamForbidden, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (AlreadyExists, 409, "already_exists"),
    (LedgerError, 400, "invalid_request"),
)


def budget_exceeded_error(exc: BudgetExceeded) -> ApiError:
    """HTTP 429, OpenAI's quota shape; Retry-After only when the window resets."""
    headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s > 0 else {}
    return ApiError(429, str(exc), kind="insufficient_quota", code="insufficient_quota", headers=headers)


def rate_limited_error(exc: RateLimited) -> ApiError:
    """HTTP 429 as OpenAI sends it: ``rate_limit_exceeded``, Retry-After and the x-ratelimit-* headers."""
    headers = {"Retry-After": str(exc.retry_after_s), **exc.headers.http()}
    return ApiError(429, str(exc), code="rate_limit_exceeded", headers=headers)


def overloaded_error(exc: PoolOverloaded) -> ApiError:
    """HTTP 503 as OpenAI sends an overloaded server's, with Retry-After: the request was shed before it
    started, so retrying later is safe (OpenAI's clients retry a 503 after Retry-After)."""
    headers = {"Retry-After": str(exc.retry_after_s)}
    return ApiError(503, str(exc), kind="server_error", code="overloaded", headers=headers)


def api_error_of(exc: PennyError) -> ApiError:
    """The HTTP error a client sees for one of Penny's exceptions (500 for one with no mapping)."""
    if isinstance(exc, BudgetExceeded):
        return budget_exceeded_error(exc)
    if isinstance(exc, RateLimited):
        return rate_limited_error(exc)
    if isinstance(exc, LimiterUnavailable):
        return ApiError(503, str(exc), kind="service_unavailable", code="rate_limiter_unavailable")
    if isinstance(exc, PoolOverloaded):
        return overloaded_error(exc)
    if isinstance(exc, PoolError):
        return ApiError(exc.status_code, str(exc), kind="server_error", code="local_tier_unavailable")
    for kind, status, code in STATUS_OF:
        if isinstance(exc, kind):
            return ApiError(status, str(exc), code=code)
    log.exception("unmapped error", exc_info=exc)
    return ApiError(500, "internal error; see the server log", kind="server_error")


def handle_penny_error(_: Request[Any, Any, Any], exc: PennyError) -> Response[Any]:
    return api_error_of(exc).response()


def handle_api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    return exc.response()


def handle_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    message = str(exc.detail)
    if isinstance(exc, ValidationException) and exc.extra:
        message = f"{exc.detail}: {exc.extra}"
    if isinstance(exc, NotFoundException):
        message = "no such route"
    headers = dict(exc.headers or {})
    return ApiError(exc.status_code, message, headers=headers).response()


def handle_unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    return ApiError(500, "internal error; see the server log", kind="server_error").response()


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApiError: handle_api_error,
    PennyError: handle_penny_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
