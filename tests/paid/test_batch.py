"""The Batch API client against a double of OpenAI's Batch API on loopback: upload, create, poll, results,
and the batches that end otherwise (failed, expired, cancelled after the wait, malformed result lines)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from assistant.paid import BatchClient, BatchRequest, PaidBatchFailed, PaidClient
from tests.support.fake_batch import FakeBatchAPI, length_tokens
from tests.support.servers import running_server


def _echo(prompt: str) -> str:
    return f"answer to {prompt.rsplit(':', 1)[-1].strip()} [1]"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeBatchAPI, str]]:
    fake = FakeBatchAPI(length_tokens(_echo))
    with running_server(fake.app) as base:
        yield fake, f"{base}/v1"


@pytest.fixture
def fake(server: tuple[FakeBatchAPI, str]) -> FakeBatchAPI:
    server[0].ending, server[0].answer_first = "completed", 0
    server[0].calls.clear()
    return server[0]


def requests(n: int) -> list[BatchRequest]:
    return [BatchRequest(f"q{i}", [{"role": "user", "content": f"Question: q{i}"}], 32) for i in range(n)]


def batch_client(server: tuple[FakeBatchAPI, str], **kwargs: float) -> BatchClient:
    paid = PaidClient(server[1], "gpt-4o-mini", "sk-test", max_retries=0)
    waits: list[float] = []
    client = BatchClient(paid, poll_interval_s=kwargs.get("poll", 7.0), sleep=waits.append, **_clock(kwargs))
    client.waits = waits  # type: ignore[attr-defined]
    return client


def _clock(kwargs: dict[str, float]) -> dict[str, object]:
    if "max_wait_s" not in kwargs:
        return {}
    ticks = iter(range(1000))
    return {"max_wait_s": kwargs["max_wait_s"], "clock": lambda: float(next(ticks))}


def test_a_batch_is_uploaded_created_polled_and_read(fake: FakeBatchAPI, server) -> None:  # type: ignore[no-untyped-def]
    client = batch_client(server)
    outcome = client.run(requests(3))
    assert outcome.status == "completed"
    assert sorted(outcome.results) == ["q0", "q1", "q2"] and outcome.not_answered == {}
    assert outcome.results["q1"].text == "answer to q1 [1]"
    live = client.paid.chat([{"role": "user", "content": "Question: q1"}], max_tokens=32)
    assert (live.text, live.usage) == (outcome.results["q1"].text, outcome.results["q1"].usage)
    assert fake.calls[:2] == ["POST /v1/files", "POST /v1/batches"]
    assert fake.calls.count("GET /v1/batches/{id}") == 3  # in progress twice, then completed
    assert client.waits == [7.0, 7.0]  # type: ignore[attr-defined]
    polls: list[str] = []  # what a waiter hears while the batch runs (it keeps its holds open)
    client.wait(client.submit(requests(1)), on_poll=lambda: polls.append("still running"))
    assert polls == ["still running", "still running"]
    # The uploaded file holds what a live call would POST, one request per line.
    uploaded = [json.loads(line) for line in next(iter(fake.files.values())).splitlines()]
    assert [line["custom_id"] for line in uploaded] == ["q0", "q1", "q2"]
    assert uploaded[0]["url"] == "/v1/chat/completions"
    assert uploaded[0]["body"] == client.paid.chat_body(requests(1)[0].messages, 32)


def test_a_failed_batch_raises_with_the_providers_reason(fake: FakeBatchAPI, server) -> None:  # type: ignore[no-untyped-def]
    fake.ending = "failed"
    with pytest.raises(
        PaidBatchFailed, match=r"failed \(invalid_request: scripted failure\); nothing was answered"
    ):
        batch_client(server).run(requests(2))


def test_an_expired_batch_returns_what_it_finished_and_names_the_rest(fake: FakeBatchAPI, server) -> None:  # type: ignore[no-untyped-def]
    fake.ending, fake.answer_first = "expired", 2
    outcome = batch_client(server).run(requests(5))
    assert outcome.status == "expired"
    assert sorted(outcome.results) == ["q0", "q1"]
    assert outcome.not_answered == {"q2": "batch_expired", "q3": "batch_expired", "q4": "batch_expired"}


def test_a_batch_past_its_wait_is_cancelled_and_keeps_what_it_finished(fake: FakeBatchAPI, server) -> None:  # type: ignore[no-untyped-def]
    fake.ending, fake.answer_first = "stuck", 1
    outcome = batch_client(server, max_wait_s=3.0).run(requests(3))
    assert outcome.status == "cancelled"
    assert list(outcome.results) == ["q0"]
    assert outcome.not_answered == {"q1": "batch_cancelled", "q2": "batch_cancelled"}
    assert fake.calls.count("POST /v1/batches/{id}/cancel") == 1


def test_malformed_result_lines_are_counted_and_their_request_is_not_answered(
    fake: FakeBatchAPI, server
) -> None:  # type: ignore[no-untyped-def]
    fake.ending = "malformed"
    outcome = batch_client(server).run(requests(3))
    assert sorted(outcome.results) == ["q1", "q2"]
    assert outcome.not_answered == {"q0": "malformed_response"}
    assert outcome.malformed_lines == 2  # a torn line, and a result for a request nobody sent


def test_custom_ids_must_be_unique(server) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="unique"):
        batch_client(server).submit(requests(2) + requests(1))
