"""The autoscaling policy: pure arithmetic on a snapshot of the pool and a clock the caller passes in.

Target tracking as in GKE's guidance for LLM servers and KEDA/HPA: the desired worker count is
``ceil((in_flight + queued) / (slots_per_worker × target_utilisation))``, clamped to [min, max].

- Scale up fast: once the desired count has exceeded the current one for ``scale_up_delay_s`` *and* at
  least ``queue_threshold`` requests are waiting (busy slots alone are not a reason to pay for a worker),
  jump straight to the desired count. From zero workers any request scales up at once.
- Scale down slowly: only after the desired count has stayed below the current one for
  ``scale_down_delay_s`` with nothing queued, and then one worker at a time (the window restarts), so a lull
  between bursts does not throw away warm workers (KEDA/HPA's 300 s stabilisation, Ray Serve's 600 s).
- Memory is a guard, not a target: a scale-up is cut to what fits under ``memory_limit_bytes`` using the
  largest RSS measured on a worker (or the configured estimate before any was measured).

The same object drives the live pool (wall clock) and the simulator (simulated clock), which is why it
never reads the time itself.
"""

from __future__ import annotations

import math
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
    """Decides the next step from :class:`PoolSignals`. Holds only the timers of its own windows."""

    def __init__(self, settings: PoolSettings) -> None:
        if settings.min_workers > settings.max_workers:
            raise ValueError("pool.min_workers must not exceed pool.max_workers")
        if settings.min_workers == 0 and not settings.scale_to_zero:
            raise ValueError("pool.min_workers = 0 needs pool.scale_to_zero = true")
        self.settings = settings
        self._up_since: float | None = None
        self._down_since: float | None = None

    @property
    def floor(self) -> int:
        return 0 if self.settings.scale_to_zero else max(1, self.settings.min_workers)

    def desired(self, signals: PoolSignals) -> int:
        s = self.settings
        load = signals.in_flight + signals.queued
        raw = math.ceil(load / (s.slots_per_worker * s.target_utilisation)) if load else 0
        return max(self.floor, min(s.max_workers, raw))

    def _fits(self, signals: PoolSignals, wanted: int) -> int:
        """How many of ``wanted`` new workers fit under the memory limit (the guard)."""
        per_worker = signals.worker_memory_bytes or self.settings.worker_memory_estimate_bytes
        if per_worker <= 0:
            return wanted
        room = self.settings.memory_limit_bytes - signals.memory_bytes
        return max(0, min(wanted, room // per_worker))

    def decide(self, signals: PoolSignals, now: float) -> ScaleDecision:
        s = self.settings
        current = signals.current
        desired = self.desired(signals)

        if current < self.floor:  # below the floor (start-up, crash): no delay
            return self._up(signals, self.floor - current, desired, "below min_workers")

        if desired > current:
            self._down_since = None
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
        if desired < current and signals.queued == 0:
            if self._down_since is None:
                self._down_since = now
            if now - self._down_since < s.scale_down_delay_s:
                return ScaleDecision(0, desired, "scale-down pending")
            self._down_since = now  # one worker per stable window
            return ScaleDecision(-1, desired, "load below target")
        self._down_since = None
        return ScaleDecision(0, desired, "steady")

    def _up(self, signals: PoolSignals, wanted: int, desired: int, reason: str) -> ScaleDecision:
        self._up_since = None
        fits = self._fits(signals, wanted)
        if fits < wanted:
            return ScaleDecision(fits, desired, f"{reason}; memory guard allowed {fits} of {wanted}", True)
        return ScaleDecision(wanted, desired, reason)
