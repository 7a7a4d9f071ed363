"""What every pool shares, whether it spawns its workers (``WorkerPool``) or is given them (``RemotePool``).

``PoolBackend``, ``pool_status`` and the service's readiness check see a pool only through
:class:`PoolBase`: a dispatcher over worker handles (:class:`PoolWorker`), ``acquire``/``report_failure``,
``signals()``/``workers()``, and a control loop that calls ``tick()`` every ``pool.tick_s``. The API admits
its requests with ``admit``/``dismiss`` (load shedding: shedding.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Protocol

import httpx

from assistant.errors import PennyError
from assistant.local.pool.dispatcher import Dispatcher, Lease, QueueTimeout
from assistant.local.pool.policy import PoolSignals
from assistant.local.pool.shedding import QueueTicket, current_ticket, retry_after_s
from assistant.settings import PoolSettings

log = logging.getLogger("penny.pool")

MAX_EVENTS = 200
HEALTH_PATHS = ("/healthz", "/v1/models")  # Penny's worker; llama-server and vLLM


class _QuietHealthChecks(logging.Filter):
    """Drops httpx's INFO line of a passing health check, which every worker gets every
    ``pool.health_interval_s`` and would drown the service's log; a failing check is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 4 and str(record.msg).startswith("HTTP Request"):
            method, url, _, status = args[:4]
            return not (method == "GET" and status == 200 and getattr(url, "path", "") in HEALTH_PATHS)
        return True


def _quiet_health_checks() -> None:
    httpx_log = logging.getLogger("httpx")
    if not any(isinstance(f, _QuietHealthChecks) for f in httpx_log.filters):
        httpx_log.addFilter(_QuietHealthChecks())


class PoolError(PennyError, RuntimeError):
    """The local tier cannot answer this request; ``status_code`` is what an HTTP API should return."""

    status_code = 503


class PoolUnavailable(PoolError):
    """No worker could serve the request (crashed twice, or none could be started)."""


class PoolDeadlineExceeded(PoolError):
    """The request did not finish within ``pool.request_deadline_s``."""

    status_code = 504


class PoolOverloaded(PoolError):
    """The local tier could not start this request within ``server.max_queue_wait_s``: refused before it
    started (HTTP 503 with Retry-After) rather than left to time out in the queue (shedding.py)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class WorkerState(StrEnum):
    STARTING = "starting"  # spawned and loading, or (remote) not health-checked yet
    READY = "ready"
    DRAINING = "draining"
    UNHEALTHY = "unhealthy"  # remote only: failed its last health check, gets no requests until it passes
    STOPPED = "stopped"


class PoolWorker(Protocol):
    """A worker as the dispatcher, the backend and ``pool_status`` see it: an OpenAI endpoint with a state."""

    id: int
    state: WorkerState
    rss_bytes: int  # 0 = not measured (remote workers)
    model: str | None  # sent as the request's "model" (vLLM checks it); None = omit

    @property
    def url(self) -> str: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def cold_start_s(self) -> float | None: ...


@dataclass(frozen=True)
class ScaleEvent:
    at: float  # wall-clock time.time()
    direction: str  # up | down | replace (WorkerPool); ready | unhealthy (RemotePool)
    workers: int  # starting + ready after the event
    reason: str


@dataclass
class _Timings:
    """Recent queue waits and service times, for ``pool_status()``'s percentiles."""

    queue_wait_s: deque[float] = field(default_factory=lambda: deque(maxlen=1000))
    service_s: deque[float] = field(default_factory=lambda: deque(maxlen=1000))


class PoolBase:
    """The dispatcher, timings, events and control loop; subclasses own the workers and ``tick()``."""

    KIND: ClassVar[str] = ""  # "local" (spawned processes) or "remote" (given URLs)
    STATES: ClassVar[tuple[WorkerState, ...]] = ()  # the live states ``pool_status`` counts
    SATURATED_HINT: ClassVar[str] = "retry later"

    def __init__(
        self,
        settings: PoolSettings,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_queue_wait_s: float | None = None,
    ) -> None:
        """``max_queue_wait_s`` (``server.max_queue_wait_s``): the longest a service request may wait for a
        slot before it is shed; None never sheds."""
        self.settings = settings
        self.clock = clock
        self.max_queue_wait_s = max_queue_wait_s
        self.shed: Counter[str] = Counter()  # requests refused: "estimate" at once, "queue_wait" after it
        self.timings = _Timings()
        self.observers: list[Callable[[float, float], None]] = []
        self.dispatcher = Dispatcher(on_done=self._on_request_done)
        self.events: deque[ScaleEvent] = deque(maxlen=MAX_EVENTS)
        self.event_counts: Counter[str] = Counter()
        self.last_decision_reason = ""
        self.lone_threads: int | None = None  # threads by load: a lone request's threads (None: off)
        self._workers: list[PoolWorker] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = httpx.Client(timeout=httpx.Timeout(2.0, connect=1.0))  # health checks
        _quiet_health_checks()

    # -- what subclasses provide -----------------------------------------------------------------------
    def tick(self) -> None:
        """One control step (health checks, and for a local pool the autoscaler). Public for tests."""
        raise NotImplementedError

    def signals(self) -> PoolSignals:
        raise NotImplementedError

    def desired_workers(self, signals: PoolSignals) -> int:
        raise NotImplementedError

    def report_failure(self, worker: PoolWorker, error: BaseException) -> None:
        """A request to ``worker`` failed at the transport level or with a 5xx."""
        raise NotImplementedError

    def request_threads(self, lease: Lease) -> int | None:
        """The llama.cpp threads to ask ``lease``'s worker to decode with; None sends no hint (the worker
        keeps its start-up threads). A remote pool sends none: the API's cores say nothing of a pod's."""
        return None

    def _release(self) -> None:
        """Free what the pool holds once its control loop has stopped (a local pool stops its processes)."""

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> PoolBase:
        self.tick()  # the first step at once: spawn the floor, or learn which URLs are up
        self._thread = threading.Thread(target=self._run, name="penny-pool-control", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        self._release()
        self._http.close()

    def __enter__(self) -> PoolBase:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.tick_s):
            try:
                self.tick()
            except Exception:  # the loop must outlive any one bad tick
                log.exception("pool control tick failed")

    def wait_ready(self, count: int = 1, timeout_s: float = 120.0) -> None:
        """Block until ``count`` workers are ready (start-up, tests, benchmarks)."""
        deadline = time.monotonic() + timeout_s
        while len(self.workers(WorkerState.READY)) < count:
            if time.monotonic() > deadline:
                raise PoolUnavailable(f"{count} worker(s) not ready within {timeout_s:.0f} s")
            time.sleep(0.05)

    # -- queries ---------------------------------------------------------------------------------------
    def workers(self, *states: WorkerState) -> list[PoolWorker]:
        with self._lock:
            return [w for w in self._workers if not states or w.state in states]

    # -- requests --------------------------------------------------------------------------------------
    def mean_service_s(self) -> float:
        """Mean of the last 100 service times (0.0 before any): the policy's and the shedding's estimate."""
        return _recent_mean(self.timings.service_s, 100)

    def expected_wait_s(self) -> float | None:
        """How long a request arriving now would wait for a slot (None: not known yet)."""
        return self.dispatcher.expected_wait_s(self.mean_service_s())

    def admit(self, *, local: bool) -> QueueTicket:
        """A ticket for one service request, before it starts; ``local``: it will run the local model, so
        it is refused with :class:`PoolOverloaded` now if it could not start in time (shedding.py)."""
        ticket = QueueTicket()
        if local and self.max_queue_wait_s is not None:
            self._count(ticket, self.max_queue_wait_s)
        return ticket

    def dismiss(self, ticket: QueueTicket) -> None:
        """The request is over: if it never reached the queue, it is no longer work on its way."""
        if ticket.counted:
            ticket.counted = False
            self.dispatcher.dismiss()

    def _count(self, ticket: QueueTicket, max_wait_s: float) -> None:
        wait = self.dispatcher.admit(max_wait_s, self.mean_service_s())
        if wait is not None:
            raise self._overloaded("estimate", wait, max_wait_s)
        ticket.counted = True

    def _overloaded(self, reason: str, wait_s: float | None, max_wait_s: float) -> PoolOverloaded:
        self.shed[reason] += 1
        retry = retry_after_s(wait_s, max_wait_s)
        expected = "" if wait_s is None else f" (expected wait {wait_s:.0f} s)"
        return PoolOverloaded(
            f"the local tier is overloaded: this request could not start within {max_wait_s:g} s"
            f"{expected}; retry after {retry} s",
            retry_after_s=retry,
        )

    def acquire(
        self, deadline: float, avoid: Hashable | None = None, affinity: Hashable | None = None
    ) -> Lease:
        """A slot on a ready worker before ``deadline`` (monotonic), or :class:`PoolDeadlineExceeded`.

        ``avoid`` (the worker a retry just failed on) is used only when no other worker has a free slot;
        ``affinity`` prefers the worker that last served that key (see :class:`Dispatcher`). A service
        request that has not started yet (its ticket is current) waits at most ``max_queue_wait_s``, and
        is refused at once when it was not admitted as local and its expected wait is over that
        (:class:`PoolOverloaded`).
        """
        ticket = current_ticket()
        bound = self.max_queue_wait_s
        shedding = bound is not None and ticket is not None and not ticket.started
        timeout_s = max(0.0, deadline - time.monotonic())
        try:
            if shedding:
                assert ticket is not None and bound is not None
                if not ticket.counted:
                    self._count(ticket, bound)
                ticket.counted = False  # the dispatcher moves it from pending to the queue
                try:
                    lease = self.dispatcher.acquire(
                        min(timeout_s, bound), avoid=avoid, affinity=affinity, admitted=True
                    )
                except QueueTimeout:
                    if bound < timeout_s:
                        raise self._overloaded("queue_wait", self.expected_wait_s(), bound) from None
                    raise
            else:
                lease = self.dispatcher.acquire(timeout_s, avoid=avoid, affinity=affinity)
        except QueueTimeout as exc:
            raise PoolDeadlineExceeded(f"the local tier is saturated: {exc}; {self.SATURATED_HINT}") from exc
        if ticket is not None:
            ticket.started = True
        return lease

    def _on_request_done(self, queued_s: float, service_s: float) -> None:
        self.timings.queue_wait_s.append(queued_s)
        self.timings.service_s.append(service_s)
        for observer in self.observers:
            observer(queued_s, service_s)

    def _event(self, direction: str, reason: str) -> None:
        workers = len(self.workers(WorkerState.STARTING, WorkerState.READY))
        self.events.append(ScaleEvent(time.time(), direction, workers, reason))
        self.event_counts[direction] += 1
        log.info("pool %s -> %d workers: %s", direction, workers, reason)


def _recent_mean(values: Sequence[float], last: int) -> float:
    """Mean of the last ``last`` values (0.0 when empty)."""
    recent = list(values)[-last:]
    return sum(recent) / len(recent) if recent else 0.0
