"""OpenAI-compatible chat completions and models, backed by Penny's cascade.

``model`` picks a profile (``penny`` = cascade, ``penny-local``, ``penny-paid``). The last user turn is the
question; earlier turns, newest first and within a token budget, condition retrieval and the prompt.
Streaming answers are Server-Sent Events of ``chat.completion.chunk`` objects ending with ``data: [DONE]``;
a client that disconnects mid-stream stops generation, and the answer's usage is still recorded.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import anyio
import msgspec
from litestar import Request, Response, get, post
from litestar.background_tasks import BackgroundTask, BackgroundTasks
from litestar.datastructures import State
from litestar.params import JSONBody
from litestar.response import Stream

from assistant.answering.answer import CascadeAnswer
from assistant.api.auth import (
    authorize_collection,
    ledger_of,
    principal_of,
    require_api_key,
    require_profile,
)
from assistant.api.errors import ApiError, api_error_of
from assistant.api.idempotency import idempotent
from assistant.api.limiting import (
    PaidMeter,
    admit,
    finish,
    limited,
    paid_token_estimate,
    paid_tokens_used,
    release_after,
    with_rate_headers,
)
from assistant.api.metrics import received_at
from assistant.api.shedding import dismiss, in_thread, queue_ticket
from assistant.errors import PennyError
from assistant.ledger import BudgetExceeded
from assistant.limits import Admission
from assistant.local.pool import PoolOverloaded
from assistant.local.pool.shedding import QueueTicket
from assistant.openai_wire import (
    SSE_DONE,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ModelCard,
    ModelList,
    PromptTokensDetails,
    Usage,
    completion_id,
    encode_sse,
)
from assistant.paid import tokens

PROFILES: dict[str, Literal["cascade", "local", "paid"]] = {
    "penny": "cascade",
    "penny-local": "local",
    "penny-paid": "paid",
}
MAX_QUESTION_TOKENS = 1000
HISTORY_TOKEN_BUDGET = 600
MAX_COMPLETION_TOKENS = 1024
_STARTED = int(time.time())


class PennyChatRequest(ChatCompletionRequest, kw_only=True):
    """A chat request to Penny: ``model`` names a profile, and ``collection`` (Penny's extension) picks the
    document collection to answer from."""

    model: str
    collection: str | None = None


class PennyCompletion(ChatCompletion, kw_only=True):
    penny: dict[str, Any]


class PennyChunk(ChatCompletionChunk, kw_only=True):
    penny: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET  # on the finishing chunk


def penny_extras(answer: CascadeAnswer) -> dict[str, Any]:
    """What makes Penny different, attached to every response as ``penny``."""
    return answer.penny_block()


def completion_of(answer: CascadeAnswer, model: str) -> dict[str, Any]:
    """A finished answer as a non-streamed chat completion with its ``penny`` block, JSON-ready: what the
    route returns, the idempotency store keeps and a batch's output file holds."""
    completion = PennyCompletion(
        id=completion_id(),
        created=int(time.time()),
        model=model,
        choices=[Choice(message=AssistantMessage(content=answer.answer), finish_reason="stop")],
        usage=answer_usage(answer),
        penny=penny_extras(answer),
    )
    return msgspec.to_builtins(completion)


def answer_usage(answer: CascadeAnswer) -> Usage:
    """The answering tier's tokens; for a local answer, the prompt tokens llama.cpp reused from its KV
    cache (a follow-up turn's shared prefix) as OpenAI's ``prompt_tokens_details.cached_tokens``."""
    usage = Usage.of(answer.prompt_tokens, answer.completion_tokens)
    local = answer.local_generation
    if answer.tier == "local" and local is not None and local.cached_prompt_tokens:
        usage.prompt_tokens_details = PromptTokensDetails(cached_tokens=local.cached_prompt_tokens)
    return usage


def split_conversation(request: PennyChatRequest) -> tuple[str, list[dict[str, str]]]:
    """The question (last user turn) and the earlier turns that fit the history budget, oldest first."""
    if request.n != 1:
        raise ApiError(400, "only n=1 is supported", param="n")
    if not request.messages:
        raise ApiError(400, "messages must not be empty", param="messages")
    last = request.messages[-1]
    if last.role != "user":
        raise ApiError(400, "the last message must be a user turn (the question)", param="messages")
    question = last.text().strip()
    if not question:
        raise ApiError(400, "the last user message has no text", param="messages")
    if tokens.count_text(question) > MAX_QUESTION_TOKENS:
        raise ApiError(
            400,
            f"the question is longer than {MAX_QUESTION_TOKENS} tokens",
            param="messages",
            code="context_length_exceeded",
        )
    history: list[dict[str, str]] = []
    budget = HISTORY_TOKEN_BUDGET
    for message in reversed(request.messages[:-1]):
        if message.role not in ("user", "assistant"):
            continue  # the system prompt is Penny's own; client system turns do not override grounding
        text = message.text().strip()
        cost = tokens.count_text(text)
        if not text or cost > budget:
            break
        history.insert(0, {"role": message.role, "content": text})
        budget -= cost
    return question, history


def _mode(model: str) -> str:
    try:
        return PROFILES[model]
    except KeyError:
        raise ApiError(
            404,
            f"The model {model!r} does not exist; use one of {', '.join(PROFILES)}",
            kind="invalid_request_error",
            param="model",
            code="model_not_found",
        ) from None


async def _answer_kwargs(data: PennyChatRequest, request: Request[Any, Any, Any]) -> dict[str, Any]:
    question, history = split_conversation(data)
    max_tokens = data.max_completion_tokens or data.max_tokens
    if max_tokens is not None and not 1 <= max_tokens <= MAX_COMPLETION_TOKENS:
        raise ApiError(400, f"max_tokens must be between 1 and {MAX_COMPLETION_TOKENS}", param="max_tokens")
    mode = _mode(data.model)
    require_profile(principal_of(request), data.model)
    principal, collection = await authorize_collection(request, data.collection)
    return {
        "question": question,
        "collection": collection,
        "history": history,
        "mode": mode,
        "principal": principal,
        "request_id": request.headers.get("x-request-id") or uuid.uuid4().hex,
        "max_tokens": max_tokens,
    }


@get("/v1/models", sync_to_thread=False)
def list_models() -> ModelList:
    return ModelList(data=[ModelCard(id=name, created=_STARTED, owned_by="penny") for name in PROFILES])


@post("/v1/chat/completions", status_code=200, guards=[require_api_key])
async def chat_completions(
    data: JSONBody[PennyChatRequest], request: Request[Any, Any, Any], state: State
) -> Response[Any] | Stream:
    """OpenAI chat completions; ``model`` picks the profile (penny, penny-local, penny-paid)."""
    kwargs = await _answer_kwargs(data, request)
    cascade = state.penny.cascade
    estimate = paid_token_estimate(
        state.penny.settings, kwargs["mode"], kwargs["question"], kwargs["history"], kwargs["max_tokens"]
    )
    if data.stream and request.headers.get("idempotency-key"):
        raise ApiError(400, "Idempotency-Key is not supported with stream=true", param="stream")
    ticket = queue_ticket(state, kwargs["mode"])  # 503 now, before anything runs, if it could not start
    try:
        if data.stream:
            include_usage = bool(data.stream_options and data.stream_options.include_usage)
            admission = await admit(request, state, estimate)
            events = _sse_events(
                cascade.stream(**kwargs), data.model, include_usage, state, admission, ticket
            )
            return Stream(
                events,
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", **admission.headers.http()},
                background=BackgroundTasks(
                    [release_after(state, admission), BackgroundTask(dismiss, state, ticket)]
                ),
            )
        async with limited(request, state, estimate) as (admission, meter):
            response = await _complete(request, data, state, kwargs, meter, ticket)
    except BaseException:
        dismiss(state, ticket)
        raise
    dismiss(state, ticket)
    return with_rate_headers(response, admission)


async def _complete(
    request: Request[Any, Any, Any],
    data: PennyChatRequest,
    state: State,
    kwargs: dict[str, Any],
    meter: PaidMeter,
    ticket: QueueTicket | None,
) -> Response[Any]:
    cascade = state.penny.cascade

    async def produce() -> dict[str, Any]:
        meter.running()
        answer = await in_thread(ticket, lambda: cascade.answer(**kwargs))
        meter.answered(answer)
        state.metrics.observe_answer(answer)
        return completion_of(answer, data.model)

    return await idempotent(request, ledger_of(request), principal_of(request), produce)


_END = object()


async def _sse_events(
    parts: Iterator[Any],
    model: str,
    include_usage: bool,
    state: State,
    admission: Admission,
    ticket: QueueTicket | None,
) -> AsyncIterator[bytes]:
    cid, created = completion_id(), int(time.time())
    paid_tokens: int | None = None  # unknown until the answer arrives: the estimate stays
    received = received_at()
    first_token_s: float | None = None

    def chunk(
        choices: list[ChunkChoice],
        usage: Usage | msgspec.UnsetType = msgspec.UNSET,
        penny: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET,
    ) -> bytes:
        return encode_sse(
            PennyChunk(id=cid, created=created, model=model, choices=choices, usage=usage, penny=penny)
        )

    try:
        yield chunk([ChunkChoice(delta=Delta(role="assistant", content=""))])
        while True:
            part = await in_thread(ticket, next, parts, _END)
            if part is _END:
                break
            if isinstance(part, str):
                if first_token_s is None:
                    first_token_s = time.perf_counter() - received
                    if ticket is not None:
                        ticket.started = True  # content is out: this stream is never shed
                yield chunk([ChunkChoice(delta=Delta(content=part))])
                continue
            answer = part
            paid_tokens = paid_tokens_used(answer)
            state.metrics.observe_answer(answer)
            if first_token_s is not None:
                state.metrics.first_token_seconds.labels(tier=answer.tier).observe(first_token_s)
            yield chunk([ChunkChoice(finish_reason="stop")], penny=penny_extras(answer))
            if include_usage:
                yield chunk([], usage=answer_usage(answer))
        yield SSE_DONE
    except ApiError as exc:
        paid_tokens = 0
        yield encode_sse(exc.body())
        yield SSE_DONE
    except PennyError as exc:  # refused by the budget, or shed before any content was sent
        if isinstance(exc, BudgetExceeded | PoolOverloaded):
            paid_tokens = 0  # no paid call was made (or it was released)
        yield encode_sse(api_error_of(exc).body())
        yield SSE_DONE
    finally:
        # Client gone or done: closing the generator stops local generation and lets the cascade record
        # usage for what was produced.
        close = getattr(parts, "close", None)
        try:
            if close is not None:
                with anyio.CancelScope(shield=True):  # runs even when the disconnect cancelled us
                    await in_thread(ticket, close)
        finally:
            dismiss(state, ticket)
            await finish(state, admission, paid_tokens)
