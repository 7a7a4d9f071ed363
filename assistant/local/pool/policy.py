"""The autoscaling policy: pure arithmetic on a snapshot of the pool and a clock the caller passes in.

Target tracking as in GKE's guidance for LLM servers and KEDA/HPA: the desired worker count is
``ceil((in_flight + queued) / (slots_per_worker × target_utilisation))``, and at least the workers the
offered load needs (below), clamped to [min, max].

- Offered load (Little's law): ``R = arrival rate × mean service time`` busy slots on average, staffed
  with the square-root safety margin ``R + staffing_beta × sqrt(R)`` (Halfin–Whitt), which keeps the chance
  of waiting about constant at any scale. The rate is taken over ``rate_window_s``; the term is 0 until the
  caller reports ``arrivals_total`` and ``mean_service_s``. It keeps warm the workers a steady load needs, so
  a lull of a few seconds between requests does not release them.
- Scale up fast: once the desired count has exceeded the current one for ``scale_up_delay_s`` *and* at
  least ``queue_threshold`` requests are waiting (busy slots alone are not a reason to pay for a worker),
  jump straight to the desired count. From zero workers any request scales up at once.
- Scale down slowly, HPA-style: the scale-down target is the *largest* desired count seen in the last
  ``scale_down_delay_s`` (HPA's stabilisation window), so a short lull keeps the capacity the last peak
  needed. Once even that recent peak is below the current count and nothing is queued, drain one worker,
  then one more every ``scale_down_step_s`` while the window's peak stays below (HPA's ``Pods: 1`` policy).
  Before, the whole window restarted after every drained worker: releasing a burst's 17 extra workers took
  17 windows.
- Memory is a guard, not a target: a scale-up is cut to what fits under ``memory_limit_bytes`` using the
  largest RSS measured on a worker (or the configured estimate before any was measured).

The same object drives the live pool (wall clock) and the simulator (simulated clock), which is why it
never reads the time itself. Defaults come from ``python -m assistant.local.pool.simulate --sweep``
(assistant/local/pool/README.md).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from assistant.settings import PoolSettings


@dataclass(frozen=True)
class PoolSignals:
    """What the policy sees. ``current`` workers are starting + ready; draining ones are already leaving."""

    in_flight: int
    queued: int
    workers_starting: int
    workers_ready: int
    workers_draining: int = 0
    memory_bytes: int = 0  # total RSS of live workers
    worker_memory_bytes: int = 0  # largest RSS measured on one worker; 0 = not measured yet
    arrivals_total: int = 0  # requests ever enqueued, a counter; left 0 = no offered-load term
    mean_service_s: float = 0.0  # mean service time of the last ~100 requests; 0 = not measured yet

    @property
    def current(self) -> int:
        return self.workers_starting + self.workers_ready


@dataclass(frozen=True)
class ScaleDecision:
    delta: int  # +n start n workers, -1 drain one, 0 nothing
    desired: int
    reason: str
    memory_blocked: bool = False


class AutoscalePolicy:
    """Decides the next step from :class:`PoolSignals`. Holds only its own windows' history."""

    def __init__(self, settings: PoolSettings) -> None:
        if settings.min_workers == 0 and not settings.scale_to_zero:
            raise ValueError("pool.min_workers = 0 needs pool.scale_to_zero = true")
        if settings.max_workers is None:  # auto: depends on the host, which this pure object never reads
            raise ValueError("pool.max_workers is None (auto): size it first with pool.sizing.sized()")
        if settings.min_workers > settings.max_workers:
            raise ValueError("pool.min_workers must not exceed pool.max_workers")
        self.max_workers = settings.max_workers
        self.settings = settings
        self._up_since: float | None = None
        self._started: float | None = None  # first decide(): the window is full one window later
        self._last_down: float | None = None
        self._recent: deque[tuple[float, int]] = deque()  # (time, desired) within the stabilisation window
        self._arrivals: deque[tuple[float, int]] = deque()  # (time, arrivals_total) within rate_window_s

    @property
    def floor(self) -> int:
        return 0 if self.settings.scale_to_zero else max(1, self.settings.min_workers)

    def _workers_for(self, busy_slots: float) -> int:
        s = self.settings
        return math.ceil(busy_slots / (s.slots_per_worker * s.target_utilisation) - 1e-9) if busy_slots else 0

    def desired(self, signals: PoolSignals) -> int:
        raw = self._workers_for(signals.in_flight + signals.queued)
        raw = max(raw, self.staffed(signals))
        return max(self.floor, min(self.max_workers, raw))

    def staffed(self, signals: PoolSignals) -> int:
        """Workers for the offered load: Little's law R = arrival rate × mean service time busy slots, plus
        the square-root safety margin ``staffing_beta × sqrt(R)`` that keeps queueing delay small at any
        scale (Halfin–Whitt). 0 while the rate or the service time is unmeasured."""
        offered = self.arrival_rate() * signals.mean_service_s
        if offered <= 0:
            return 0
        slots = offered + self.settings.staffing_beta * math.sqrt(offered)
        return math.ceil(slots / self.settings.slots_per_worker - 1e-9)

    def arrival_rate(self) -> float:
        """Requests per second over the last ``rate_window_s`` (0 when the term is off or unmeasured)."""
        window = self.settings.rate_window_s  # 0 = off
        if window <= 0 or len(self._arrivals) < 2:
            return 0.0
        (t0, a0), (t1, a1) = self._arrivals[0], self._arrivals[-1]
        return max(0, a1 - a0) / max(window, t1 - t0)

    def _observe(self, signals: PoolSignals, now: float) -> None:
        if self._started is None:
            self._started = now
        window = self.settings.rate_window_s
        if window > 0:
            self._arrivals.append((now, signals.arrivals_total))
            while len(self._arrivals) > 2 and self._arrivals[1][0] <= now - window:
                self._arrivals.popleft()

    def _fits(self, signals: PoolSignals, wanted: int) -> int:
        """How many of ``wanted`` new workers fit under the memory limit (the guard)."""
        per_worker = signals.worker_memory_bytes or self.settings.worker_memory_estimate_bytes
        if per_worker <= 0:
            return wanted
        room = self.settings.memory_limit_bytes - signals.memory_bytes
        return max(0, min(wanted, room // per_worker))

    def _recent_peak(self, now: float, desired: int) -> int:
        """The largest desired count in the stabilisation window, this one included."""
        window = self.settings.scale_down_delay_s
        while self._recent and self._recent[0][0] < now - window:
            self._recent.popleft()
        while self._recent and self._recent[-1][1] <= desired:  # a monotone deque: max at the front
            self._recent.pop()
        self._recent.append((now, desired))
        return self._recent[0][1]

    def decide(self, signals: PoolSignals, now: float) -> ScaleDecision:
        s = self.settings
        self._observe(signals, now)
        current = signals.current
        desired = self.desired(signals)
        # A queue means the pool is not over-provisioned, whatever the arithmetic says.
        peak = self._recent_peak(now, max(desired, current) if signals.queued else desired)

        if current < self.floor:  # below the floor (start-up, crash): no delay
            return self._up(signals, self.floor - current, desired, "below min_workers")

        if desired > current:
            if current == 0:
                return self._up(signals, desired, desired, "cold start: requests waiting")
            if signals.queued < s.queue_threshold:
                self._up_since = None
                return ScaleDecision(0, desired, "busy but queue below threshold")
            if self._up_since is None:
                self._up_since = now
            if now - self._up_since < s.scale_up_delay_s:
                return ScaleDecision(0, desired, "scale-up pending")
            return self._up(signals, desired - current, desired, "load above target")

        self._up_since = None
        if peak < current:
            started = self._started if self._started is not None else now
            if now - started < s.scale_down_delay_s:
                return ScaleDecision(0, desired, "scale-down pending: window not yet full")
            if self._last_down is not None and now - self._last_down < s.scale_down_step_s:
                return ScaleDecision(0, desired, "scale-down pending: one worker per step")
            self._last_down = now
            return ScaleDecision(-1, desired, f"recent peak {peak} below {current} workers")
        if desired < current:
            return ScaleDecision(0, desired, f"scale-down pending: recent peak {peak} needs these workers")
        return ScaleDecision(0, desired, "steady")

    def _up(self, signals: PoolSignals, wanted: int, desired: int, reason: str) -> ScaleDecision:
        self._up_since = None
        fits = self._fits(signals, wanted)
        if fits < wanted:
            return ScaleDecision(fits, desired, f"{reason}; memory guard allowed {fits} of {wanted}", True)
        return ScaleDecision(wanted, desired, reason)
