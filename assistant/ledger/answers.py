"""Answers: one record per answer, whichever tier produced it, and what the local tier's time cost."""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from assistant.ledger.base import LedgerBase
from assistant.ledger.records import AnswerRecord
from assistant.ledger.schema import answers

log = logging.getLogger("penny.ledger")


class Answers(LedgerBase):
    def local_cost_micro_usd(self, worker_seconds: float) -> int:
        return self.prices.local_cost_micro_usd(worker_seconds, self.local_micro_usd_per_hour)

    def record_answer(self, record: AnswerRecord) -> None:
        """Store one answer's record. A second record for the same request id is ignored (retries)."""
        values = {
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
            "price_version": self.prices.version,
            "created_at": self._now(),
        }
        with self._write() as conn:
            if conn.execute(
                sa.select(answers.c.request_id).where(answers.c.request_id == record.request_id)
            ).first():
                log.info("answer %s already recorded", record.request_id)
                return
            conn.execute(answers.insert(), values)

    def answer(self, request_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            row = conn.execute(sa.select(answers).where(answers.c.request_id == request_id)).first()
        return dict(row._mapping) if row else None
