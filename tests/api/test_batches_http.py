"""Penny's own Batch API over real HTTP, driven by the ``openai`` client's batch calls: upload, create, poll,
read the output and error files. Real cascade (SmolLM2, Chroma, the SQLite ledger); the only double is the
paid tier's Batch API behind it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.datastructures import State

from assistant.api.batch_routes import BATCH_ROUTES
from assistant.api.errors import EXCEPTION_HANDLERS
from assistant.service import Penny
from tests.support.fake_batch import FakeBatchAPI, length_tokens
from tests.support.servers import running_server

DOC = "# Normandy\n\nNormandy is a region in northern France. The Normans gave their name to Normandy.\n"
PAID_TEXT = "Normandy is in France [1]."


@pytest.fixture
def paid_api() -> Iterator[tuple[FakeBatchAPI, str]]:
    fake = FakeBatchAPI(length_tokens(lambda prompt: PAID_TEXT), polls_before_end=1)
    with running_server(fake.app) as url:
        yield fake, f"{url}/v1"


@pytest.fixture
def penny(settings: Any, paid_api: Any, tmp_path: Path) -> Penny:
    settings.paid.base_url, settings.paid.model = paid_api[1], "gpt-4o-mini"
    settings.paid.batch_poll_interval_s = 0.01
    settings.models.max_tokens = 16
    settings.cascade.escalate_below, settings.cascade.wrong_answer_usd = 1.0, None  # escalate every answer
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "normandy.md").write_text(DOC, encoding="utf-8")
    penny = Penny(settings)
    assert penny.ingester().ingest([tmp_path / "docs"]).ok
    return penny


def line(custom_id: str, question: str, model: str = "penny", **extra: Any) -> str:
    body = {"model": model, "messages": [{"role": "user", "content": question}], **extra}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})


def test_an_openai_client_runs_a_batch_through_the_cascade(
    penny: Penny, paid_api: Any, tmp_path: Path
) -> None:
    from openai import OpenAI

    fake, _ = paid_api
    ledger = penny.ledger
    ledger.add_user("alice")
    ledger.add_user("bob")
    alice_key, bob_key = ledger.create_key("alice")[1], ledger.create_key("bob")[1]
    app = Litestar(
        route_handlers=BATCH_ROUTES,
        state=State({"penny": penny, "auth": True}),
        exception_handlers=EXCEPTION_HANDLERS,
    )
    lines = [
        line("q1", "In what country is Normandy located?"),
        line("q2", "What is the boiling point of tungsten in Kelvin?"),
        line("bad-model", "Where is Normandy?", model="penny-local"),
        line("bad-collection", "Where is Normandy?", collection="nobodys"),
        "not json",
    ]
    with running_server(app) as base:
        alice = OpenAI(base_url=f"{base}/v1", api_key=alice_key, max_retries=0)
        bob = OpenAI(base_url=f"{base}/v1", api_key=bob_key, max_retries=0)
        upload = alice.files.create(file=("in.jsonl", "\n".join(lines).encode()), purpose="batch")
        batch = alice.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        deadline = time.monotonic() + 300
        while batch.status not in ("completed", "failed") and time.monotonic() < deadline:
            time.sleep(0.2)
            batch = alice.batches.retrieve(batch.id)
        assert batch.status == "completed", batch
        assert batch.request_counts is not None
        assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 3)
        output = [json.loads(x) for x in alice.files.content(batch.output_file_id).text.splitlines()]
        errors = {
            row["custom_id"]: row["response"]
            for row in map(json.loads, alice.files.content(batch.error_file_id).text.splitlines())
        }
        with pytest.raises(Exception, match="404"):  # someone else's batch is unknown to bob
            bob.batches.retrieve(batch.id)
    answers = {row["custom_id"]: row["response"]["body"] for row in output}
    assert answers["q1"]["choices"][0]["message"]["content"] == PAID_TEXT
    assert answers["q1"]["penny"]["tier"] == "paid" and answers["q1"]["penny"]["reason"].startswith("batch (")
    assert answers["q2"]["penny"]["tier"] == "none"  # nothing relevant retrieved: abstained, never escalated
    assert len(fake.batches) == 1 and fake.chat_calls == 0
    assert errors["bad-model"]["status_code"] == 400 and "model must be penny" in json.dumps(
        errors["bad-model"]
    )
    assert errors["bad-collection"]["status_code"] == 403
    assert errors["line-5"]["status_code"] == 400
    assert ledger.check_balances() == []
    assert {row.key: row.requests for row in ledger.usage(by="model")}.get("gpt-4o-mini:batch") == 1
