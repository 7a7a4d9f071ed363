"""OpenAI-style errors (``{"error": {"message", "type", "param", "code"}}``) for every failure."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException

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
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
