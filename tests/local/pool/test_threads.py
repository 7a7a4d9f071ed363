"""Threads by load: a request that runs alone decodes with all the cores, concurrent ones with a worker's
share each; the hint travels with the request and llama.cpp's context reports what it was set to."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from assistant.local.pool import PoolBackend, WorkerPool, pool_status
from assistant.local.pool.dispatcher import Dispatcher, Lease
from assistant.local.pool.shedding import run_holding
from assistant.local.pool.sizing import Host, lone_threads
from assistant.local.pool.worker import create_worker_app
from assistant.settings import PoolSettings
from tests.support.servers import running_server

QUESTION = [{"role": "user", "content": "Write one sentence about the sea."}]
CORES = Host.measure().cpus
needs_two_cores = pytest.mark.skipif(CORES < 2, reason="threads by load needs at least 2 cores to differ")


# -- the decision, without processes -------------------------------------------------------------------
def test_a_lease_is_alone_only_when_nothing_else_is_in_flight_queued_or_admitted() -> None:
    dispatcher = Dispatcher()
    dispatcher.add_worker("a", 1)
    dispatcher.add_worker("b", 1)
    first = dispatcher.acquire(1.0)
    second = dispatcher.acquire(1.0)
    assert first.alone and not second.alone
    dispatcher.release(first)
    assert not dispatcher.acquire(1.0).alone  # "second" still runs
    dispatcher.release(second)

    quiet = Dispatcher()
    quiet.add_worker("a", 2)
    assert quiet.admit(60.0, None) is None  # another request on its way (retrieving) ...
    assert not quiet.acquire(1.0).alone  # ... so this one does not take all the cores


def test_lone_threads_are_the_cores_capped_by_the_setting_and_zero_turns_them_off() -> None:
    host = Host(cpus=8, memory_bytes=None)
    assert lone_threads(PoolSettings(), host) is None  # off by default: no gain measured on 2 cores
    assert lone_threads(PoolSettings(lone_request_threads=None), host) == 8
    assert lone_threads(PoolSettings(lone_request_threads=4), host) == 4
    assert lone_threads(PoolSettings(lone_request_threads=64), host) == 8
    assert lone_threads(PoolSettings(lone_request_threads=0), host) is None
    all_cores = PoolSettings(lone_request_threads=None)
    assert lone_threads(all_cores, host, processes=4) == 2  # the API processes share the cores
    assert lone_threads(all_cores.model_copy(update={"threads_per_worker": 8}), host) is None  # no gain


# -- the worker and the model ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def worker_url(tiny_model: Any) -> Iterator[str]:
    with running_server(create_worker_app(tiny_model, "smollm2-135m")) as url:
        yield url


def _ask(url: str, **extra: object) -> httpx.Response:
    body = {"messages": QUESTION, "max_tokens": 4, **extra}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)


def _threads(url: str) -> int:
    return int(httpx.get(f"{url}/healthz", timeout=10).json()["threads"])


@needs_two_cores
def test_the_worker_decodes_with_the_hint_and_without_one_with_its_start_up_threads(
    worker_url: str, tiny_model: Any
) -> None:
    start_up = tiny_model.startup_threads[0]
    hint = 2 if start_up != 2 else 1
    assert _ask(worker_url, n_threads=hint).status_code == 200
    assert _threads(worker_url) == tiny_model.n_threads == hint  # llama.cpp's own count
    assert _ask(worker_url).status_code == 200  # a caller that knows nothing of threads
    assert _threads(worker_url) == tiny_model.n_threads == start_up
    assert tiny_model.n_threads_batch >= start_up
    assert _ask(worker_url, n_threads=10_000).status_code == 200  # capped at the cores it may use
    assert tiny_model.n_threads == CORES
    assert _ask(worker_url, n_threads=0).status_code == 400


# -- the pool, live ------------------------------------------------------------------------------------
@pytest.fixture
def make_pool(tiny_model_path: Path, tmp_path: Path) -> Iterator[Callable[..., WorkerPool]]:
    pools: list[WorkerPool] = []

    def make(max_queue_wait_s: float | None = None, **overrides: object) -> WorkerPool:
        settings = PoolSettings(
            **{
                "min_workers": 2,
                "max_workers": 2,
                "threads_per_worker": 1,
                "tick_s": 0.2,
                "health_interval_s": 0.5,
                **overrides,
            }
        )
        pool = WorkerPool(
            tiny_model_path, settings, n_ctx=1024, log_dir=tmp_path, max_queue_wait_s=max_queue_wait_s
        ).start()
        pools.append(pool)
        pool.wait_ready(2, timeout_s=90)
        return pool

    yield make
    for pool in pools:
        pool.stop()


def _spy(pool: WorkerPool) -> list[int | None]:
    """Record the hint the pool gives each request."""
    hints: list[int | None] = []
    decide = pool.request_threads

    def recording(lease: Lease) -> int | None:
        hints.append(decide(lease))
        return hints[-1]

    pool.request_threads = recording  # type: ignore[method-assign]
    return hints


@needs_two_cores
def test_a_lone_request_gets_the_cores_and_a_concurrent_one_a_workers_share(
    make_pool: Callable[..., WorkerPool],
) -> None:
    pool = make_pool(lone_request_threads=None)
    hints = _spy(pool)
    backend = PoolBackend(pool)
    assert backend.chat(QUESTION, max_tokens=8).completion_tokens > 0
    assert hints == [CORES]
    assert pool_status(pool)["threads"] == {"lone_request": CORES, "per_worker": 1}
    served = next(w for w in pool.workers() if _threads(w.url) == CORES)  # the context reports it
    other = next(w for w in pool.workers() if w is not served)
    assert _threads(other.url) == 1
    # Another request in flight on the other worker: the same conversation (affinity) goes back to
    # ``served``, not alone any more, and sets that worker back to its share.
    held = pool.acquire(time.monotonic() + 10, avoid=served)
    assert held.worker is other
    try:
        backend.chat(QUESTION, max_tokens=8)
    finally:
        pool.dispatcher.release(held)
    assert hints[-1] == 1 and _threads(served.url) == 1
    backend.close()


@needs_two_cores
def test_two_admitted_requests_get_a_worker_and_its_share_each(make_pool: Callable[..., WorkerPool]) -> None:
    pool = make_pool(max_queue_wait_s=60.0, lone_request_threads=None)
    for worker in pool.workers():  # both start from all cores, so the share below is the hint's doing
        assert _ask(worker.url, n_threads=CORES).status_code == 200
    hints = _spy(pool)
    backend = PoolBackend(pool)
    tickets = [pool.admit(local=True) for _ in range(2)]  # what the API does as two requests arrive
    gate = threading.Barrier(2)

    def client(ticket: Any) -> int:
        gate.wait()
        return run_holding(ticket, backend.chat, QUESTION, 8).completion_tokens

    with ThreadPoolExecutor(max_workers=2) as clients:
        assert all(list(clients.map(client, tickets)))
    assert hints == [1, 1]
    assert [_threads(w.url) for w in pool.workers()] == [1, 1]
    backend.close()


def test_turned_off_no_hint_is_sent_and_workers_keep_their_start_up_threads(
    make_pool: Callable[..., WorkerPool],
) -> None:
    pool = make_pool(lone_request_threads=0)
    assert pool.lone_threads is None and pool_status(pool)["threads"]["lone_request"] is None
    hints = _spy(pool)
    backend = PoolBackend(pool)
    assert backend.chat(QUESTION, max_tokens=8).completion_tokens > 0
    assert hints == [None]
    assert [_threads(w.url) for w in pool.workers()] == [1, 1]
    backend.close()
