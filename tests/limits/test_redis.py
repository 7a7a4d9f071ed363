"""The Redis limiter across processes, and what it does when Redis is down."""

from __future__ import annotations

import logging
import multiprocessing
import uuid

import pytest

from assistant.limits import LimiterUnavailable, Limits, RateLimited, Scope
from assistant.limits.redis_limiter import RedisLimiter
from tests.support.servers import free_port

pytest_plugins = ["tests.support.limits"]  # fixtures: redis_prefix

REDIS_URL = "redis://127.0.0.1:6379/0"
SCOPES = [Scope("user:1", Limits(rpm=11, max_concurrent=6)), Scope("key:a", Limits(rpm=1000))]


def _attempt_many(prefix: str, threads: int, results: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """In a child process: ``threads`` concurrent admissions that hold their leases (never released)."""
    import threading

    limiter = RedisLimiter(REDIS_URL, prefix=prefix)
    outcomes: list[str] = []
    start = threading.Barrier(threads)

    def attempt() -> None:
        start.wait()
        try:
            limiter.admit(SCOPES)
            outcomes.append("admitted")
        except RateLimited as exc:
            outcomes.append(exc.reason)

    workers = [threading.Thread(target=attempt) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    results.put(outcomes)


def test_two_processes_share_the_limits_exactly(redis_prefix: str) -> None:
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    processes = [context.Process(target=_attempt_many, args=(redis_prefix, 25, results)) for _ in range(2)]
    for process in processes:
        process.start()
    outcomes = [outcome for _ in processes for outcome in results.get(timeout=120)]
    for process in processes:
        process.join(timeout=60)
    # 50 attempts, 6 concurrency slots held to the end: exactly 6 in, the rest refused for concurrency.
    assert len(outcomes) == 50
    assert outcomes.count("admitted") == 6
    assert outcomes.count("concurrent") == 44


def test_redis_down_fails_open_with_a_warning_that_hides_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"redis://:s3cret-{uuid.uuid4().hex[:6]}@127.0.0.1:{free_port()}/0"  # nothing listens there
    limiter = RedisLimiter(url, timeout_s=0.2)
    with caplog.at_level(logging.WARNING, logger="penny.limits"):
        admissions = [limiter.admit(SCOPES, tokens=5) for _ in range(20)]  # over rpm 11, yet admitted
    assert all(not a.enforced for a in admissions)
    limiter.settle(admissions[0], 0)  # nothing was counted: these are no-ops, not errors
    limiter.release(admissions[0])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "admitting without rate limits" in warnings[0]
    assert "s3cret" not in caplog.text


def test_redis_down_can_refuse_instead() -> None:
    limiter = RedisLimiter(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2, on_error="refuse")
    with pytest.raises(LimiterUnavailable, match="Redis unreachable"):
        limiter.admit(SCOPES)
