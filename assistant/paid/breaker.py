"""``CircuitBreaker``: stop calling the paid tier for a while after it has failed several calls in a row."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from assistant.paid.errors import CircuitOpen


class CircuitBreaker:
    """Open after ``failure_threshold`` consecutive failed calls; after ``cooldown_s`` let one trial through
    (half-open); a success closes it, a failure re-opens it.

    Hand-written rather than pybreaker because pybreaker holds its lock for the whole guarded call, which
    would serialise every concurrent escalation behind the slowest one. Here the lock guards only state.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._clock() - self._opened_at >= self.cooldown_s and not self._trial_in_flight:
                return "half-open"
            return "open"

    def before_call(self) -> None:
        """Raise :class:`CircuitOpen` unless a call may go out now."""
        with self._lock:
            if self._opened_at is None:
                return
            remaining = self.cooldown_s - (self._clock() - self._opened_at)
            if remaining > 0 or self._trial_in_flight:
                raise CircuitOpen(
                    f"the paid tier's circuit is open after {self._failures} consecutive failures; "
                    f"next trial in {max(remaining, 0):.1f}s"
                )
            self._trial_in_flight = True  # half-open: exactly one trial call

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_in_flight or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
            self._trial_in_flight = False
