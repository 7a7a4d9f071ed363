"""``RemotePool``: the local tier on fixed OpenAI-compatible URLs that something else runs and scales.

In Kubernetes the worker Deployment is scaled by KEDA or an HPA (deploy/kubernetes/), so the API must not
spawn processes or autoscale: it only spreads requests over ``pool.remote_urls`` (Penny's own worker,
llama.cpp's ``llama-server`` or vLLM), ``pool.remote_slots_per_url`` at a time per URL, and keeps the ones
that are down out of rotation.

Each URL is health-checked every ``pool.health_interval_s``: ``GET /healthz`` (Penny's worker), or
``GET /v1/models`` where ``/healthz`` is 404 (llama-server, vLLM). A URL starts ``starting`` (not checked
yet), is ``ready`` while its check passes and ``unhealthy`` from the first check that fails until one
passes again; only ready URLs get requests. A request that fails on a URL checks it at once, so a dead pod
leaves rotation before the retry is dispatched. Memory is the pods' business here: it reads as 0.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import httpx

from assistant.local.pool.base import HEALTH_PATHS, PoolBase, PoolWorker, WorkerState
from assistant.local.pool.policy import PoolSignals
from assistant.settings import PoolSettings

log = logging.getLogger("penny.pool")


@dataclass(eq=False)
class RemoteWorker:
    """One URL. Identity-hashed so the dispatcher can use it as a handle."""

    id: int
    url: str
    state: WorkerState = WorkerState.STARTING
    rss_bytes: int = 0  # unknown: a remote worker's memory is on its own /metrics
    model: str | None = None  # learned from the health answer
    health_path: str | None = None  # the first of HEALTH_PATHS that answered
    last_health: float = 0.0
    last_problem: str = ""

    @property
    def pid(self) -> int | None:
        return None

    @property
    def cold_start_s(self) -> float | None:
        return None


class RemotePool(PoolBase):
    """Requests to fixed URLs: no processes, no autoscaling; health checks and retry like ``WorkerPool``."""

    KIND = "remote"
    STATES = (WorkerState.STARTING, WorkerState.READY, WorkerState.UNHEALTHY)
    SATURATED_HINT = "retry later, or add workers (replicas, pool.remote_urls, pool.remote_slots_per_url)"

    def __init__(
        self,
        urls: Sequence[str],
        settings: PoolSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_queue_wait_s: float | None = None,
    ) -> None:
        super().__init__(settings, clock, max_queue_wait_s=max_queue_wait_s)
        unique = list(dict.fromkeys(url.rstrip("/") for url in urls))
        if not unique:
            raise ValueError("a RemotePool needs at least one URL (pool.remote_urls)")
        self._workers = [RemoteWorker(i, url) for i, url in enumerate(unique, start=1)]
        self.last_decision_reason = f"{len(unique)} fixed remote URL(s); scaling is external (KEDA/HPA)"

    def workers(self, *states: WorkerState) -> list[RemoteWorker]:
        return cast(list[RemoteWorker], super().workers(*states))

    def wait_ready(self, count: int = 1, timeout_s: float = 120.0) -> None:
        super().wait_ready(min(count, len(self._workers)), timeout_s)

    def signals(self) -> PoolSignals:
        by_state = Counter(w.state for w in self.workers())
        return PoolSignals(
            in_flight=self.dispatcher.in_flight,
            queued=self.dispatcher.queued,
            workers_starting=by_state[WorkerState.STARTING],
            workers_ready=by_state[WorkerState.READY],
        )

    def desired_workers(self, signals: PoolSignals) -> int:
        return len(self._workers)  # fixed: the external autoscaler decides how many pods stand behind them

    # -- health ----------------------------------------------------------------------------------------
    def tick(self) -> None:
        """Check each URL that is due (a not-yet-checked one at once)."""
        now = self.clock()
        for worker in self.workers():
            due = now - worker.last_health >= self.settings.health_interval_s
            if worker.state is WorkerState.STARTING or due:
                self._check(worker)

    def report_failure(self, worker: PoolWorker, error: BaseException) -> None:
        """Check the URL now: a dead one leaves rotation before the retry, one that still answers stays.

        A single Service URL in front of many pods stays ready when one pod died, so the retry goes there.
        """
        assert isinstance(worker, RemoteWorker)
        log.warning("request to %s failed: %s: %s", worker.url, type(error).__name__, error)
        self._check(worker)

    def _check(self, worker: RemoteWorker) -> None:
        worker.last_health = self.clock()
        problem = self._probe(worker)
        with self._lock:
            if problem is None and worker.state is not WorkerState.READY:
                worker.state = WorkerState.READY
                self.dispatcher.add_worker(worker, self.settings.remote_slots_per_url)
                self._event("ready", f"{worker.url} answered {worker.health_path}")
            elif problem is not None and worker.state is not WorkerState.UNHEALTHY:
                self.dispatcher.withdraw_worker(worker)
                worker.state = WorkerState.UNHEALTHY
                self._event("unhealthy", f"{worker.url}: {problem}")
            worker.last_problem = problem or ""

    def _probe(self, worker: RemoteWorker) -> str | None:
        """None if ``worker`` is healthy, else what is wrong."""
        for path in (worker.health_path,) if worker.health_path else HEALTH_PATHS:
            try:
                response = self._http.get(f"{worker.url}{path}")
            except httpx.HTTPError as exc:
                return f"GET {path} failed: {type(exc).__name__}"
            if response.status_code == 404 and worker.health_path is None:
                continue  # no /healthz here: try /v1/models
            if response.status_code != 200:
                return f"GET {path} answered {response.status_code}"
            worker.health_path = path
            worker.model = _served_model(response) or worker.model
            return None
        return f"none of {', '.join(HEALTH_PATHS)} exists"


def _served_model(response: httpx.Response) -> str | None:
    """The model name from Penny's ``/healthz`` (``model``) or an OpenAI ``/v1/models`` (``data[0].id``)."""
    try:
        body: Any = response.json()
        if "data" in body:
            return str(body["data"][0]["id"])
        return str(body["model"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
