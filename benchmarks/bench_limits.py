"""Limiter accuracy and overhead: allowed vs configured requests per minute under concurrency, both
backends (and across two processes for Redis), and the median cost of one admission.

Run: .venv/bin/python benchmarks/bench_limits.py   (Redis on 127.0.0.1:6379; `make bench` runs it)
"""

from __future__ import annotations

import multiprocessing
import statistics
import threading
import time
import uuid

from assistant.limits import Limiter, Limits, MemoryLimiter, RateLimited, Scope
from assistant.limits.redis_limiter import RedisLimiter

REDIS_URL = "redis://127.0.0.1:6379/0"
RPM = 100
THREADS = 50
ATTEMPTS = 400  # per thread, all within a few seconds: far inside one window
SCOPES = [Scope("user:1", Limits(rpm=RPM, tpm=10**9)), Scope("key:a", Limits(rpm=10**6))]


def hammer(limiter: Limiter, threads: int, attempts: int) -> int:
    """Admissions granted to ``threads`` x ``attempts`` concurrent attempts."""
    allowed = [0] * threads
    start = threading.Barrier(threads)

    def attempt(i: int) -> None:
        start.wait()
        for _ in range(attempts):
            try:
                limiter.admit(SCOPES, tokens=10)
                allowed[i] += 1
            except RateLimited:
                pass

    workers = [threading.Thread(target=attempt, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(allowed)


def _child(prefix: str, threads: int, attempts: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    limiter = RedisLimiter(REDIS_URL, prefix=prefix)
    out.put(hammer(limiter, threads, attempts))
    limiter.close()


def overhead_us(limiter: Limiter, n: int = 3000) -> float:
    scopes = [
        Scope("user:2", Limits(rpm=10**9, tpm=10**9, max_concurrent=10**6)),
        Scope("key:b", Limits(rpm=10**9)),
    ]
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        admission = limiter.admit(scopes, tokens=10)
        samples.append(time.perf_counter() - started)
        limiter.release(admission)
    return statistics.median(samples) * 1e6


def cleanup(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)


def main() -> None:
    attempts = THREADS * ATTEMPTS
    print(f"configured rpm {RPM}; {THREADS} threads x {ATTEMPTS} attempts = {attempts} within one window")
    print(f"{'backend':<28} {'allowed':>8} {'configured':>10} {'ratio':>6} {'admit median':>13}")
    prefixes = []
    for name in ("memory", "redis"):
        prefix = f"penny-bench:{uuid.uuid4().hex[:8]}"
        prefixes.append(prefix)
        limiter: Limiter = MemoryLimiter() if name == "memory" else RedisLimiter(REDIS_URL, prefix=prefix)
        allowed = hammer(limiter, THREADS, ATTEMPTS)
        cost = overhead_us(limiter)
        print(f"{name:<28} {allowed:>8} {RPM:>10} {allowed / RPM:>6.3f} {cost:>10.0f} µs")
        limiter.close()
    prefix = f"penny-bench:{uuid.uuid4().hex[:8]}"
    prefixes.append(prefix)
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = context.Queue()  # type: ignore[type-arg]
    children = [context.Process(target=_child, args=(prefix, THREADS // 2, ATTEMPTS, out)) for _ in range(2)]
    for child in children:
        child.start()
    allowed = sum(out.get(timeout=300) for _ in children)
    for child in children:
        child.join()
    print(f"{'redis, 2 processes x 25 thr':<28} {allowed:>8} {RPM:>10} {allowed / RPM:>6.3f} {'-':>13}")
    for prefix in prefixes:
        cleanup(prefix)


if __name__ == "__main__":
    main()
