"""Which limits apply to a request: the defaults from settings, overridden per user and per key.

The overrides live in the ledger. A server reads the whole (small) table at most once every
``limits.overrides_cache_s`` seconds rather than once per request, so a change made with
``penny limits set`` or the admin API reaches every server within that time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from assistant.ledger import Principal, RateLimitOverride
from assistant.limits.base import Limits, Scope
from assistant.settings import LimitSettings

OverrideSource = Callable[[], Sequence[RateLimitOverride]]


def defaults(settings: LimitSettings) -> dict[str, Limits]:
    return {
        "user": Limits(settings.user_rpm, settings.user_tpm, settings.user_max_concurrent),
        "key": Limits(settings.key_rpm, settings.key_tpm, settings.key_max_concurrent),
    }


def merged(default: Limits, override: RateLimitOverride | None) -> Limits:
    """The default with the override's set values on top (``None`` in the override: keep the default)."""
    if override is None:
        return default
    return Limits(
        default.rpm if override.rpm is None else override.rpm,
        default.tpm if override.tpm is None else override.tpm,
        default.max_concurrent if override.max_concurrent is None else override.max_concurrent,
    )


class LimitPolicy:
    def __init__(
        self,
        settings: LimitSettings,
        overrides: OverrideSource | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.defaults = defaults(settings)
        self.cache_s = settings.overrides_cache_s
        self._source = overrides
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: dict[tuple[str, str], RateLimitOverride] = {}
        self._read_at: float | None = None

    def scopes(self, principal: Principal) -> list[Scope]:
        """The user's scope, and the key's when the request came with one."""
        overrides = self._overrides()
        user = str(principal.user_id)
        found = [Scope(f"user:{user}", merged(self.defaults["user"], overrides.get(("user", user))))]
        if principal.key_id is not None:
            key = principal.key_id
            found.append(Scope(f"key:{key}", merged(self.defaults["key"], overrides.get(("key", key)))))
        return found

    def _overrides(self) -> dict[tuple[str, str], RateLimitOverride]:
        if self._source is None:
            return {}
        with self._lock:
            now = self._clock()
            if self._read_at is None or now - self._read_at >= self.cache_s:
                self._cached = {(o.scope, o.subject): o for o in self._source()}
                self._read_at = now
            return self._cached
