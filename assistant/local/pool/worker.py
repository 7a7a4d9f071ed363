"""One local-tier worker: a llama.cpp model behind an OpenAI-compatible HTTP interface on its own port.

Run as ``python -m assistant.local.pool.worker --model PATH --port P --threads T``. A worker is a separate OS
process so inference never blocks the API's event loop and a crash takes down one worker, not the service;
speaking the OpenAI wire format means a remote worker, llama.cpp's ``llama-server`` or vLLM plug into the
pool the same way.

Routes: ``POST /v1/chat/completions`` (non-streaming and SSE; greedy decoding; per-token logprobs in the
OpenAI ``choices[0].logprobs.content[].logprob`` shape when ``logprobs`` is true; ``usage``; llama-server
style ``timings``; ``scored_tail_logprobs`` when the request names a ``scored_tail``; decoding with the
request's ``n_threads`` when it names one, else the start-up ``--threads``), ``GET /healthz`` (JSON: slots,
memory, the threads the model decodes with now), ``GET /metrics`` (Prometheus text).

The model is loaded before the port is bound, so "accepts connections" means "ready to generate".
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from litestar import Litestar, Response, get, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.params import JSONBody
from litestar.response import Stream
from msgspec import UNSET, UnsetType
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from assistant.local.pool.memory import process_rss_bytes
from assistant.openai_wire import (
    SSE_DONE,
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    Delta,
    PromptTokensDetails,
    Timings,
    Usage,
    completion_id,
    encode_sse,
)

if TYPE_CHECKING:
    from assistant.local.backend import Generation
    from assistant.local.model import LocalModel

log = logging.getLogger("penny.pool.worker")


class WorkerState:
    """What the routes share: the model, its single slot, and the worker's Prometheus registry."""

    def __init__(self, model: LocalModel, model_name: str, slots: int = 1) -> None:
        self.model = model
        self.model_name = model_name
        self.slots_total = slots
        self.busy = 0
        self.waiting = 0
        self._lock = threading.Lock()
        self.registry = CollectorRegistry()
        self.m_busy = Gauge("penny_worker_slots_busy", "Slots generating now", registry=self.registry)
        self.m_total = Gauge("penny_worker_slots_total", "Slots in this worker", registry=self.registry)
        self.m_deferred = Gauge(
            "penny_worker_requests_deferred", "Requests waiting for a slot", registry=self.registry
        )
        self.m_rss = Gauge(
            "penny_worker_memory_bytes", "Resident memory of the worker", registry=self.registry
        )
        self.m_requests = Counter(
            "penny_worker_requests", "Chat completions served", ["outcome"], registry=self.registry
        )
        self.m_seconds = Histogram(
            "penny_worker_generation_seconds",
            "Time to generate one completion",
            buckets=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.m_total.set(slots)

    def enter(self) -> None:
        with self._lock:
            self.waiting += 1
            self.m_deferred.set(self.waiting)

    def start(self) -> None:
        with self._lock:
            self.waiting -= 1
            self.busy += 1
            self.m_deferred.set(self.waiting)
            self.m_busy.set(self.busy)

    def leave(self, started: bool) -> None:
        with self._lock:
            if started:
                self.busy -= 1
            else:
                self.waiting -= 1
            self.m_deferred.set(self.waiting)
            self.m_busy.set(self.busy)

    def health(self) -> dict[str, Any]:
        rss = process_rss_bytes(os.getpid())
        self.m_rss.set(rss)
        return {
            "status": "ok",
            "model": self.model_name,
            "pid": os.getpid(),
            "slots_total": self.slots_total,
            "slots_busy": self.busy,
            "requests_deferred": self.waiting,
            "rss_bytes": rss,
            "threads": self.model.n_threads,  # as the last request set them
        }


def _openai_error(status: int, message: str, kind: str, code: str | None = None) -> Response[Any]:
    return Response(
        {"error": {"message": message, "type": kind, "param": None, "code": code}}, status_code=status
    )


def _http_error(_: Any, exc: HTTPException) -> Response[Any]:
    kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
    detail = str(exc.detail)
    if getattr(exc, "extra", None):
        detail = f"{detail}: {exc.extra}"
    code = "context_length_exceeded" if "context window" in detail else None
    return _openai_error(exc.status_code, detail, kind, code)


def _max_tokens(request: ChatCompletionRequest, n_ctx: int) -> int:
    value = request.max_completion_tokens or request.max_tokens or 256
    if not 1 <= value <= n_ctx:
        raise HTTPException(status_code=400, detail=f"max_tokens must be between 1 and {n_ctx}")
    return value


def _logprobs(generation: Generation, wanted: bool) -> ChoiceLogprobs | None:
    # LocalModel records the log-probability of each greedy token but not its text, so ``token`` is empty.
    return ChoiceLogprobs.of(generation.token_logprobs) if wanted else None


def _scored_tail(generation: Generation) -> list[float] | UnsetType:
    return UNSET if generation.scored_tail_logprobs is None else generation.scored_tail_logprobs


def _usage(generation: Generation) -> Usage:
    usage = Usage.of(generation.prompt_tokens, generation.completion_tokens)
    usage.prompt_tokens_details = PromptTokensDetails(cached_tokens=generation.cached_prompt_tokens)
    return usage


def _timings(generation: Generation) -> Timings:
    """llama-server's ``timings`` block (ms), which the pool reads to learn the service time."""
    return Timings(
        prompt_n=generation.prompt_tokens,
        predicted_n=generation.completion_tokens,
        total_ms=round(generation.seconds * 1000, 3),
    )


class _Generation:
    """Runs ``LocalModel.stream_chat`` one token at a time in a thread, holding the worker's slot.

    Pulling each item with ``anyio.to_thread`` keeps the event loop free for /healthz while generating, and
    lets a disconnected client stop generation at the next token (the generator is closed).
    """

    def __init__(self, state: WorkerState, request: ChatCompletionRequest, max_tokens: int) -> None:
        self.state = state
        messages = [{"role": m.role, "content": m.text()} for m in request.messages]
        self._iterator: Iterator[Any] = state.model.stream_chat(
            messages, max_tokens=max_tokens, scored_tail=request.scored_tail, threads=request.n_threads
        )
        self._started = False
        self._closed = False
        state.enter()

    def _next(self) -> Any:
        # The first next() blocks on the model's lock; once it returns, this request owns the slot.
        item = next(self._iterator)
        if not self._started:
            self._started = True
            self.state.start()
        return item

    async def next(self) -> Any:
        return await anyio.to_thread.run_sync(self._next)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await anyio.to_thread.run_sync(self._iterator.close)
        finally:
            self.state.leave(self._started)


async def _first(run: _Generation) -> Any:
    """The first item, so a prompt that does not fit is a clean 400 before any SSE bytes go out."""
    from assistant.local.backend import Generation

    try:
        item = await run.next()
    except ValueError as exc:  # llama.cpp: "Requested tokens (...) exceed context window of ..."
        await run.aclose()
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    except BaseException:
        await run.aclose()
        raise
    assert isinstance(item, str | Generation)
    return item


@post("/v1/chat/completions", status_code=200)
async def chat_completions(data: JSONBody[ChatCompletionRequest], state: State) -> Response[Any] | Stream:
    from assistant.local.backend import Generation

    worker: WorkerState = state.worker
    if not data.messages:
        return _openai_error(400, "messages must not be empty", "invalid_request_error")
    max_tokens = _max_tokens(data, worker.model.n_ctx)
    if data.n_threads is not None and data.n_threads < 1:
        return _openai_error(400, "n_threads must be at least 1", "invalid_request_error")
    cid = completion_id()
    created = int(time.time())
    run = _Generation(worker, data, max_tokens)
    first = await _first(run)

    if not data.stream:
        try:
            item = first
            while not isinstance(item, Generation):
                item = await run.next()
        finally:
            await run.aclose()
        worker.m_requests.labels("ok").inc()
        worker.m_seconds.observe(item.seconds)
        choice = Choice(
            message=AssistantMessage(content=item.text),
            finish_reason=item.finish_reason,
            logprobs=_logprobs(item, data.logprobs),
            scored_tail_logprobs=_scored_tail(item),
        )
        completion = ChatCompletion(
            id=cid,
            created=created,
            model=worker.model_name,
            choices=[choice],
            usage=_usage(item),
            timings=_timings(item),
        )
        return Response(completion)

    def chunk(
        choice: ChunkChoice, usage: Usage | UnsetType = UNSET, timings: Timings | UnsetType = UNSET
    ) -> bytes:
        return encode_sse(
            ChatCompletionChunk(
                id=cid,
                created=created,
                model=worker.model_name,
                choices=[choice],
                usage=usage,
                timings=timings,
            )
        )

    async def events() -> AsyncIterator[bytes]:
        outcome = "cancelled"
        try:
            item = first
            yield chunk(ChunkChoice(delta=Delta(role="assistant")))
            while not isinstance(item, Generation):
                yield chunk(ChunkChoice(delta=Delta(content=item)))
                item = await run.next()
            final = ChunkChoice(
                finish_reason=item.finish_reason,
                logprobs=_logprobs(item, data.logprobs),
                scored_tail_logprobs=_scored_tail(item),
            )
            yield chunk(final, usage=_usage(item), timings=_timings(item))
            yield SSE_DONE
            outcome = "ok"
            worker.m_seconds.observe(item.seconds)
        finally:
            worker.m_requests.labels(outcome).inc()
            await run.aclose()

    return Stream(events(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


@get("/healthz", sync_to_thread=False)
def healthz(state: State) -> dict[str, Any]:
    return state.worker.health()


@get("/metrics", sync_to_thread=False)
def metrics(state: State) -> Response[bytes]:
    worker: WorkerState = state.worker
    worker.health()  # refreshes the memory gauge
    return Response(generate_latest(worker.registry), media_type=CONTENT_TYPE_LATEST)


def create_worker_app(model: LocalModel, model_name: str | None = None) -> Litestar:
    """The worker's ASGI app around an already loaded model (tests run it in-process)."""
    worker = WorkerState(model, model_name or Path(model.model_path).stem)
    return Litestar(
        route_handlers=[chat_completions, healthz, metrics],
        exception_handlers={HTTPException: _http_error},
        state=State({"worker": worker}),
        debug=False,
    )


def _exit_with_parent(parent_pid: int) -> None:
    """A pool that dies without stopping its workers (SIGKILL, OOM) must not leave them holding memory."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve one local model over an OpenAI-compatible API.")
    parser.add_argument("--model", type=Path, required=True, help="path to a .gguf file")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp n_threads (default: all cores)")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--name", default=None, help="model name reported to clients")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    args = parser.parse_args(argv)
    if args.parent_pid:
        threading.Thread(target=_exit_with_parent, args=(args.parent_pid,), daemon=True).start()

    import uvicorn

    from assistant.local.model import LocalModel

    logging.basicConfig(level=logging.WARNING)
    model = LocalModel(args.model, n_ctx=args.n_ctx, n_threads=args.threads)
    app = create_worker_app(model, args.name)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
