"""Rate and concurrency limits per user and per API key: requests per minute, paid tokens per minute, and
requests in flight. See README.md here for the modules, ``docs/ARCHITECTURE.md`` for where this sits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from assistant.limits.base import (
    WINDOW_S,
    Admission,
    Limiter,
    LimiterUnavailable,
    Limits,
    RateHeaders,
    RateLimited,
    Scope,
)
from assistant.limits.memory import MemoryLimiter
from assistant.limits.policy import LimitPolicy

if TYPE_CHECKING:
    from assistant.settings import Settings


def build_limiter(settings: Settings) -> Limiter:
    """Redis when ``redis_url`` is set (limits hold across processes and replicas), else in-process."""
    limits = settings.limits
    if settings.redis_url:
        from assistant.limits.redis_limiter import RedisLimiter

        return RedisLimiter(
            settings.redis_url,
            prefix=limits.redis_prefix,
            lease_ttl_s=limits.lease_ttl_s,
            on_error=limits.on_redis_error,
        )
    return MemoryLimiter(lease_ttl_s=limits.lease_ttl_s)


__all__ = [
    "WINDOW_S",
    "Admission",
    "LimitPolicy",
    "Limiter",
    "LimiterUnavailable",
    "Limits",
    "MemoryLimiter",
    "RateHeaders",
    "RateLimited",
    "Scope",
    "build_limiter",
]
