"""RemotePool: the local tier on fixed worker URLs (Kubernetes), against real worker processes on loopback.

Two Penny workers (``python -m assistant.local.pool.worker``, SmolLM2) are the "pods"; a free port with
nothing
listening is a dead one. Nothing is mocked: requests, health checks, SIGKILL and the retry are real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import pytest
from litestar import Litestar, get, post
from litestar.params import JSONBody
from litestar.response import Stream

from assistant.local.backend import Generation
from assistant.local.pool import (
    PoolBackend,
    RemotePool,
    WorkerState,
    pool_registry,
    pool_status,
    render_metrics,
)
from assistant.local.pool.dispatcher import Lease
from assistant.local.pool.remote import RemoteWorker
from assistant.settings import PoolSettings
from tests.support.servers import free_port, running_server, wait_for, wait_until_ready, worker_command

QUESTION = [{"role": "user", "content": "What colour is the sky on a clear day?"}]
STORY = [{"role": "user", "content": "Write a long story about a ship at sea."}]

Spawn = Callable[..., tuple[str, subprocess.Popen[bytes]]]


@pytest.fixture(scope="module")
def spawn(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spawn]:
    """Start Penny workers as separate processes, as a Deployment's pods would run; all stopped at the end."""
    log_dir = tmp_path_factory.mktemp("remote-workers")
    started: list[subprocess.Popen[bytes]] = []

    def start(port: int | None = None, wait: bool = True) -> tuple[str, subprocess.Popen[bytes]]:
        port = port or free_port()
        with (log_dir / f"worker-{port}.log").open("ab") as log:
            process = subprocess.Popen(
                [
                    *worker_command(tiny_model_path, n_ctx=1024),
                    *("--port", str(port), "--parent-pid", str(os.getpid())),
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        if wait:
            ready(url, process)
        return url, process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


def ready(url: str, process: subprocess.Popen[bytes]) -> None:
    assert wait_until_ready(f"{url}/healthz", process, timeout_s=180), f"worker {url} did not start"


@pytest.fixture(scope="module")
def workers(spawn: Spawn) -> list[str]:
    """Two live worker URLs, started in parallel."""
    pair = [spawn(wait=False) for _ in range(2)]
    for url, process in pair:
        ready(url, process)
    return [url for url, _ in pair]


def remote_pool(urls: list[str]) -> RemotePool:
    settings = PoolSettings(enabled=True, remote_urls=urls, health_interval_s=0.3, tick_s=0.1)
    return RemotePool(settings.remote_urls, settings).start()


def record_choices(pool: RemotePool, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URL of every slot the dispatcher hands out, in order."""
    chosen: list[str] = []
    acquire = pool.dispatcher.acquire

    def recording(*args: Any, **kwargs: Any) -> Lease:
        lease = acquire(*args, **kwargs)
        assert isinstance(lease.worker, RemoteWorker)
        chosen.append(lease.worker.url)
        return lease

    monkeypatch.setattr(pool.dispatcher, "acquire", recording)
    return chosen


def states(pool: RemotePool) -> dict[str, WorkerState]:
    return {w.url: w.state for w in pool.workers()}


def test_requests_go_to_live_urls_and_a_dead_one_gets_none_until_it_recovers(
    spawn: Spawn, workers: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_port = free_port()
    dead = f"http://127.0.0.1:{dead_port}"
    pool = remote_pool([*workers, dead + "/"])
    try:
        # start() checked every URL once: the dead one is out of rotation before any request.
        assert states(pool) == {workers[0]: "ready", workers[1]: "ready", dead: "unhealthy"}
        live = pool.workers(WorkerState.READY)[0]
        assert (live.health_path, live.model) == ("/healthz", "smollm2-135m")
        chosen = record_choices(pool, monkeypatch)
        backend = PoolBackend(pool)
        with ThreadPoolExecutor(max_workers=2) as clients:
            answers = list(clients.map(lambda _: backend.chat(QUESTION, max_tokens=12), range(4)))
        for answer in answers:
            assert isinstance(answer, Generation) and answer.text
            # The evaluator's inputs came over the wire: one logprob per generated token.
            assert answer.completion_tokens > 0 and len(answer.token_logprobs) == answer.completion_tokens
        assert len(chosen) == 4 and dead not in chosen
        assert set(chosen) == set(workers)  # two clients on two one-slot URLs: both served

        registry = pool_registry(pool)
        status = pool_status(pool)
        assert status["kind"] == "remote"
        assert status["workers_by_state"] == {"starting": 0, "ready": 2, "unhealthy": 1}
        assert [(w["url"], w["state"]) for w in status["workers"]] == [
            (workers[0], "ready"),
            (workers[1], "ready"),
            (dead, "unhealthy"),
        ]
        assert all(w["pid"] is None and w["rss_bytes"] == 0 for w in status["workers"])  # not measured
        assert (status["slots_total"], status["desired_workers"], status["memory_bytes"]) == (2, 3, 0)
        assert status["requests"]["recent"] == 4
        metrics = render_metrics(registry)[0].decode()
        assert 'penny_pool_workers{state="unhealthy"} 1.0' in metrics
        assert 'penny_pool_workers{state="ready"} 2.0' in metrics
        assert "penny_pool_worker_memory_bytes{" not in metrics

        # A worker comes up at the dead address: the next health check puts it into rotation.
        _, revived = spawn(port=dead_port, wait=False)
        ready(dead, revived)
        wait_for(lambda: states(pool)[dead] is WorkerState.READY, 10, "the revived URL to become ready")
        assert pool.dispatcher.slots_total == 3
        assert [e.direction for e in pool.events].count("unhealthy") == 1  # only the dead URL ever failed
        revived.terminate()
        revived.wait(timeout=10)
        wait_for(lambda: states(pool)[dead] is WorkerState.UNHEALTHY, 10, "the stopped URL to leave rotation")
        assert pool.dispatcher.slots_total == 2
    finally:
        pool.stop()


def test_a_conversations_next_turn_goes_to_the_worker_of_its_first(
    workers: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefix affinity through PoolBackend: the follow-up lands where its shared prefix is cached."""
    pool = remote_pool(workers)
    try:
        chosen = record_choices(pool, monkeypatch)
        backend = PoolBackend(pool)
        hold = pool.dispatcher.acquire(5.0)  # the first worker busy, so turn 1 goes to the second
        first_turn = [{"role": "system", "content": "Be brief."}, *QUESTION]
        reply = backend.chat(first_turn, max_tokens=8)
        pool.dispatcher.release(hold)
        # Both free now: without affinity the first worker would take it (equal load, first wins).
        follow_up = [*first_turn, {"role": "assistant", "content": reply.text}, *QUESTION]
        assert backend.chat(follow_up, max_tokens=8).completion_tokens > 0
        assert chosen[-2] == chosen[-1] != cast(RemoteWorker, hold.worker).url
        status = pool_status(pool)
        assert status["affinity"] == {"hits": 1, "misses": 0}
        assert (
            'penny_pool_affinity_total{outcome="hit"} 1.0' in render_metrics(pool_registry(pool))[0].decode()
        )
    finally:
        pool.stop()


def test_a_worker_killed_mid_request_is_answered_by_another_url(spawn: Spawn, workers: list[str]) -> None:
    victim_url, victim = spawn()
    pool = remote_pool([victim_url, workers[0]])
    try:
        backend = PoolBackend(pool)
        expected = backend.chat(STORY, max_tokens=64)  # both URLs free: the first one listed serves it
        stream = backend.stream_chat(STORY, max_tokens=64)
        first = next(stream)
        assert isinstance(first, str)
        assert [w.url for w in pool.workers() if pool.dispatcher.in_flight_on(w)] == [victim_url]
        victim.kill()  # the pod dies mid-answer
        rest = list(stream)
        final = rest[-1]
        assert isinstance(final, Generation)
        streamed = first + "".join(x for x in rest[:-1] if isinstance(x, str))
        assert streamed.strip() == final.text == expected.text  # nothing repeated, nothing lost
        assert len(final.token_logprobs) == final.completion_tokens > 0
        assert states(pool) == {victim_url: "unhealthy", workers[0]: "ready"}
        status = pool_status(pool)
        assert {w["url"]: w["state"] for w in status["workers"]} == {
            victim_url: "unhealthy",
            workers[0]: "ready",
        }
        assert any(
            e["direction"] == "unhealthy" and victim_url in e["reason"] for e in status["scale_events"]
        )
        assert pool.dispatcher.in_flight == 0
    finally:
        pool.stop()


def test_penny_builds_a_remote_pool_from_the_environment(
    workers: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assistant.service import Penny
    from assistant.settings import Settings

    monkeypatch.setenv("PENNY_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("PENNY_POOL__ENABLED", "true")
    monkeypatch.setenv("PENNY_POOL__REMOTE_URLS", json.dumps(workers))
    monkeypatch.setenv("PENNY_POOL__REMOTE_SLOTS_PER_URL", "2")
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.pool.remote_urls == workers
    penny = Penny(settings)
    try:
        assert isinstance(penny.pool, RemotePool)
        assert penny.pool.dispatcher.slots_total == 4
        assert penny.readiness()["local_model"] == "ok"
        answer = penny.local_backend.chat(QUESTION, max_tokens=8, scored_tail=QUESTION[0]["content"])
        assert answer.completion_tokens > 0 and answer.token_logprobs
        assert answer.scored_tail_logprobs and all(lp <= 0 for lp in answer.scored_tail_logprobs)
        assert "local_model" not in penny.__dict__  # nothing was loaded in-process
    finally:
        penny.close()
    assert not [t for t in threading.enumerate() if t.name == "penny-pool-control"]  # health checks stopped


def test_a_third_party_openai_server_works_through_v1_models_and_per_chunk_logprobs(
    tiny_model_path: Path, workers: list[str], tmp_path: Path
) -> None:
    """llama-cpp-python's OpenAI server (no /healthz, logprobs in each chunk, no usage) as a remote worker."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "llama_cpp_server.log").open("wb") as log:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_model_path)),
                *("--port", str(port), "--n_ctx", "1024", "--n_threads", "1", "--model_alias", "smol-remote"),
                # Its /v1/models takes the model lock: by default a health check would cut the generation off.
                *("--interrupt_requests", "false"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    pool = None
    try:
        assert wait_until_ready(f"{url}/v1/models", server, timeout_s=180), "llama_cpp.server did not start"
        pool = remote_pool([url])
        (worker,) = pool.workers(WorkerState.READY)
        assert (worker.health_path, worker.model) == ("/v1/models", "smol-remote")
        tail = QUESTION[0]["content"]
        answer = PoolBackend(pool).chat(QUESTION, max_tokens=8, scored_tail=tail)
        assert answer.text and answer.finish_reason in ("stop", "length")
        assert answer.scored_tail_logprobs is None  # Penny's extension: ignored here, so not known
        assert len(answer.token_logprobs) == answer.completion_tokens > 0  # no usage sent: counted from them
        assert all(lp <= 0 for lp in answer.token_logprobs)
        # The same model behind Penny's own worker gives the same greedy answer over the same wire format.
        ours = remote_pool(workers[:1])
        try:
            reference = PoolBackend(ours).chat(QUESTION, max_tokens=8, scored_tail=tail)
        finally:
            ours.stop()
        assert answer.text == reference.text
        assert answer.token_logprobs == pytest.approx(reference.token_logprobs, abs=0.1)
        assert reference.scored_tail_logprobs
    finally:
        if pool is not None:
            pool.stop()
        server.terminate()
        server.wait(timeout=10)


def vllm_shaped_app(requests: list[dict[str, Any]]) -> Litestar:
    """A server that streams the way vLLM does for a model that returns no logprobs: content chunks without
    them, ``finish_reason`` in the last choice, ``usage`` in a separate chunk with no choices. Scripted,
    because there is no vLLM here; everything between it and the Generation is the real pool."""
    chunks = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {"content": "Blue"}, "logprobs": None, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {"content": "."}, "logprobs": None, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}},
    ]

    @get("/v1/models", sync_to_thread=False)
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "vllm-model", "object": "model"}]}

    @post("/v1/chat/completions", status_code=200, sync_to_thread=False)
    def completions(data: JSONBody[dict[str, Any]]) -> Stream:
        requests.append(data)
        lines = [f"data: {json.dumps(chunk)}\n\n" for chunk in chunks] + ["data: [DONE]\n\n"]
        return Stream(iter(lines), media_type="text/event-stream")

    return Litestar([models, completions], logging_config=None)  # keep pytest's log capture in place


def test_a_server_without_logprobs_still_answers_and_is_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    requests: list[dict[str, Any]] = []
    with running_server(vllm_shaped_app(requests)) as url:
        pool = remote_pool([url])
        try:
            backend = PoolBackend(pool)
            with caplog.at_level("WARNING", logger="penny.pool"):
                answers = [backend.chat(QUESTION, max_tokens=8) for _ in range(2)]
        finally:
            pool.stop()
    for answer in answers:
        assert (answer.text, answer.prompt_tokens, answer.completion_tokens) == ("Blue.", 12, 2)
        assert answer.token_logprobs == [] and answer.mean_logprob == answer.min_logprob == 0.0
        assert answer.finish_reason == "stop"
    warnings = [r for r in caplog.records if "sends no logprobs" in r.getMessage()]
    assert len(warnings) == 1 and url in warnings[0].getMessage()
    # What Penny asked for: greedy, per-token logprobs, usage in the stream, the model the server lists.
    assert requests[0]["model"] == "vllm-model"
    assert (requests[0]["temperature"], requests[0]["logprobs"], requests[0]["top_logprobs"]) == (0, True, 1)
    assert requests[0]["stream"] is True and requests[0]["stream_options"] == {"include_usage": True}
    assert "n_threads" not in requests[0]  # threads by load hints only the workers Penny spawns
