"""The worker pool: spawns worker processes, health-checks them, replaces crashed ones, and autoscales.

A control thread ticks every ``pool.tick_s``: it moves starting workers to ready once ``/healthz``
answers, notices dead ones (process exit, or three failed health checks), stops drained ones, measures
memory, and applies :class:`~.policy.AutoscalePolicy`. Scale-down withdraws a worker from the
dispatcher and stops it only when its last in-flight request has finished, so no request is killed.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx

from assistant.local.pool.base import (
    PoolBase,
    PoolDeadlineExceeded,
    PoolError,
    PoolUnavailable,
    PoolWorker,
    ScaleEvent,
    WorkerState,
)
from assistant.local.pool.dispatcher import Lease
from assistant.local.pool.memory import process_rss_bytes
from assistant.local.pool.policy import AutoscalePolicy, PoolSignals
from assistant.local.pool.sizing import Host, lone_threads, sized
from assistant.settings import PoolSettings

__all__ = [
    "PoolDeadlineExceeded",
    "PoolError",
    "PoolUnavailable",
    "ScaleEvent",
    "Worker",
    "WorkerPool",
    "WorkerState",
]

log = logging.getLogger("penny.pool")

HEALTH_FAILURES_BEFORE_REPLACE = 3


@dataclass(eq=False)
class Worker:
    """One worker process. Identity-hashed so the dispatcher can use it as a handle."""

    id: int
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    spawned_at: float
    state: WorkerState = WorkerState.STARTING
    ready_at: float | None = None
    stopped_at: float | None = None
    rss_bytes: int = 0
    health_failures: int = 0
    last_health: float = 0.0
    model: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def cold_start_s(self) -> float | None:
        return None if self.ready_at is None else self.ready_at - self.spawned_at

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WorkerPool(PoolBase):
    """Local worker processes for one GGUF model. Use as a context manager or call start()/stop()."""

    KIND = "local"
    STATES = (WorkerState.STARTING, WorkerState.READY, WorkerState.DRAINING)
    SATURATED_HINT = "retry later or raise pool.max_workers"

    def __init__(
        self,
        model_path: Path,
        settings: PoolSettings,
        *,
        n_ctx: int = 4096,
        model_name: str | None = None,
        log_dir: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_queue_wait_s: float | None = None,
        processes: int = 1,
    ) -> None:
        """``processes``: the API processes that each run such a pool on this host (``server.workers``)."""
        # max_workers None: as many as this host holds
        super().__init__(sized(settings, processes=processes), clock, max_queue_wait_s=max_queue_wait_s)
        self.lone_threads = lone_threads(self.settings, Host.measure(), processes)  # None: off
        self.model_path = Path(model_path)
        self.n_ctx = n_ctx
        self.model_name = model_name or self.model_path.stem
        self.policy = AutoscalePolicy(self.settings)
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="penny-pool-"))
        self._next_id = 1
        self._spawn_backoff_until = 0.0
        self._failed_starts = 0

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> WorkerPool:
        if not self.model_path.is_file():
            raise FileNotFoundError(f"model file {self.model_path} not found; check models.local")
        super().start()  # the first tick spawns the floor at once
        return self

    def __enter__(self) -> WorkerPool:
        return self.start()

    def _release(self) -> None:
        """Stop every worker: all are signalled first, so shutdown waits for the slowest, not the sum."""
        workers = [w for w in self.workers() if w.state is not WorkerState.STOPPED]
        for worker in workers:
            self.dispatcher.withdraw_worker(worker)
            if worker.alive:
                worker.process.send_signal(signal.SIGTERM)
        for worker in workers:
            self._terminate(worker, "pool stopped", signalled=True)

    # -- queries ---------------------------------------------------------------------------------------
    def request_threads(self, lease: Lease) -> int | None:
        """Threads by load: all the cores for a request that started alone, a worker's share otherwise;
        no hint at all when it is off, so the workers keep their start-up threads."""
        if self.lone_threads is None:
            return None
        return self.lone_threads if lease.alone else self.settings.threads_per_worker

    def workers(self, *states: WorkerState) -> list[Worker]:
        return cast(list[Worker], super().workers(*states))

    def desired_workers(self, signals: PoolSignals) -> int:
        return self.policy.desired(signals)

    def signals(self) -> PoolSignals:
        with self._lock:
            live = [w for w in self.workers() if w.state is not WorkerState.STOPPED]
            by_state = Counter(w.state for w in live)
            measured = max((w.rss_bytes for w in live if w.ready_at), default=0)
            # A starting worker is still loading: count it at full size so the guard is not fooled.
            projected = measured or self.settings.worker_memory_estimate_bytes
            return PoolSignals(
                in_flight=self.dispatcher.in_flight,
                queued=self.dispatcher.queued,
                workers_starting=by_state[WorkerState.STARTING],
                workers_ready=by_state[WorkerState.READY],
                workers_draining=by_state[WorkerState.DRAINING],
                memory_bytes=sum(
                    max(w.rss_bytes, projected) if w.state is WorkerState.STARTING else w.rss_bytes
                    for w in live
                ),
                worker_memory_bytes=measured,
                arrivals_total=self.dispatcher.arrivals_total,
                mean_service_s=self.mean_service_s(),
            )

    # -- the control loop ------------------------------------------------------------------------------
    def tick(self) -> None:
        """One control step: health, memory, drains, then the policy. Public so tests can drive it."""
        now = self.clock()
        for worker in self.workers(WorkerState.STARTING, WorkerState.READY, WorkerState.DRAINING):
            self._check(worker, now)
        # Deciding and spawning hold the lock that ``_lost`` holds while it swaps a dead worker for its
        # replacement, so the policy never counts the gap between the two and starts a second one.
        with self._lock:
            decision = self.policy.decide(self.signals(), now)
            self.last_decision_reason = decision.reason
            if decision.delta > 0 and now >= self._spawn_backoff_until:
                for _ in range(decision.delta):
                    self._spawn()
                self._event("up", decision.reason)
        if decision.delta < 0:
            self._drain_one(decision.reason)

    def _check(self, worker: Worker, now: float) -> None:
        if not worker.alive:
            self._lost(worker, f"process exited with code {worker.process.returncode}")
            return
        worker.rss_bytes = process_rss_bytes(worker.process.pid)
        if worker.state is WorkerState.DRAINING:
            if self.dispatcher.in_flight_on(worker) == 0:
                self._terminate(worker, "drained")
            return
        if worker.state is WorkerState.STARTING:
            if self._healthy(worker):
                self._ready(worker)
            elif now - worker.spawned_at > self.settings.startup_timeout_s:
                self._lost(worker, f"not ready within {self.settings.startup_timeout_s:.0f} s")
            return
        if now - worker.last_health >= self.settings.health_interval_s:
            worker.last_health = now
            if self._healthy(worker):
                worker.health_failures = 0
            else:
                worker.health_failures += 1
                if worker.health_failures >= HEALTH_FAILURES_BEFORE_REPLACE:
                    self._lost(worker, "failed health checks")

    def _healthy(self, worker: Worker) -> bool:
        try:
            return self._http.get(f"{worker.url}/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    # -- transitions -----------------------------------------------------------------------------------
    def _spawn(self) -> Worker:
        port = _free_port()
        with self._lock:
            worker_id = self._next_id
            self._next_id += 1
        log_path = self.log_dir / f"worker-{worker_id}.log"
        command = [
            sys.executable,
            "-m",
            "assistant.local.pool.worker",
            "--model",
            str(self.model_path),
            "--port",
            str(port),
            "--threads",
            str(self.settings.threads_per_worker),
            "--n-ctx",
            str(self.n_ctx),
            "--name",
            self.model_name,
            "--parent-pid",
            str(os.getpid()),
        ]
        with log_path.open("ab") as log_file:
            # A process group of its own: Ctrl-C in a terminal signals the whole foreground group, and a
            # worker that shut itself down would look crashed and be replaced while the API drains. The API
            # stops its workers itself; a worker whose API died exits by itself (--parent-pid). The same
            # session, so the workers share the API's CPU share under the scheduler's autogroups.
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log_file, process_group=0)
        worker = Worker(worker_id, port, process, log_path, spawned_at=self.clock(), model=self.model_name)
        with self._lock:
            self._workers.append(worker)
        log.info("worker %d starting on port %d (pid %d)", worker.id, port, process.pid)
        return worker

    def _ready(self, worker: Worker) -> None:
        worker.ready_at = self.clock()
        worker.state = WorkerState.READY
        self._failed_starts = 0
        self.dispatcher.add_worker(worker, self.settings.slots_per_worker)
        log.info("worker %d ready after %.2f s", worker.id, worker.cold_start_s or 0.0)

    def _drain_one(self, reason: str) -> None:
        with self._lock:
            candidates = self.workers(WorkerState.STARTING) or self.workers(WorkerState.READY)
            if not candidates:
                return
            # Newest first, idle before busy: the cheapest worker to give up.
            worker = min(reversed(candidates), key=self.dispatcher.in_flight_on)
        self.drain(worker, reason)

    def drain(self, worker: Worker, reason: str = "drain requested") -> None:
        """Take ``worker`` out of rotation; it stops once its in-flight requests have finished."""
        with self._lock:
            if worker.state in (WorkerState.DRAINING, WorkerState.STOPPED):
                return
            self.dispatcher.withdraw_worker(worker)
            worker.state = WorkerState.DRAINING
        self._event("down", reason)
        if self.dispatcher.in_flight_on(worker) == 0:
            self._terminate(worker, "drained")

    def _terminate(self, worker: Worker, reason: str, signalled: bool = False) -> None:
        self.dispatcher.withdraw_worker(worker)
        worker.state = WorkerState.STOPPED
        worker.stopped_at = self.clock()
        if worker.alive:
            if not signalled:  # a second SIGTERM would make uvicorn skip its graceful shutdown
                worker.process.send_signal(signal.SIGTERM)
            try:
                worker.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(timeout=5)
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
        log.info("worker %d stopped: %s", worker.id, reason)

    def _lost(self, worker: Worker, reason: str) -> None:
        """A worker died or stopped answering: retire it and start a replacement at once."""
        with self._lock:
            if worker.state is WorkerState.STOPPED:
                return
            was = worker.state
            self.dispatcher.withdraw_worker(worker)
            worker.state = WorkerState.STOPPED
        if worker.alive:
            worker.process.kill()
            worker.process.wait(timeout=5)
        worker.stopped_at = self.clock()
        log.warning("worker %d lost (%s); see %s", worker.id, reason, worker.log_path)
        with self._lock:  # one step: the control loop never sees the pool without both
            if worker in self._workers:
                self._workers.remove(worker)
            if was is WorkerState.READY and not self._stop.is_set():  # a stopping pool replaces nothing
                self._spawn()
                self._event("replace", f"worker {worker.id} {reason}")
                return
        if was is WorkerState.STARTING:
            # A worker that cannot start will not start next time either: back off instead of looping.
            self._failed_starts += 1
            self._spawn_backoff_until = self.clock() + min(60.0, 2.0**self._failed_starts)
            self._event("replace", f"worker {worker.id} failed to start: {reason}")

    def report_failure(self, worker: PoolWorker, error: BaseException) -> None:
        """A request to ``worker`` failed at the transport level: retire it if it is dead or broken."""
        assert isinstance(worker, Worker)
        if not worker.alive or isinstance(error, httpx.ConnectError):
            self._lost(worker, f"request failed: {type(error).__name__}")
            return
        # Alive but the connection broke mid-response: check it now rather than at the next health tick.
        if not self._healthy(worker):
            self._lost(worker, f"request failed and health check failed: {type(error).__name__}")
