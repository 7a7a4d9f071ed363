"""The Litestar application: routes, error shapes, start-up."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import JSONBody
from msgspec import Struct, field

from assistant.service import Penny
from assistant.settings import Settings

log = logging.getLogger("penny.api")

MAX_QUESTION_CHARS = 4000


class AskRequest(Struct, forbid_unknown_fields=True):
    question: str
    collection: str | None = None
    top_k: int | None = field(default=None)


def openai_error(
    status: int, message: str, kind: str, code: str | None = None, param: str | None = None
) -> Response[Any]:
    return Response(
        {"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status
    )


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
    detail = exc.detail
    if isinstance(exc, ValidationException) and exc.extra:
        detail = f"{exc.detail}: {exc.extra}"
    return openai_error(exc.status_code, str(detail), kind)


def _unexpected_error(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", exc_info=exc)
    return openai_error(500, "internal error; see server log", "server_error")


@get("/healthz", sync_to_thread=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@post("/v1/ask", status_code=200, sync_to_thread=True)
def ask(data: JSONBody[AskRequest], state: State) -> Response[Any]:
    question = data.question.strip()
    if not question:
        return openai_error(400, "question must not be empty", "invalid_request_error", param="question")
    if len(question) > MAX_QUESTION_CHARS:
        return openai_error(
            413,
            f"question longer than {MAX_QUESTION_CHARS} characters",
            "invalid_request_error",
            param="question",
        )
    penny: Penny = state.penny
    answer = penny.ask(question, data.collection)
    return Response(answer.to_dict())


def create_app(settings: Settings, penny: Penny | None = None) -> Litestar:
    penny = penny or Penny(settings)

    def warm_up(app: Litestar) -> None:
        # Load the models before the first request so "ready" means ready.
        penny.local_model  # noqa: B018
        penny.embedder.embed(["warm up"])

    return Litestar(
        route_handlers=[healthz, ask],
        state=State({"penny": penny}),
        on_startup=[warm_up],
        exception_handlers={HTTPException: _http_error, Exception: _unexpected_error},
        request_max_body_size=1_000_000,
    )
