"""The worker's OpenAI-compatible HTTP interface, served in-process by a real uvicorn on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.servers import running_server

QUESTION = [{"role": "user", "content": "What colour is the sky on a clear day?"}]


@pytest.fixture(scope="module")
def worker_url(tiny_model: Any) -> Iterator[str]:
    from assistant.local.pool.worker import create_worker_app

    with running_server(create_worker_app(tiny_model, "smollm2-135m")) as url:
        yield url


def test_chat_completion_returns_text_usage_and_openai_logprobs(worker_url: str, tiny_model: Any) -> None:
    body = {"messages": QUESTION, "max_tokens": 12, "logprobs": True}
    response = httpx.post(f"{worker_url}/v1/chat/completions", json=body, timeout=120)
    assert response.status_code == 200
    data = response.json()
    choice = data["choices"][0]
    expected = tiny_model.chat(QUESTION, max_tokens=12)  # greedy: the same model gives the same answer
    assert choice["message"] == {"role": "assistant", "content": expected.text}
    logprobs = [entry["logprob"] for entry in choice["logprobs"]["content"]]
    # Same tokens, same logprobs up to float noise: llama.cpp reuses the cached prompt prefix on the second
    # call, which changes the batch shapes of the matrix products slightly.
    assert logprobs == pytest.approx(expected.token_logprobs, abs=0.1)
    assert all(lp <= 0 for lp in logprobs)
    assert data["usage"]["completion_tokens"] == len(logprobs) == expected.completion_tokens
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + len(logprobs)
    assert data["model"] == "smollm2-135m"


def test_streaming_sends_deltas_then_a_final_chunk_with_logprobs_and_usage(worker_url: str) -> None:
    body = {"messages": QUESTION, "max_tokens": 12, "logprobs": True, "stream": True}
    plain = httpx.post(
        f"{worker_url}/v1/chat/completions", json={**body, "stream": False}, timeout=120
    ).json()
    chunks: list[dict[str, Any]] = []
    with httpx.stream("POST", f"{worker_url}/v1/chat/completions", json=body, timeout=120) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text.strip() == plain["choices"][0]["message"]["content"]
    final = chunks[-1]
    assert final["choices"][0]["finish_reason"] in ("stop", "length")
    streamed = [e["logprob"] for e in final["choices"][0]["logprobs"]["content"]]
    plain_logprobs = [e["logprob"] for e in plain["choices"][0]["logprobs"]["content"]]
    assert streamed == pytest.approx(plain_logprobs, abs=0.1)
    assert final["usage"] == plain["usage"]


def test_a_scored_tail_gets_its_log_probabilities_in_both_modes(worker_url: str, tiny_model: Any) -> None:
    question = "What colour is the sky on a clear day?"
    body = {"messages": QUESTION, "max_tokens": 4, "scored_tail": question}
    plain = httpx.post(f"{worker_url}/v1/chat/completions", json=body, timeout=120).json()
    scored = plain["choices"][0]["scored_tail_logprobs"]
    expected = tiny_model.chat(QUESTION, max_tokens=4, scored_tail=question).scored_tail_logprobs
    assert scored == pytest.approx(expected, abs=0.05) and len(scored) >= 5 and all(lp <= 0 for lp in scored)
    with httpx.stream(
        "POST", f"{worker_url}/v1/chat/completions", json={**body, "stream": True}, timeout=120
    ) as response:
        chunks = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    assert chunks[-1]["choices"][0]["scored_tail_logprobs"] == pytest.approx(scored, abs=0.05)
    assert all("scored_tail_logprobs" not in c["choices"][0] for c in chunks[:-1])
    unasked = httpx.post(f"{worker_url}/v1/chat/completions", json={**body, "scored_tail": None}, timeout=120)
    assert "scored_tail_logprobs" not in unasked.json()["choices"][0]


def test_bad_requests_get_openai_errors_and_the_worker_keeps_serving(worker_url: str) -> None:
    empty = httpx.post(f"{worker_url}/v1/chat/completions", json={"messages": []}, timeout=30)
    assert empty.status_code == 400
    assert empty.json()["error"]["type"] == "invalid_request_error"
    too_long = [{"role": "user", "content": "word " * 3000 + "Question: why?"}]  # more tokens than n_ctx=2048
    for stream, tail in ((False, None), (True, None), (False, "why?"), (True, "why?")):
        body = {"messages": too_long, "stream": stream, "scored_tail": tail}
        response = httpx.post(f"{worker_url}/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 400  # scoring the question does not hide the prompt's length
        assert response.json()["error"]["code"] == "context_length_exceeded"
    health = httpx.get(f"{worker_url}/healthz").json()
    assert health["slots_busy"] == 0 and health["requests_deferred"] == 0  # the failed ones left no slot held
    ok = httpx.post(
        f"{worker_url}/v1/chat/completions", json={"messages": QUESTION, "max_tokens": 2}, timeout=120
    )
    assert ok.status_code == 200


def test_health_and_metrics_report_slots_and_memory(worker_url: str) -> None:
    health = httpx.get(f"{worker_url}/healthz").json()
    assert health["status"] == "ok" and health["slots_total"] == 1
    assert health["rss_bytes"] > 50 * 1024**2  # the model is resident
    text = httpx.get(f"{worker_url}/metrics").text
    assert "penny_worker_slots_busy 0.0" in text
    assert "penny_worker_slots_total 1.0" in text
    assert "penny_worker_memory_bytes" in text
