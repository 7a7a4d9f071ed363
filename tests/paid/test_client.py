"""The paid-tier client against a real HTTP server on loopback whose behaviour each test scripts."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from assistant.paid import (
    CircuitBreaker,
    CircuitOpen,
    PaidClient,
    PaidHTTPError,
    PaidMalformedResponse,
    PaidRateLimited,
    PaidResult,
    PaidTimeout,
    tokens,
)
from assistant.paid.client import _parse_retry_after
from assistant.settings import PaidSettings
from tests.support.fake_paid import FakePaid, Reply

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is Normandy?"}]


@pytest.fixture
def fake(paid_server: tuple[FakePaid, str]) -> FakePaid:
    paid_server[0].reset()
    return paid_server[0]


def client(paid_server: tuple[FakePaid, str], **kwargs: object) -> PaidClient:
    options: dict[str, object] = {"timeout_s": 5.0, "max_retries": 2, "backoff_base_s": 0.01, **kwargs}
    return PaidClient(paid_server[1], "gpt-4o-mini", "sk-test", **options)  # type: ignore[arg-type]


def test_chat_reads_usage_and_sends_a_grounded_request(fake: FakePaid, paid_server) -> None:  # type: ignore[no-untyped-def]
    fake.queue(Reply(text="France [1].", prompt_tokens=321, completion_tokens=4, cached_tokens=64))
    result = client(paid_server).chat(MESSAGES, max_tokens=50)
    assert result.text == "France [1]."
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (321, 4)
    assert result.usage.cached_prompt_tokens == 64
    assert result.usage.estimated is False
    assert result.attempts == 1
    [seen] = fake.requests
    assert seen.body["messages"] == MESSAGES
    assert seen.body["max_tokens"] == 50 and seen.body["temperature"] == 0.0
    assert seen.body["model"] == "gpt-4o-mini"
    assert seen.headers["authorization"] == "Bearer sk-test"


def test_stream_reads_usage_from_the_last_chunk(fake: FakePaid, paid_server) -> None:  # type: ignore[no-untyped-def]
    fake.queue(Reply(text="Normandy is in northern France [1].", prompt_tokens=200, completion_tokens=9))
    items = list(client(paid_server).stream_chat(MESSAGES))
    *deltas, final = items
    assert isinstance(final, PaidResult)
    assert len(deltas) > 3 and "".join(deltas) == "Normandy is in northern France [1]."  # type: ignore[arg-type]
    assert final.text == "Normandy is in northern France [1]."
    assert (final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.estimated) == (
        200,
        9,
        False,
    )
    assert fake.requests[0].body["stream_options"] == {"include_usage": True}


def test_stream_without_usage_is_counted_and_flagged_estimated(fake: FakePaid, paid_server) -> None:  # type: ignore[no-untyped-def]
    fake.queue(Reply(text="It is in France [1].", usage=False))
    *_, final = client(paid_server).stream_chat(MESSAGES)
    assert isinstance(final, PaidResult)
    assert final.usage.estimated is True
    assert final.usage.prompt_tokens == tokens.count_messages(MESSAGES)
    assert final.usage.completion_tokens == tokens.count_text("It is in France [1].")


def test_chat_without_usage_is_estimated(fake: FakePaid, paid_server) -> None:  # type: ignore[no-untyped-def]
    fake.queue(Reply(text="France.", usage=False))
    result = client(paid_server).chat(MESSAGES)
    assert result.usage.estimated and result.usage.completion_tokens == tokens.count_text("France.")


def test_timeout_is_retried_then_raised(fake: FakePaid, paid_server) -> None:  # type: ignore[no-untyped-def]
    fake.default = Reply(delay_s=1.0)
    upstream = client(paid_server, timeout_s=0.2, max_retries=1)
    with pytest.raises(PaidTimeout) as caught:
        upstream.chat(MESSAGES)
    assert caught.value.reason == "timeout"
    assert len(fake.requests) == 2  # first try + one retry


def test_5xx_is_retried_with_backoff_and_recovers(fake: FakePaid, paid_server) -> None:  # type: ignore[no-untyped-def]
    fake.queue(Reply(kind="status", status=503), Reply(kind="status", status=500), Reply(text="ok"))
    result = client(paid_server, backoff_base_s=0.1).chat(MESSAGES)
    assert result.text == "ok" and result.attempts == 3
    first, second, third = (seen.at for seen in fake.requests)
    assert second - first >= 0.09  # 0.1 s, then doubled
    assert third - second >= 0.19


def test_persistent_500_raises_http_error(fake: FakePaid, paid_server) -> None:  # type: ignore[no-untyped-def]
    fake.default = Reply(kind="status", status=500)
    with pytest.raises(PaidHTTPError) as caught:
        client(paid_server, max_retries=2).chat(MESSAGES)
    assert caught.value.status == 500 and caught.value.reason == "http_500"
    assert len(fake.requests) == 3


def test_429_honours_retry_after(fake: FakePaid, paid_server) -> None:  # type: ignore[no-untyped-def]
    fake.queue(Reply(kind="status", status=429, headers={"Retry-After": "1"}), Reply(text="after the wait"))
    started = time.monotonic()
    result = client(paid_server, backoff_base_s=0.01).chat(MESSAGES)
    assert result.text == "after the wait" and result.attempts == 2
    gap = fake.requests[1].at - fake.requests[0].at
    assert gap >= 0.95, f"retried after {gap:.2f}s, Retry-After said 1s (backoff alone would be 0.01s)"
    assert time.monotonic() - started >= 0.95


def test_429_retry_after_is_capped(fake: FakePaid, paid_server) -> None:  # type: ignore[no-untyped-def]
    fake.default = Reply(kind="status", status=429, headers={"Retry-After": "3600"})
    started = time.monotonic()
    with pytest.raises(PaidRateLimited) as caught:
        client(paid_server, max_retries=1, max_retry_after_s=0.2).chat(MESSAGES)
    assert caught.value.reason == "rate_limited" and caught.value.retry_after_s == 3600
    assert len(fake.requests) == 2 and time.monotonic() - started < 5


def test_4xx_is_not_retried(fake: FakePaid, paid_server) -> None:  # type: ignore[no-untyped-def]
    fake.default = Reply(kind="status", status=401)
    with pytest.raises(PaidHTTPError) as caught:
        client(paid_server).chat(MESSAGES)
    assert caught.value.status == 401 and len(fake.requests) == 1


def test_malformed_json_is_a_clear_error_and_not_retried(fake: FakePaid, paid_server) -> None:  # type: ignore[no-untyped-def]
    fake.default = Reply(kind="malformed")
    with pytest.raises(PaidMalformedResponse, match="not a chat completion") as caught:
        client(paid_server).chat(MESSAGES)
    assert caught.value.reason == "malformed_response" and len(fake.requests) == 1


def test_stream_that_is_not_sse_is_malformed(fake: FakePaid, paid_server) -> None:  # type: ignore[no-untyped-def]
    fake.default = Reply(kind="not_sse")
    with pytest.raises(PaidMalformedResponse, match="text/html"):
        list(client(paid_server).stream_chat(MESSAGES))


def test_circuit_opens_after_n_failures_and_recovers_after_cooldown(  # type: ignore[no-untyped-def]
    fake: FakePaid, paid_server
) -> None:
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=0.5)
    upstream = client(paid_server, max_retries=0, breaker=breaker)
    fake.default = Reply(kind="status", status=500)
    for _ in range(2):
        with pytest.raises(PaidHTTPError):
            upstream.chat(MESSAGES)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpen) as caught:
        upstream.chat(MESSAGES)
    assert caught.value.reason == "circuit_open"
    assert len(fake.requests) == 2  # the open circuit sent nothing

    time.sleep(0.55)
    assert breaker.state == "half-open"
    fake.default = Reply(kind="status", status=500)
    with pytest.raises(PaidHTTPError):  # the one trial call fails: open again at once
        upstream.chat(MESSAGES)
    assert breaker.state == "open" and len(fake.requests) == 3

    time.sleep(0.55)
    fake.default = Reply(text="back")
    assert upstream.chat(MESSAGES).text == "back"
    assert breaker.state == "closed"
    assert upstream.chat(MESSAGES).text == "back"


def test_from_settings_needs_a_base_url_and_reads_the_key_from_the_named_env_var(
    monkeypatch: pytest.MonkeyPatch, fake: FakePaid, paid_server
) -> None:  # type: ignore[no-untyped-def]
    assert PaidClient.from_settings(PaidSettings()) is None
    monkeypatch.setenv("MY_UPSTREAM_KEY", "sk-from-env")
    upstream = PaidClient.from_settings(
        PaidSettings(base_url=paid_server[1], model="gpt-4o-mini", api_key_env="MY_UPSTREAM_KEY")
    )
    assert upstream is not None
    upstream.chat(MESSAGES)
    assert fake.requests[0].headers["authorization"] == "Bearer sk-from-env"


def test_retry_after_parses_seconds_and_http_dates() -> None:
    assert _parse_retry_after("2") == 2.0
    assert _parse_retry_after(None) is None and _parse_retry_after("soon") is None
    in_ten = _parse_retry_after(formatdate(time.time() + 10, usegmt=True))
    assert in_ten is not None and 8 <= in_ten <= 10.5


def test_estimate_prompt_tokens_matches_the_openai_recipe() -> None:
    assert PaidClient.estimate_prompt_tokens(MESSAGES) == tokens.count_messages(MESSAGES) > 10


def test_reserved_prompt_tokens_add_the_settings_headroom() -> None:
    from assistant.settings import PaidSettings

    settings = PaidSettings(
        base_url="http://127.0.0.1:9/v1", prompt_token_margin=0.5, prompt_token_overhead=7
    )
    client = PaidClient.from_settings(settings)
    assert client is not None
    try:
        counted = tokens.count_messages(MESSAGES)
        assert client.reserve_prompt_tokens(MESSAGES) == tokens.with_headroom(counted, 0.5, 7)
        assert client.estimate_prompt_tokens(MESSAGES) == counted  # decisions price the plain count
    finally:
        client.close()
