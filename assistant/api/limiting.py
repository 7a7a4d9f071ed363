"""Rate limits on the answering routes: admit before answering, settle the paid tokens, end the lease.

A request is admitted (or refused with 429) after it has been validated and before any work is done, with
its paid worst case reserved against the tokens-per-minute limit. When the answer is done the reservation
is settled to the paid tokens the answer used (0 when served locally), and the concurrency lease is
released: for a streamed answer when the stream ends or the client goes away. Every path ends in
``finish``; the lease's expiry (``limits.lease_ttl_s``) covers a process that dies before it gets there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from litestar import Request, Response
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State

from assistant.answering.answer import CascadeAnswer
from assistant.answering.prompt.grounded import grounded_messages
from assistant.api.auth import principal_of
from assistant.api.errors import ApiError
from assistant.errors import PennyError
from assistant.limits import Admission
from assistant.paid import tokens
from assistant.settings import Settings


def paid_token_estimate(
    settings: Settings,
    mode: str,
    question: str,
    history: Sequence[dict[str, str]],
    max_tokens: int | None,
) -> int:
    """The most paid tokens this request can use: 0 if it can never reach the paid tier; else the prompt
    (tiktoken-counted system prompt, history and question, plus ``top_k`` passages of at most
    ``chunk_tokens`` each, with the reservation's headroom) and the largest completion the paid tier may
    return."""
    if mode == "local" or not settings.paid.base_url:
        return 0
    system, question_turn = grounded_messages(question, [], settings.cascade.answer_style)
    counted = tokens.count_messages([system, *history, question_turn])
    passages = settings.index.top_k * settings.index.chunk_tokens
    prompt = tokens.with_headroom(
        counted + passages, settings.paid.prompt_token_margin, settings.paid.prompt_token_overhead
    )
    completion = settings.paid.max_tokens if max_tokens is None else min(settings.paid.max_tokens, max_tokens)
    return prompt + completion


def paid_tokens_used(answer: CascadeAnswer) -> int:
    paid = answer.paid_generation
    return 0 if paid is None else paid.usage.prompt_tokens + paid.usage.completion_tokens


async def admit(request: Request[Any, Any, Any], state: State, paid_tokens: int) -> Admission:
    """Admit the caller's request in its user's and key's scopes, or raise ``RateLimited`` (429)."""
    penny = state.penny
    principal = principal_of(request)
    return await anyio.to_thread.run_sync(
        lambda: penny.limiter.admit(penny.limit_policy.scopes(principal), paid_tokens)
    )


async def finish(state: State, admission: Admission, paid_tokens: int | None) -> None:
    """Settle to ``paid_tokens`` (None: unknown, keep the estimate) and release the lease; runs even when
    the request was cancelled, and takes effect once however many paths call it."""
    limiter = state.penny.limiter

    def done() -> None:
        try:
            if paid_tokens is not None:
                limiter.settle(admission, paid_tokens)
        finally:
            limiter.release(admission)

    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(done)


@dataclass
class PaidMeter:
    """What a request's paid tokens are known to be: 0 until the cascade runs, unknown (None) while it
    does, then the answer's. An error Penny raised on purpose happens before or instead of a paid call."""

    tokens: int | None = 0

    def running(self) -> None:
        self.tokens = None

    def answered(self, answer: CascadeAnswer) -> None:
        self.tokens = paid_tokens_used(answer)


@asynccontextmanager
async def limited(
    request: Request[Any, Any, Any], state: State, paid_tokens: int
) -> AsyncIterator[tuple[Admission, PaidMeter]]:
    """Admit, run the body, then settle and release whatever happened (a whole, non-streamed answer)."""
    admission = await admit(request, state, paid_tokens)
    meter = PaidMeter()
    try:
        yield admission, meter
    except (ApiError, PennyError):
        meter.tokens = 0
        raise
    finally:
        await finish(state, admission, meter.tokens)


def with_rate_headers(response: Response[Any], admission: Admission) -> Response[Any]:
    response.headers.update(admission.headers.http())
    return response


def release_after(state: State, admission: Admission) -> BackgroundTask:
    """The response's completion hook: frees the lease of a stream that never started (client gone
    before the first byte), where the stream's own ``finally`` never runs."""
    return BackgroundTask(finish, state, admission, None)
