"""``PoolBackend``: the ``LocalBackend`` contract (docs/ARCHITECTURE.md) served by the worker pool.

The cascade calls ``chat``/``stream_chat`` exactly as on an in-process ``LocalModel``; each call waits in the
dispatcher's queue for a slot, then streams from that worker over the OpenAI wire format. Streaming is used
even for ``chat`` so that giving up (deadline, caller gone) closes the connection and the worker stops at
its next token instead of generating into the void.

A worker that dies mid-request costs the caller nothing but time: the request is retried once on another
worker. Decoding is greedy, so the retry reproduces the same text; what the caller already received is
skipped, and a retry that would contradict it fails with :class:`PoolUnavailable` instead.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from typing import Any

import httpx

from assistant.local_llm import Generation, final_generation
from assistant.pool.manager import PoolDeadlineExceeded, PoolUnavailable, Worker, WorkerPool

# What a dead or dying worker looks like from the client side.
TRANSPORT_ERRORS = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class _WorkerFailed(Exception):
    """The worker answered with a server error (5xx) or a malformed stream."""


class PoolBackend:
    def __init__(self, pool: WorkerPool, max_attempts: int = 2) -> None:
        self.pool = pool
        self.max_attempts = max_attempts
        self._http = httpx.Client(timeout=None)

    def close(self) -> None:
        self._http.close()

    def chat(self, messages: Sequence[dict[str, str]], max_tokens: int = 256) -> Generation:
        return final_generation(self.stream_chat(messages, max_tokens=max_tokens))

    def stream_chat(
        self, messages: Sequence[dict[str, str]], max_tokens: int = 256
    ) -> Iterator[str | Generation]:
        """Yield text deltas, then one :class:`Generation`; raises a ``PoolError`` subclass on failure."""
        deadline = time.monotonic() + self.pool.settings.request_deadline_s
        sent = ""  # text the caller already has, so a retry does not repeat it
        last_error: BaseException | None = None
        for attempt in range(1, self.max_attempts + 1):
            lease = self.pool.acquire(deadline)
            worker = lease.worker
            assert isinstance(worker, Worker)
            produced = ""
            try:
                with closing(self._stream(worker, messages, max_tokens, deadline)) as items:
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
                last_error = exc
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
        self, worker: Worker, messages: Sequence[dict[str, str]], max_tokens: int, deadline: float
    ) -> Iterator[str | Generation]:
        body = {"messages": list(messages), "max_tokens": max_tokens, "stream": True, "logprobs": True}
        remaining = max(0.01, deadline - time.monotonic())
        timeout = httpx.Timeout(remaining, connect=min(2.0, remaining))
        with self._http.stream(
            "POST", f"{worker.url}/v1/chat/completions", json=body, timeout=timeout
        ) as response:
            if response.status_code >= 500:
                raise _WorkerFailed(f"worker answered {response.status_code}")
            if response.status_code >= 400:
                response.read()
                raise _client_error(response)
            for line in response.iter_lines():
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("request deadline passed")
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    raise _WorkerFailed(chunk["error"].get("message", "worker error"))
                choice = chunk["choices"][0]
                content = choice.get("delta", {}).get("content")
                if content:
                    yield content
                if choice.get("finish_reason"):
                    yield _generation(chunk)


def _generation(chunk: dict[str, Any]) -> Generation:
    choice = chunk["choices"][0]
    usage = chunk.get("usage") or {}
    logprobs = (choice.get("logprobs") or {}).get("content") or []
    return Generation(
        text="",  # filled in by the caller's accumulated text; see stream_chat
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        token_logprobs=[float(entry["logprob"]) for entry in logprobs],
        finish_reason=choice["finish_reason"],
        seconds=float((chunk.get("timings") or {}).get("total_ms", 0.0)) / 1000,
    )


def _client_error(response: httpx.Response) -> ValueError:
    """A 4xx from a worker is the request's fault (e.g. prompt longer than the context): not retried."""
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text
    return ValueError(f"local model rejected the request: {message}")
