"""``penny ask --batch FILE``: bulk questions that need no answer now.

Each question goes through the cascade locally first; the ones it would escalate are sent to the paid
tier's Batch API together, at batch prices (assistant/answering/batch.py), and the command waits for them.
In: JSONL, one ``{"question": ..., "collection"?: ..., "id"?: ...}`` per line. Out: JSONL, one answer per
question in the same order, as ``POST /v1/ask`` gives it, with the question and its ``id`` (default: its
line number).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import IO, Any

import click


def read_questions(path: Path) -> list[dict[str, Any]]:
    """The questions of a JSONL file; a line without a question is refused with its number."""
    questions = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise click.ClickException(f"{path} line {number} is not JSON: {exc}") from exc
            if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not row["question"]:
                raise click.ClickException(f'{path} line {number} has no "question"')
            questions.append({"id": row.get("id", number), **row})
    return questions


def ask_batch(path: Path, out: IO[str], threshold: float | None = None) -> tuple[int, int, int]:
    """Answer every question of ``path`` into ``out``; returns (questions, escalated, cost in micro-USD)."""
    from assistant.answering.batch import BatchEscalation
    from assistant.answering.escalation import Pending
    from assistant.paid import BatchClient
    from assistant.service import Penny
    from assistant.settings import get_settings

    questions = read_questions(path)
    penny = Penny(settings := get_settings())
    cascade = penny.cascade
    if cascade.paid is None:
        raise click.ClickException("--batch needs the paid tier: set PENNY_PAID__BASE_URL")
    batch = BatchEscalation(
        cascade,
        BatchClient(
            cascade.paid,
            poll_interval_s=settings.paid.batch_poll_interval_s,
            max_wait_s=settings.paid.batch_max_wait_s,
        ),
    )
    firsts = [
        batch.local_first(
            q["question"], request_id=uuid.uuid4().hex, collection=q.get("collection"), threshold=threshold
        )
        for q in questions
    ]
    pending = [first for first in firsts if isinstance(first, Pending)]
    asked = iter(batch.run(pending))
    cost = 0
    for question, first in zip(questions, firsts, strict=True):
        answer = next(asked) if isinstance(first, Pending) else first
        cost += answer.cost_micro_usd
        usage = {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens}
        row = {
            "id": question["id"],
            "question": question["question"],
            "answer": answer.answer,
            **answer.penny_block(),  # the shape POST /v1/ask answers with
            "usage": usage,
        }
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(questions), len(pending), cost
