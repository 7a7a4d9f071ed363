"""The pool live on localhost: real worker processes, real HTTP, real scaling, real SIGKILL."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from assistant.local.backend import Generation
from assistant.local.pool import PoolBackend, PoolDeadlineExceeded, WorkerPool, WorkerState, pool_status
from assistant.settings import PoolSettings
from tests.support.servers import wait_for

QUESTION = [{"role": "user", "content": "Write one sentence about the sea."}]


def live(pool: WorkerPool, *states: WorkerState) -> int:
    return len(pool.workers(*(states or (WorkerState.STARTING, WorkerState.READY))))


@pytest.fixture
def make_pool(tiny_model_path: Path, tmp_path: Path) -> Iterator[Callable[..., WorkerPool]]:
    pools: list[WorkerPool] = []

    def make(**overrides: object) -> WorkerPool:
        settings = PoolSettings(
            **{
                "min_workers": 1,
                "max_workers": 2,
                "threads_per_worker": 1,
                "scale_up_delay_s": 0.5,
                "scale_down_delay_s": 2.0,
                "queue_threshold": 1,
                "tick_s": 0.2,
                "health_interval_s": 0.5,
                "request_deadline_s": 120.0,
                **overrides,
            }
        )
        pool = WorkerPool(tiny_model_path, settings, n_ctx=1024, log_dir=tmp_path).start()
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.stop()
        assert not [w for w in pool.workers() if w.alive], "a worker outlived its pool"


def test_load_scales_up_and_quiet_scales_back_down(make_pool: Callable[..., WorkerPool]) -> None:
    pool = make_pool()
    pool.wait_ready(1, timeout_s=60)
    # A group of its own: Ctrl-C in a terminal signals the API's process group, never the workers directly.
    assert os.getpgid(pool.workers()[0].process.pid) != os.getpgid(0)
    backend = PoolBackend(pool)
    # 8 requests from 4 clients on 1 single-slot worker: 3 wait in the queue, which is the scale-up signal.
    with ThreadPoolExecutor(max_workers=4) as clients:
        answers = list(clients.map(lambda _: backend.chat(QUESTION, max_tokens=16), range(8)))
    assert all(isinstance(a, Generation) and a.completion_tokens > 0 for a in answers)
    assert pool.event_counts["up"] >= 2  # the floor at start-up, then the load
    assert max(e.workers for e in pool.events) == 2
    # Load stopped: after the 2 s stable window one worker drains and stops; min_workers keeps the other.
    wait_for(lambda: live(pool) == 1 and not pool.workers(WorkerState.DRAINING), 30, "scale-down to 1")
    assert pool.event_counts["down"] == 1
    status = pool_status(pool)
    assert status["requests"]["recent"] == 8
    assert status["workers_by_state"] == {"starting": 0, "ready": 1, "draining": 0}
    # What the offered-load term sees: every request counted on arrival, the mean of measured service times.
    signals = pool.signals()
    assert signals.arrivals_total == 8
    assert signals.mean_service_s == pytest.approx(sum(pool.timings.service_s) / 8)
    assert signals.mean_service_s > 0


def test_a_worker_killed_mid_request_loses_nothing(make_pool: Callable[..., WorkerPool]) -> None:
    pool = make_pool(min_workers=2, scale_down_delay_s=600)
    pool.wait_ready(2, timeout_s=60)
    backend = PoolBackend(pool)
    expected = backend.chat(QUESTION, max_tokens=24)

    stream = backend.stream_chat(QUESTION, max_tokens=24)
    first = next(stream)
    assert isinstance(first, str)
    victim = next(w for w in pool.workers(WorkerState.READY) if pool.dispatcher.in_flight_on(w))
    os.kill(victim.process.pid, signal.SIGKILL)
    rest = list(stream)  # retried on the other worker; the text already sent is not repeated
    final = rest[-1]
    assert isinstance(final, Generation)
    assert first + "".join(x for x in rest[:-1] if isinstance(x, str)) == final.text == expected.text
    assert pool.event_counts["replace"] == 1
    wait_for(lambda: live(pool, WorkerState.READY) == 2, 60, "the replacement worker")
    assert victim not in pool.workers()


def test_scale_down_drains_a_busy_worker_without_killing_its_request(
    make_pool: Callable[..., WorkerPool],
) -> None:
    pool = make_pool(min_workers=2, scale_down_delay_s=600)
    pool.wait_ready(2, timeout_s=60)
    backend = PoolBackend(pool)
    stream = backend.stream_chat(QUESTION, max_tokens=24)
    first = next(stream)
    busy = next(w for w in pool.workers(WorkerState.READY) if pool.dispatcher.in_flight_on(w))
    pool.drain(busy, "test")
    assert busy.state is WorkerState.DRAINING and busy.alive
    time.sleep(1.0)  # several control ticks pass while the request is still running
    assert busy.alive
    rest = list(stream)
    final = rest[-1]
    assert isinstance(final, Generation) and final.text.startswith(first.strip())
    assert final.completion_tokens > 0 and final.finish_reason in ("stop", "length")
    wait_for(lambda: busy.state is WorkerState.STOPPED and not busy.alive, 10, "the drained worker to stop")
    assert pool.event_counts["replace"] == 0


def test_a_request_past_its_deadline_fails_fast_and_frees_its_slot(
    make_pool: Callable[..., WorkerPool],
) -> None:
    pool = make_pool(max_workers=1, request_deadline_s=0.5)
    pool.wait_ready(1, timeout_s=60)
    backend = PoolBackend(pool)
    started = time.monotonic()
    with pytest.raises(PoolDeadlineExceeded, match="within"):
        backend.chat([{"role": "user", "content": "Count from 1 to 500."}], max_tokens=900)
    assert time.monotonic() - started < 5
    assert pool.dispatcher.in_flight == 0
    # The worker stops generating once the connection closes (900 tokens would take far longer).
    worker = pool.workers(WorkerState.READY)[0]
    wait_for(lambda: httpx.get(f"{worker.url}/healthz").json()["slots_busy"] == 0, 10, "the slot to free")
