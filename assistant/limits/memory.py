"""The in-process limiter: exact sliding-window logs under one lock, for a single ``penny serve`` process.

Each scope keeps the admissions of the last minute in order (time, id), each admission's paid tokens and
their running total, and the leases in flight with their expiry. A check and the recording of the
admission in every scope happen under the same lock, so concurrent requests can neither both take the
last slot nor be half-admitted. With several processes use the Redis limiter: this one counts only its own.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from assistant.limits.base import (
    WINDOW_S,
    Admission,
    Denial,
    Limiter,
    RateHeaders,
    Scope,
    ScopeUsage,
    new_admission_id,
    refusal,
)

CONCURRENCY_RETRY_S = 1.0  # when a lease ends is unknown: ask the client to come back soon


@dataclass
class _Window:
    log: deque[tuple[float, str]] = field(default_factory=deque)  # (admitted at, admission id), oldest first
    tokens: dict[str, int] = field(default_factory=dict)
    total: int = 0
    leases: dict[str, float] = field(default_factory=dict)  # admission id -> expires at

    def trim(self, now: float, window_s: float) -> None:
        while self.log and self.log[0][0] <= now - window_s:
            _, admission_id = self.log.popleft()
            self.total -= self.tokens.pop(admission_id, 0)
        for admission_id in [i for i, expires in self.leases.items() if expires <= now]:
            del self.leases[admission_id]

    def denials(self, scope: Scope, tokens: int, now: float, window_s: float) -> list[Denial]:
        limits, found = scope.limits, []
        if limits.rpm and len(self.log) >= limits.rpm:
            found.append(("requests", scope, self.log[len(self.log) - limits.rpm][0] + window_s - now))
        if limits.tpm and tokens > limits.tpm:
            found.append(("too_large", scope, window_s))
        elif limits.tpm and self.total + tokens > limits.tpm:
            freed = 0
            for admitted_at, admission_id in self.log:  # wait until enough of the oldest tokens expire
                freed += self.tokens.get(admission_id, 0)
                if self.total - freed + tokens <= limits.tpm:
                    found.append(("tokens", scope, admitted_at + window_s - now))
                    break
        if limits.max_concurrent and len(self.leases) >= limits.max_concurrent:
            found.append(("concurrent", scope, CONCURRENCY_RETRY_S))
        return found

    def usage(self, scope: Scope, now: float, window_s: float) -> ScopeUsage:
        oldest = self.log[0][0] + window_s - now if self.log else None
        return ScopeUsage(scope, len(self.log), self.total, len(self.leases), oldest)


class MemoryLimiter(Limiter):
    def __init__(
        self,
        *,
        window_s: float = WINDOW_S,
        lease_ttl_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(window_s=window_s, lease_ttl_s=lease_ttl_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}

    def _admit(self, scopes: tuple[Scope, ...], tokens: int) -> Admission:
        admission_id = new_admission_id()
        with self._lock:
            now = self._clock()
            windows = [self._windows.setdefault(scope.name, _Window()) for scope in scopes]
            for window in windows:
                window.trim(now, self.window_s)
            denials = [
                d
                for scope, window in zip(scopes, windows, strict=True)
                for d in window.denials(scope, tokens, now, self.window_s)
            ]
            if denials:
                usages = [w.usage(s, now, self.window_s) for s, w in zip(scopes, windows, strict=True)]
                raise refusal(denials, RateHeaders.of(usages))
            for scope, window in zip(scopes, windows, strict=True):
                if scope.limits.rpm or scope.limits.tpm:
                    window.log.append((now, admission_id))
                    window.tokens[admission_id] = tokens
                    window.total += tokens
                if scope.limits.max_concurrent:
                    window.leases[admission_id] = now + self.lease_ttl_s
            usages = [w.usage(s, now, self.window_s) for s, w in zip(scopes, windows, strict=True)]
            self._forget_idle(now)
        return Admission(admission_id, scopes, tokens, headers=RateHeaders.of(usages))

    def _settle(self, admission: Admission, tokens: int) -> None:
        with self._lock:
            for scope in admission.scopes:
                window = self._windows.get(scope.name)
                if window is not None and admission.id in window.tokens:  # not yet out of the window
                    window.total += tokens - window.tokens[admission.id]
                    window.tokens[admission.id] = tokens

    def _release(self, admission: Admission) -> None:
        with self._lock:
            for scope in admission.scopes:
                window = self._windows.get(scope.name)
                if window is not None:
                    window.leases.pop(admission.id, None)

    def _forget_idle(self, now: float) -> None:
        """Drop scopes with nothing left in them, so many one-off keys do not grow the dict forever."""
        if len(self._windows) < 1024:
            return
        for name in list(self._windows):
            window = self._windows[name]
            window.trim(now, self.window_s)
            if not window.log and not window.leases:
                del self._windows[name]
