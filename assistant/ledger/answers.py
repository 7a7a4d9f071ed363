"""Answers: one record per answer, whichever tier produced it, and what the local tier's time cost."""

from __future__ import annotations

import functools
import math
import threading
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from assistant.ledger.base import LedgerBase
from assistant.ledger.group_commit import GroupCommit
from assistant.ledger.records import AnswerRecord
from assistant.ledger.schema import answers

_WRITER_LOCK = threading.Lock()


def insert_answer(engine: sa.Engine) -> sa.Executable:
    """INSERT that ignores a second record for the same request id (a retry): one statement, so it can be
    batched, and no failed INSERT to abort a PostgreSQL transaction."""
    return _insert_answer(engine.dialect.name)


@functools.cache
def _insert_answer(dialect_name: str) -> sa.Executable:
    """Built once per dialect: a paid answer's settle inserts one, and building it is not free."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    return dialect.insert(answers).on_conflict_do_nothing(index_elements=[answers.c.request_id])


def answer_values(record: AnswerRecord, price_version: str, now: datetime) -> dict[str, Any]:
    """The row of ``answers`` for one record."""
    return {
        "request_id": record.request_id,
        "user_id": record.principal.user_id,
        "key_id": record.principal.key_id,
        "team_id": record.principal.team_id,
        "collection": record.collection,
        "tier": record.tier,
        "escalated": record.escalated,
        "reason": (record.reason or "")[:300] or None,
        "confidence": record.confidence,
        "local_prompt_tokens": record.local_prompt_tokens,
        "local_completion_tokens": record.local_completion_tokens,
        "paid_prompt_tokens": record.paid_prompt_tokens,
        "paid_cached_prompt_tokens": record.paid_cached_prompt_tokens,
        "paid_completion_tokens": record.paid_completion_tokens,
        "paid_usage_estimated": record.paid_usage_estimated,
        "local_cost_micro_usd": record.local_cost_micro_usd,
        "paid_cost_micro_usd": record.paid_cost_micro_usd,
        "latency_ms": record.latency_ms,
        "local_model": record.local_model,
        "paid_model": record.paid_model,
        "abstained": record.abstained,
        "features": _finite(record.features),
        "paid_only_micro_usd": record.paid_only_micro_usd,
        "retrieval_seconds": record.retrieval_seconds,
        "evaluation_seconds": record.evaluation_seconds,
        "retrieval_micro_usd": record.retrieval_micro_usd,
        "evaluation_micro_usd": record.evaluation_micro_usd,
        "price_version": price_version,
        "created_at": now,
    }


def _finite(features: dict[str, float] | None) -> dict[str, float] | None:
    """The features JSON can hold: a NaN or infinity (which PostgreSQL's JSON refuses) is left out rather
    than the answer's record lost; a row missing a feature trains no model that reads it."""
    if not features:
        return None
    return {k: float(v) for k, v in features.items() if math.isfinite(float(v))}


class Answers(LedgerBase):
    _answer_writer: GroupCommit | None = None

    def record_answer(self, record: AnswerRecord) -> None:
        """Store one answer's record; returns once it is committed. A second record for the same request
        id is ignored (retries). Concurrent answers share one commit (``group_commit``)."""
        values = answer_values(record, self.prices.version, self._now())
        if not self.group_commit:
            with self._write() as conn:
                conn.execute(insert_answer(self.engine), values)
            return
        if self._answer_writer is None:
            with _WRITER_LOCK:
                if self._answer_writer is None:
                    self._answer_writer = GroupCommit(self._write, insert_answer(self.engine))
        self._answer_writer.write(values)

    def _close_answers(self) -> None:
        if self._answer_writer is not None:
            self._answer_writer.close()

    def answer(self, request_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(sa.select(answers).where(answers.c.request_id == request_id)).first()
        return dict(row._mapping) if row else None
