"""``PoolBackend``: the ``LocalBackend`` contract (docs/ARCHITECTURE.md) served by the worker pool.

The cascade calls ``chat``/``stream_chat`` exactly as on an in-process ``LocalModel``; each call waits in the
dispatcher's queue for a slot, then streams from that worker over the OpenAI wire format. Streaming is used
even for ``chat`` so that giving up (deadline, caller gone) closes the connection and the worker stops at
its next token instead of generating into the void.

Requests of one conversation prefer the worker that served its previous turn (:func:`affinity_key`), so
llama.cpp can reuse the KV cache of the prompt prefix they share instead of evaluating it again.

A worker that dies mid-request costs the caller nothing but time: the request is retried once on another
worker. Decoding is greedy (``temperature`` 0 for servers that sample by default), so the retry reproduces
the same text; what the caller already received is skipped, and a retry that would contradict it fails
with :class:`PoolUnavailable` instead.

The stream is read the way llama-server and vLLM send it, not only the way Penny's worker does:
per-token ``logprobs`` may come in every chunk (theirs) or all in the final one (ours), ``usage`` in the
finishing chunk or in a later chunk without choices (``stream_options.include_usage``). A server that sends
no logprobs still works: the Generation has none (the evaluator then sees a mean and minimum logprob of
0) and a warning is logged once per URL. Only Penny's worker honours ``scored_tail``; from the others the
Generation's ``scored_tail_logprobs`` is None, which the evaluator reads as "not known".
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from typing import cast

import httpx
import msgspec
from httpx_sse import SSEError

from assistant.local.backend import Generation, final_generation
from assistant.local.pool.base import PoolBase, PoolDeadlineExceeded, PoolUnavailable, PoolWorker
from assistant.openai_wire import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    StreamOptions,
    Timings,
    Usage,
    WireFormatError,
    chat_messages,
    iter_chunks,
)

log = logging.getLogger("penny.pool")

# What a dead or dying worker looks like from the client side.
TRANSPORT_ERRORS = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


def affinity_key(messages: Sequence[dict[str, str]]) -> str:
    """A stable key for the conversation ``messages`` belong to: a hash of its first two messages.

    The leading messages (the system prompt and the first user turn) are what a conversation's turns have
    in common, while the last message changes every turn, so they name it. A cryptographic hash rather than
    ``hash()``: the same in every process, and no collisions in practice.
    """
    leading = [[m.get("role", ""), m.get("content", "")] for m in messages[:2]]
    digest = hashlib.blake2b(json.dumps(leading).encode("utf-8"), digest_size=16)
    return digest.hexdigest()


class _WorkerFailed(Exception):
    """The worker answered with a server error (5xx) or a malformed stream."""


class PoolBackend:
    def __init__(self, pool: PoolBase, max_attempts: int = 2) -> None:
        self.pool = pool
        self.max_attempts = max_attempts
        # A connection per request: behind a Kubernetes Service, kube-proxy balances connections, not
        # requests, and a kept-alive one would pin this API to one pod. A connect costs far less than a token.
        self._http = httpx.Client(timeout=None, limits=httpx.Limits(max_keepalive_connections=0))
        self._warned_no_logprobs: set[str] = set()

    def close(self) -> None:
        self._http.close()

    def chat(
        self, messages: Sequence[dict[str, str]], max_tokens: int = 256, *, scored_tail: str | None = None
    ) -> Generation:
        return final_generation(self.stream_chat(messages, max_tokens=max_tokens, scored_tail=scored_tail))

    def stream_chat(
        self, messages: Sequence[dict[str, str]], max_tokens: int = 256, *, scored_tail: str | None = None
    ) -> Iterator[str | Generation]:
        """Yield text deltas, then one :class:`Generation`; raises a ``PoolError`` subclass on failure."""
        deadline = time.monotonic() + self.pool.settings.request_deadline_s
        sent = ""  # text the caller already has, so a retry does not repeat it
        last_error: BaseException | None = None
        failed_on: PoolWorker | None = None
        key = affinity_key(messages)
        for attempt in range(1, self.max_attempts + 1):
            lease = self.pool.acquire(deadline, avoid=failed_on, affinity=key)
            worker = cast(PoolWorker, lease.worker)
            produced = ""
            try:
                threads = self.pool.request_threads(lease)
                stream = self._stream(worker, messages, max_tokens, deadline, scored_tail, threads)
                with closing(stream) as items:
                    for item in items:
                        if isinstance(item, Generation):
                            item.text = produced.strip()
                            yield item
                            return
                        produced += item
                        if not (sent.startswith(produced) or produced.startswith(sent)):
                            raise PoolUnavailable("a retried request produced different text; giving up")
                        if len(produced) > len(sent):
                            delta, sent = produced[len(sent) :], produced
                            yield delta
                raise _WorkerFailed("stream ended without a final chunk")
            except httpx.TimeoutException as exc:
                raise PoolDeadlineExceeded(
                    f"no answer from the local tier within {self.pool.settings.request_deadline_s:.0f} s"
                ) from exc
            except (*TRANSPORT_ERRORS, _WorkerFailed) as exc:
                last_error, failed_on = exc, worker
                self.pool.report_failure(worker, exc)
                if attempt == self.max_attempts:
                    break
            finally:
                self.pool.dispatcher.release(lease)
        raise PoolUnavailable(
            f"the local tier failed this request on {self.max_attempts} workers "
            f"({type(last_error).__name__}: {last_error}); try again shortly"
        ) from last_error

    def _stream(
        self,
        worker: PoolWorker,
        messages: Sequence[dict[str, str]],
        max_tokens: int,
        deadline: float,
        scored_tail: str | None,
        threads: int | None = None,
    ) -> Iterator[str | Generation]:
        request = ChatCompletionRequest(
            messages=chat_messages(messages),
            model=worker.model or None,
            max_tokens=max_tokens,
            temperature=0.0,
            stream=True,
            stream_options=StreamOptions(include_usage=True),
            logprobs=True,
            # 1, not 0 or absent: llama-server sends no logprobs for 0, llama-cpp-python's none without.
            top_logprobs=1,
            scored_tail=scored_tail,
            n_threads=threads,
        )
        remaining = max(0.01, deadline - time.monotonic())
        timeout = httpx.Timeout(remaining, connect=min(2.0, remaining))
        started = time.monotonic()
        with self._http.stream(
            "POST",
            f"{worker.url}/v1/chat/completions",
            json=msgspec.to_builtins(request),
            timeout=timeout,
        ) as response:
            if response.status_code >= 500:
                raise _WorkerFailed(f"worker answered {response.status_code}")
            if response.status_code >= 400:
                response.read()
                raise _client_error(response)
            reply = _Reply()
            try:
                for chunk in iter_chunks(response):
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("request deadline passed")
                    if chunk.error_message is not None:
                        raise _WorkerFailed(chunk.error_message)
                    content = reply.add(chunk)
                    if content:
                        yield content
            except WireFormatError as exc:
                raise _WorkerFailed(f"malformed stream chunk: {exc.data[:80]!r}") from exc
            except SSEError as exc:  # not an event stream at all
                raise _WorkerFailed(str(exc)) from exc
        if reply.finish_reason is None:
            raise _WorkerFailed("stream ended without a finish_reason")
        if reply.completion_tokens and not reply.logprobs and worker.url not in self._warned_no_logprobs:
            self._warned_no_logprobs.add(worker.url)
            log.warning(
                "%s sends no logprobs: the evaluator sees mean/min logprob 0 for its answers; "
                "use a server that honours the OpenAI 'logprobs' field",
                worker.url,
            )
        yield reply.generation(time.monotonic() - started)


@dataclass
class _Reply:
    """What one streamed completion has said so far."""

    logprobs: list[float] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    timings: Timings | None = None
    deltas: int = 0
    scored_tail_logprobs: list[float] | None = None

    def add(self, chunk: ChatCompletionChunk) -> str:
        """Take in one chunk; returns its text delta ('' if none)."""
        self.usage = chunk.usage or self.usage
        self.timings = chunk.timings or self.timings
        if not chunk.choices:  # vLLM's usage-only chunk
            return ""
        choice = chunk.choices[0]
        if choice.logprobs:
            self.logprobs.extend(choice.logprobs.values())
        self.finish_reason = choice.finish_reason or self.finish_reason
        if isinstance(choice.scored_tail_logprobs, list):
            self.scored_tail_logprobs = choice.scored_tail_logprobs
        content = choice.delta.text
        self.deltas += bool(content)
        return content

    @property
    def completion_tokens(self) -> int:
        reported = self.usage.completion_tokens if self.usage else 0
        return reported or len(self.logprobs) or self.deltas

    def generation(self, elapsed_s: float) -> Generation:
        total_ms = self.timings.total_ms if self.timings else None
        return Generation(
            text="",  # filled in by the caller's accumulated text; see stream_chat
            prompt_tokens=self.usage.prompt_tokens if self.usage else 0,
            completion_tokens=self.completion_tokens,
            token_logprobs=self.logprobs,
            finish_reason=self.finish_reason or "stop",
            seconds=total_ms / 1000 if total_ms is not None else elapsed_s,
            cached_prompt_tokens=self.usage.cached_prompt_tokens if self.usage else 0,
            scored_tail_logprobs=self.scored_tail_logprobs,
        )


def _client_error(response: httpx.Response) -> ValueError:
    """A 4xx from a worker is the request's fault (e.g. prompt longer than the context): not retried."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text
    return ValueError(f"local model rejected the request: {message}")
