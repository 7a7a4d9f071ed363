"""Limiter fixtures: the same tests run on the in-process limiter and on Redis (127.0.0.1:6379), each Redis
test under its own key prefix, deleted afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import redis

from assistant.limits import Limiter, MemoryLimiter
from assistant.limits.redis_limiter import RedisLimiter

REDIS_URL = "redis://127.0.0.1:6379/0"
MakeLimiter = Callable[..., Limiter]


@contextmanager
def fresh_redis_prefix() -> Iterator[str]:
    """A key prefix of its own in the shared Redis; its keys are deleted afterwards."""
    prefix = f"penny-test:{uuid.uuid4().hex[:12]}"
    try:
        yield prefix
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    with fresh_redis_prefix() as prefix:
        yield prefix


@pytest.fixture(params=["memory", "redis"])
def make_limiter(request: pytest.FixtureRequest, redis_prefix: str) -> Iterator[MakeLimiter]:
    """A factory: ``make_limiter(window_s=..., lease_ttl_s=...)`` on the parametrised backend."""
    made: list[Limiter] = []

    def make(**options: float) -> Limiter:
        if request.param == "memory":
            limiter: Limiter = MemoryLimiter(**options)
        else:
            limiter = RedisLimiter(REDIS_URL, prefix=redis_prefix, **options)  # type: ignore[arg-type]
        made.append(limiter)
        return limiter

    yield make
    for limiter in made:
        limiter.close()
