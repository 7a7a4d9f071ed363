"""The official `openai` client works unchanged against Penny; errors are OpenAI-shaped; /metrics counts."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
import sqlalchemy as sa

from assistant.ledger.schema import answers
from assistant.service import Penny
from tests.conftest import REPO
from tests.support.servers import running_server


@pytest.fixture(scope="module")
def served(tmp_path_factory, model_cache):  # type: ignore[no-untyped-def]
    from assistant.api import create_app
    from assistant.settings import Settings

    data_dir = tmp_path_factory.mktemp("api")
    settings = Settings(
        data_dir=data_dir,
        models={"local": "smollm2-135m", "cache_dir": model_cache, "n_ctx": 2048, "max_tokens": 48},
    )
    penny = Penny(settings)
    assert penny.ingest([REPO / "samples"])[0].ok  # its cost recorded, as `penny ingest` does
    with running_server(create_app(settings, penny, auth=False)) as base:
        yield base, penny


@pytest.fixture(scope="module")
def server(served) -> str:  # type: ignore[no-untyped-def]
    return served[0]


@pytest.fixture
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="not-needed-in-no-auth-mode", max_retries=0)


def test_non_streaming_completion_with_usage_and_penny_extras(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="penny-local", messages=[{"role": "user", "content": "In what country is Normandy located?"}]
    )
    assert response.object == "chat.completion"
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].message.content
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None and response.usage.prompt_tokens > 50
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    penny = response.model_extra["penny"]
    assert penny["tier"] == "local"
    assert penny["sources"] and penny["sources"][0]["source"].endswith("normans.md")
    assert isinstance(penny["cost_usd"], float)


def test_the_penny_block_splits_the_full_cost(served) -> None:  # type: ignore[no-untyped-def]
    """Each part as the ledger priced and recorded it; the ingest share is the collection's ingest so far over
    the answers served from it so far, this one included."""
    base, penny = served
    with httpx.Client(base_url=base, timeout=300) as http:
        body = http.post("/v1/ask", json={"question": "Who conquered England in 1066?"}).json()
    ledger = penny.ledger
    row = ledger.answer(body["request_id"])
    assert row is not None
    full = body["full_cost_usd"]
    assert set(full) == {"paid", "local_generation", "retrieval", "evaluation", "ingest_amortised", "total"}

    def micro(usd: float) -> int:
        return round(usd * 1_000_000)

    assert micro(full["paid"]) == row["paid_cost_micro_usd"]
    assert micro(full["local_generation"]) == row["local_cost_micro_usd"] > 0
    assert micro(full["retrieval"]) == row["retrieval_micro_usd"] > 0 and row["retrieval_seconds"] > 0
    assert micro(full["retrieval"]) == ledger.compute_cost_micro_usd(row["retrieval_seconds"])
    assert micro(full["evaluation"]) == row["evaluation_micro_usd"]
    if row["tier"] == "local":  # the evaluator judged a local answer
        assert row["evaluation_seconds"] > 0 and row["evaluation_micro_usd"] > 0
    ingest = sum(run.micro_usd for run in ledger.ingest_costs("default"))
    with ledger.engine.connect() as conn:
        served_so_far = conn.execute(
            sa.select(sa.func.count()).select_from(answers).where(answers.c.collection == "default")
        ).scalar_one()
    assert ingest > 0 and micro(full["ingest_amortised"]) == -(-ingest // served_so_far)
    parts = [
        micro(full[k]) for k in ("paid", "local_generation", "retrieval", "evaluation", "ingest_amortised")
    ]
    assert micro(full["total"]) == sum(parts)


def test_max_tokens_caps_the_local_answer(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="penny-local",
        messages=[{"role": "user", "content": "Who was the duke in the battle of Hastings?"}],
        max_tokens=2,
    )
    assert response.model_extra["penny"]["tier"] == "local"
    assert response.usage is not None and 0 < response.usage.completion_tokens <= 2


def test_streaming_completion_ends_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="penny-local",
        messages=[{"role": "user", "content": "Who was the duke in the battle of Hastings?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(finals) == 1 and finals[0].model_extra["penny"]["tier"] == "local"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_a_streamed_answer_reports_its_time_to_first_token(client: openai.OpenAI, server: str) -> None:
    count = 'penny_time_to_first_token_seconds_count{tier="local"}'
    total = 'penny_time_to_first_token_seconds_sum{tier="local"}'
    with httpx.Client(base_url=server) as raw:
        before = _metric(raw, count), _metric(raw, total)
        started = time.perf_counter()
        first = None
        for chunk in client.chat.completions.create(
            model="penny-local",
            messages=[{"role": "user", "content": "In what country is Normandy located?"}],
            stream=True,
        ):
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - started
        elapsed = time.perf_counter() - started
        after = _metric(raw, count), _metric(raw, total)
    assert first is not None
    assert after[0] == before[0] + 1
    # Measured from the request's arrival to the first content chunk: within what the client saw.
    assert 0 < after[1] - before[1] <= elapsed


def test_multi_turn_uses_the_last_user_turn(client: openai.OpenAI) -> None:
    response = client.chat.completions.create(
        model="penny-local",
        messages=[
            {"role": "user", "content": "Tell me about the Normans."},
            {"role": "assistant", "content": "They were a people from Normandy."},
            {"role": "user", "content": "What is a complexity class?"},
        ],
    )
    sources = response.model_extra["penny"]["sources"]
    assert any(s["source"].endswith("computational-complexity-theory.md") for s in sources)


def test_a_follow_up_turn_reuses_the_previous_turns_prompt(client: openai.OpenAI) -> None:
    question = "Who ruled the duchy of Normandy?"
    first = client.chat.completions.create(
        model="penny-local", messages=[{"role": "user", "content": question}]
    )
    follow_up = client.chat.completions.create(
        model="penny-local",
        messages=[
            {"role": "user", "content": question},
            {"role": "assistant", "content": first.choices[0].message.content or ""},
            {"role": "user", "content": "Who ruled the duchy of Normandy, and when?"},
        ],
    )
    assert first.usage is not None and follow_up.usage is not None
    details = follow_up.usage.prompt_tokens_details
    # Its prompt begins with the first turn's sources block, which llama.cpp still holds.
    assert details is not None and details.cached_tokens > first.usage.prompt_tokens // 2
    assert follow_up.usage.prompt_tokens > details.cached_tokens


def test_models_lists_profiles(client: openai.OpenAI) -> None:
    assert {m.id for m in client.models.list()} == {"penny", "penny-local", "penny-paid"}


def test_errors_are_openai_shaped(client: openai.OpenAI, server: str) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-17", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="last message must be a user turn"):
        client.chat.completions.create(model="penny", messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="n=1"):
        client.chat.completions.create(model="penny", n=2, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(model="penny", messages=[{"role": "user", "content": "word " * 1500}])
    assert too_long.value.body["code"] == "context_length_exceeded"
    with httpx.Client(base_url=server) as raw:
        malformed = raw.post(
            "/v1/chat/completions", content=b"{", headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 400 and set(malformed.json()["error"]) == {
            "message",
            "type",
            "param",
            "code",
        }
        huge = raw.post(
            "/v1/chat/completions", content=b"x" * 1_100_000, headers={"content-type": "application/json"}
        )
        assert huge.status_code == 413 and "error" in huge.json()
        nowhere = raw.get("/v1/nowhere")
        assert nowhere.status_code == 404 and nowhere.json()["error"]["type"] == "invalid_request_error"


def test_disconnect_mid_stream_stops_generation_and_records_usage(served) -> None:  # type: ignore[no-untyped-def]
    server, penny = served
    body = {
        "model": "penny-local",
        "stream": True,
        "messages": [{"role": "user", "content": "Who was Rollo?"}],
    }
    with httpx.Client(base_url=server, timeout=120) as raw:
        with raw.stream(
            "POST", "/v1/chat/completions", json=body, headers={"x-request-id": "hang-up-1"}
        ) as response:
            for line in response.iter_lines():
                if '"content":' in line and '"content": ""' not in line:
                    break  # first real token: hang up
        # The server notices the disconnect, stops generating and records the partial answer.
        record = None
        for _ in range(150):
            record = penny.ledger.answer("hang-up-1")
            if record is not None:
                break
            time.sleep(0.2)
        assert record is not None, "a disconnected stream must still be recorded"
        assert record["reason"] == "client_disconnected"
        assert record["tier"] == "local"
        assert 0 < record["local_completion_tokens"] < 48  # stopped early, before max_tokens
        assert record["local_prompt_tokens"] > 50
        assert raw.get("/healthz").json() == {"status": "ok"}


def test_metrics_and_health(server: str) -> None:
    with httpx.Client(base_url=server) as raw:
        text = raw.get("/metrics").text
        assert "penny_http_requests_total" in text
        assert "penny_answer_latency_seconds_bucket" in text
        ready = raw.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["local_model"] == "ok"


def _metric(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0
