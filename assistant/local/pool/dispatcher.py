"""The dispatcher: a first-come-first-served queue of requests waiting for a free slot on some worker.

Thread-safe rather than asyncio because its callers are synchronous (the cascade runs in the API's worker
threads, the CLI and eval call it directly). It knows nothing about processes or HTTP: workers are opaque
hashable handles with a slot count, added when ready and withdrawn when draining or dead. Each lease
measures its queue wait (the time "waiting for prefill" that the autoscaler tracks) and service time.

Prefix affinity: a request may carry a key (``PoolBackend`` derives it from the leading messages a
conversation's turns share). It goes to the worker that last served that key when that worker has a free
slot, because llama.cpp reuses the KV cache of the prompt prefix it evaluated last; otherwise to the least
loaded worker, as without a key. Affinity never makes a request wait or jump the queue: it only picks among
free slots. The map from key to worker is a bounded LRU and forgets a worker when it is withdrawn.

Load shedding (shedding.py): :meth:`Dispatcher.admit` counts a request that will soon ask for a slot as
pending work, unless its expected wait (:meth:`Dispatcher.expected_wait_s`) is over a bound; an admitted
request's ``acquire`` moves it from pending to the queue under the same lock.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

AFFINITY_KEYS = 4096  # conversations remembered; a forgotten one only loses its cached prefix


class QueueTimeout(TimeoutError):
    """No slot became free before the request's deadline."""


@dataclass
class Lease:
    """One request's hold on one slot of ``worker``."""

    worker: Hashable
    queued_s: float
    started: float = field(default_factory=time.monotonic)
    released: bool = False
    # Nothing else was in flight, queued or admitted when it got its slot: it may use all cores (threads by
    # load, PoolBase.request_threads). Decided once, at the start: a running request is never changed.
    alone: bool = False


class Dispatcher:
    def __init__(
        self, on_done: Callable[[float, float], None] | None = None, affinity_keys: int = AFFINITY_KEYS
    ) -> None:
        self._cond = threading.Condition()
        self._capacity: dict[Hashable, int] = {}  # workers accepting new requests
        self._busy: dict[Hashable, int] = {}  # in-flight per worker, including withdrawn ones
        self._waiting: deque[object] = deque()
        self._on_done = on_done  # (queue wait s, service s) for metrics
        self._arrivals = 0  # requests ever queued: the policy's arrival rate (a retry counts again)
        self._affinity: OrderedDict[Hashable, Hashable] = OrderedDict()  # key -> worker that last served it
        self._affinity_max = affinity_keys
        self._pending = 0  # admitted requests not yet in the queue (still retrieving): work on its way
        self.affinity_hits = 0  # a known key went to its worker
        self.affinity_misses = 0  # a known key's worker was busy (or being avoided): it went elsewhere

    # -- workers ---------------------------------------------------------------------------------------
    def add_worker(self, worker: Hashable, slots: int) -> None:
        with self._cond:
            self._capacity[worker] = slots
            self._busy.setdefault(worker, 0)
            self._cond.notify_all()

    def withdraw_worker(self, worker: Hashable) -> None:
        """Stop giving ``worker`` new requests; its in-flight ones finish (drain) or fail (crash)."""
        with self._cond:
            self._capacity.pop(worker, None)
            if not self._busy.get(worker):
                self._busy.pop(worker, None)
            for key in [k for k, w in self._affinity.items() if w is worker]:
                del self._affinity[key]

    def in_flight_on(self, worker: Hashable) -> int:
        with self._cond:
            return self._busy.get(worker, 0)

    # -- requests --------------------------------------------------------------------------------------
    def admit(self, max_wait_s: float, service_s: float | None) -> float | None:
        """Count a request that will soon ask for a slot as pending work, unless it is expected to wait
        longer than ``max_wait_s`` for one; returns that expected wait when it is refused, else None. An
        unknown wait (no service time measured yet, no slots) admits."""
        with self._cond:
            wait = self._expected_wait(service_s)
            if wait is not None and wait > max_wait_s:
                return wait
            self._pending += 1
            return None

    def dismiss(self) -> None:
        """An admitted request ended without queueing (a cache hit, an abstention, an error)."""
        with self._cond:
            self._pending = max(0, self._pending - 1)

    def expected_wait_s(self, service_s: float | None) -> float | None:
        """How long a request arriving now would wait for a slot (None: unknown)."""
        with self._cond:
            return self._expected_wait(service_s)

    def _expected_wait(self, service_s: float | None) -> float | None:
        """The work ahead beyond the free slots, each taking ``service_s`` on one of the slots."""
        slots = sum(self._capacity.values())
        if not service_s or not slots:
            return None
        in_flight = sum(self._busy.get(worker, 0) for worker in self._capacity)
        ahead = in_flight + len(self._waiting) + self._pending
        return max(0, ahead - slots + 1) * service_s / slots

    def acquire(
        self,
        timeout_s: float,
        avoid: Hashable | None = None,
        affinity: Hashable | None = None,
        *,
        admitted: bool = False,
    ) -> Lease:
        """Wait in line for a free slot; the least busy accepting worker gets the request.

        ``affinity`` prefers the worker that last served that key, if it has a free slot. ``avoid`` gets
        the request only if no other worker has a free slot (a retry should land elsewhere, but a single
        URL behind a load balancer must still be usable for it); it wins over ``affinity``. ``admitted``:
        the request was counted by :meth:`admit`, and leaves the pending work as it joins the queue.
        """
        ticket = object()
        enqueued = time.monotonic()
        deadline = enqueued + timeout_s
        with self._cond:
            self._waiting.append(ticket)
            self._arrivals += 1
            if admitted:
                self._pending = max(0, self._pending - 1)
            try:
                while True:
                    if self._waiting[0] is ticket:
                        worker = self._preferred(affinity, avoid)
                        if worker is None:
                            worker = self._free_worker(avoid)
                        if worker is not None:
                            alone = not any(self._busy.values()) and len(self._waiting) == 1
                            alone = alone and not self._pending
                            self._busy[worker] += 1
                            self._waiting.popleft()
                            self._remember(affinity, worker)
                            self._cond.notify_all()  # the next in line may have a slot too
                            return Lease(worker, queued_s=time.monotonic() - enqueued, alone=alone)
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise QueueTimeout(f"no free worker slot within {timeout_s:.1f} s")
                    self._cond.wait(remaining)
            except BaseException:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                    self._cond.notify_all()
                raise

    def release(self, lease: Lease) -> float:
        """Give the slot back; returns the service time. Idempotent."""
        with self._cond:
            if lease.released:
                return 0.0
            lease.released = True
            self._busy[lease.worker] -= 1
            if not self._busy[lease.worker] and lease.worker not in self._capacity:
                self._busy.pop(lease.worker)
            self._cond.notify_all()
        service_s = time.monotonic() - lease.started
        if self._on_done is not None:
            self._on_done(lease.queued_s, service_s)
        return service_s

    def _preferred(self, affinity: Hashable | None, avoid: Hashable | None) -> Hashable | None:
        """The worker that last served ``affinity``, if it can take the request now."""
        worker = self._affinity.get(affinity) if affinity is not None else None
        if worker is None or worker is avoid:
            return None
        return worker if self._capacity.get(worker, 0) > self._busy.get(worker, 0) else None

    def _remember(self, affinity: Hashable | None, worker: Hashable) -> None:
        """Record who serves ``affinity`` now; a known key counts as a hit or a miss."""
        if affinity is None:
            return
        previous = self._affinity.get(affinity)
        if previous is worker:
            self.affinity_hits += 1
        elif previous is not None:
            self.affinity_misses += 1
        self._affinity[affinity] = worker
        self._affinity.move_to_end(affinity)
        while len(self._affinity) > self._affinity_max:
            self._affinity.popitem(last=False)

    def _free_worker(self, avoid: Hashable | None = None) -> Hashable | None:
        best, best_free = None, 0
        for worker, slots in self._capacity.items():
            free = slots - self._busy.get(worker, 0)
            if free > best_free and worker is not avoid:
                best, best_free = worker, free
        if best is None and self._capacity.get(avoid, 0) > self._busy.get(avoid, 0):
            return avoid
        return best

    # -- signals ---------------------------------------------------------------------------------------
    @property
    def arrivals_total(self) -> int:
        with self._cond:
            return self._arrivals

    @property
    def queued(self) -> int:
        with self._cond:
            return len(self._waiting)

    @property
    def pending(self) -> int:
        with self._cond:
            return self._pending

    @property
    def in_flight(self) -> int:
        with self._cond:
            return sum(self._busy.values())

    @property
    def slots_total(self) -> int:
        with self._cond:
            return sum(self._capacity.values())
