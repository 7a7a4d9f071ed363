"""Both limiters, one suite: exact sliding windows, all-or-nothing admission, settlement, leases, threads."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest

from assistant.limits import Limits, RateLimited, Scope

if TYPE_CHECKING:
    from tests.support.limits import MakeLimiter

pytest_plugins = ["tests.support.limits"]  # fixtures: make_limiter, redis_prefix


def scope(name: str, rpm: int = 0, tpm: int = 0, max_concurrent: int = 0) -> Scope:
    return Scope(name, Limits(rpm, tpm, max_concurrent))


def test_rpm_admits_exactly_the_limit_then_429_with_retry_after(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    user = [scope("user:1", rpm=5)]
    remaining = [limiter.admit(user).headers.remaining_requests for _ in range(5)]
    assert remaining == [4, 3, 2, 1, 0]
    with pytest.raises(RateLimited) as refused:
        limiter.admit(user)
    assert refused.value.reason == "requests"
    assert 1 <= refused.value.retry_after_s <= 60
    headers = refused.value.headers.http()
    assert headers["x-ratelimit-limit-requests"] == "5"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert "x-ratelimit-limit-tokens" not in headers  # no tpm limit on this scope


def test_refused_by_one_scope_is_recorded_in_none(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    user = scope("user:1", rpm=4)
    limiter.admit([user, scope("key:a", rpm=1)])
    for _ in range(3):  # the key is full: these must not use up the user's minute
        with pytest.raises(RateLimited):
            limiter.admit([user, scope("key:a", rpm=1)])
    admitted = [limiter.admit([user, scope("key:b", rpm=10)]) for _ in range(3)]
    assert admitted[-1].headers.remaining_requests == 0
    with pytest.raises(RateLimited) as refused:
        limiter.admit([user, scope("key:b", rpm=10)])
    assert "user:1" in str(refused.value)


def test_settlement_lowers_the_token_count(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    user = [scope("user:1", tpm=1000)]
    first = limiter.admit(user, tokens=600)
    assert first.headers.remaining_tokens == 400
    with pytest.raises(RateLimited) as refused:
        limiter.admit(user, tokens=600)
    assert refused.value.reason == "tokens"
    limiter.settle(first, 100)  # served locally or short: the estimate comes back
    second = limiter.admit(user, tokens=600)
    assert second.headers.remaining_tokens == 300
    limiter.settle(first, 0)  # settles once: a second settlement changes nothing
    assert limiter.admit(user, tokens=300).headers.remaining_tokens == 0


def test_a_request_larger_than_the_tpm_limit_is_refused_as_too_large(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    with pytest.raises(RateLimited) as refused:
        limiter.admit([scope("user:1", tpm=100)], tokens=101)
    assert refused.value.reason == "too_large"
    assert "max_tokens" in str(refused.value)
    assert limiter.admit([scope("user:1", tpm=100)], tokens=100).headers.remaining_tokens == 0


def test_concurrency_lease_released_once_frees_exactly_one_slot(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    user = [scope("user:1", max_concurrent=2)]
    first, _second = limiter.admit(user), limiter.admit(user)
    with pytest.raises(RateLimited) as refused:
        limiter.admit(user)
    assert refused.value.reason == "concurrent" and refused.value.retry_after_s == 1
    limiter.release(first)
    limiter.release(first)  # a second release must not free another request's slot
    limiter.admit(user)
    with pytest.raises(RateLimited):
        limiter.admit(user)


def test_a_crashed_holders_lease_expires(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(lease_ttl_s=0.3)
    user = [scope("user:1", max_concurrent=1)]
    limiter.admit(user)  # its process "dies": never released
    with pytest.raises(RateLimited):
        limiter.admit(user)
    time.sleep(0.5)
    assert limiter.admit(user).enforced


def test_the_window_slides(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(window_s=0.4)
    user = [scope("user:1", rpm=2, tpm=50)]
    limiter.admit(user, tokens=30)
    limiter.admit(user, tokens=20)
    with pytest.raises(RateLimited):
        limiter.admit(user)
    time.sleep(0.6)
    admitted = limiter.admit(user, tokens=50)  # both the requests and the tokens have left the window
    assert (admitted.headers.remaining_requests, admitted.headers.remaining_tokens) == (1, 0)


def test_settling_after_the_entry_left_the_window_changes_nothing(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter(window_s=0.3)
    user = [scope("user:1", tpm=100)]
    old = limiter.admit(user, tokens=80)
    time.sleep(0.5)
    current = limiter.admit(user, tokens=90)
    limiter.settle(old, 0)  # must not hand back 80 tokens that are no longer counted
    assert current.headers.remaining_tokens == 10
    with pytest.raises(RateLimited):
        limiter.admit(user, tokens=11)


def test_unlimited_scopes_are_not_counted(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    admission = limiter.admit([scope("user:1"), scope("key:a")], tokens=10**6)
    assert not admission.enforced and admission.headers.http() == {}


def test_50_threads_admit_exactly_the_limit(make_limiter: MakeLimiter) -> None:
    limiter = make_limiter()
    scopes = [scope("user:1", rpm=37, max_concurrent=1000), scope("key:a", rpm=1000, tpm=10**6)]
    admitted: list[int] = []
    refused: list[int] = []
    start = threading.Barrier(50)

    def attempt() -> None:
        start.wait()
        for _ in range(10):
            try:
                limiter.admit(scopes, tokens=7)
                admitted.append(1)
            except RateLimited:
                refused.append(1)

    threads = [threading.Thread(target=attempt) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(admitted), len(refused)) == (37, 463)
