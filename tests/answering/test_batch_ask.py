"""``penny ask --batch FILE``: each question through the real cascade locally first (SmolLM2, Chroma, the
SQLite ledger), the escalations sent as one batch to a double of the paid tier's Batch API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from assistant.ledger.schema import reservations
from tests.support.fake_batch import FakeBatchAPI, length_tokens
from tests.support.servers import running_server

DOC = """# Normandy

Normandy is a region in northern France. The Normans gave their name to Normandy.

Rollo was the first ruler of Normandy; he agreed to defend the Seine valley against other raiders.
"""
PAID_TEXT = "Normandy is in France [1]."


@pytest.fixture
def paid_api() -> Iterator[tuple[FakeBatchAPI, str]]:
    fake = FakeBatchAPI(length_tokens(lambda prompt: PAID_TEXT), polls_before_end=1)
    with running_server(fake.app) as url:
        yield fake, f"{url}/v1"


@pytest.fixture
def env(tmp_path: Path, model_cache: Path, paid_api: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from assistant.settings import get_settings

    for name, value in {
        "PENNY_CONFIG": str(tmp_path / "absent.toml"),
        "PENNY_DATA_DIR": str(tmp_path / "data"),
        "PENNY_MODELS__LOCAL": "smollm2-135m",
        "PENNY_MODELS__CACHE_DIR": str(model_cache),
        "PENNY_MODELS__N_CTX": "2048",
        "PENNY_MODELS__MAX_TOKENS": "16",
        "PENNY_PAID__BASE_URL": paid_api[1],
        "PENNY_PAID__MODEL": "gpt-4o-mini",
        "PENNY_PAID__BATCH_POLL_INTERVAL_S": "0.01",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "normandy.md").write_text(DOC, encoding="utf-8")
    from assistant.service import Penny

    assert Penny(get_settings()).ingester().ingest([tmp_path / "docs"]).ok
    yield tmp_path
    get_settings.cache_clear()


def test_ask_batch_answers_locally_first_and_sends_the_escalations_as_one_batch(
    env: Path, paid_api: Any
) -> None:
    from assistant.cli import cli
    from assistant.ledger import open_ledger
    from assistant.settings import get_settings

    fake, _ = paid_api
    questions = env / "questions.jsonl"
    rows = [
        {"question": "In what country is Normandy located?", "id": "a"},
        {"question": "Who was the first ruler of Normandy?"},
        {"question": "What is the boiling point of tungsten in Kelvin?", "id": "off-topic"},
    ]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = env / "answers.jsonl"
    # Threshold 1.0: every local answer is below it, so each question the documents touch is escalated.
    result = CliRunner().invoke(
        cli, ["ask", "--batch", str(questions), "--threshold", "1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    answers = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [a["id"] for a in answers] == ["a", 2, "off-topic"]
    assert [a["tier"] for a in answers] == ["paid", "paid", "none"]  # nothing relevant: abstained, no call
    assert answers[0]["answer"] == PAID_TEXT and answers[0]["escalated"]
    assert answers[0]["reason"].startswith("batch (")
    assert len(fake.batches) == 1 and fake.chat_calls == 0
    assert "3 questions, 2 escalated in one batch" in result.output
    ledger = open_ledger(get_settings())
    try:
        assert ledger.check_balances() == []
        with ledger.engine.connect() as conn:
            held = conn.execute(sa.select(reservations.c.model, reservations.c.state)).all()
        assert sorted(tuple(r) for r in held) == [("gpt-4o-mini:batch", "settled")] * 2
    finally:
        ledger.close()


def test_ask_needs_a_question_or_a_batch_file(env: Path) -> None:
    from assistant.cli import cli

    result = CliRunner().invoke(cli, ["ask"])
    assert result.exit_code == 2 and "give a QUESTION or --batch FILE" in result.output
