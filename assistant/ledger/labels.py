"""Shadow labels: locally served answers that the paid tier also answered, in the background.

They feed two things: the live estimate of local precision (``/metrics``) and ``penny calibrate
--from-ledger``, which refits the evaluator on them.
"""

from __future__ import annotations

import logging
from datetime import datetime

import sqlalchemy as sa

from assistant.ledger.base import LedgerBase, naive_utc
from assistant.ledger.records import ShadowLabel
from assistant.ledger.schema import shadow_labels

log = logging.getLogger("penny.ledger")


class Labels(LedgerBase):
    def record_shadow_label(self, label: ShadowLabel) -> None:
        """Store one label; a second for the same request id is ignored (one check per answer)."""
        values = {
            "request_id": label.request_id,
            "collection": label.collection,
            "local_answer": label.local_answer,
            "paid_answer": label.paid_answer,
            "paid_model": label.paid_model,
            "agreement_f1": label.agreement_f1,
            "agreed": label.agreed,
            "paid_abstained": label.paid_abstained,
            "confidence": label.confidence,
            "features": {k: float(v) for k, v in label.features.items()},
            "paid_cost_micro_usd": label.paid_cost_micro_usd,
            "created_at": self._now(),
        }
        with self._write() as conn:
            exists = conn.execute(
                sa.select(shadow_labels.c.request_id).where(shadow_labels.c.request_id == label.request_id)
            ).first()
            if exists:
                log.info("shadow label %s already recorded", label.request_id)
                return
            conn.execute(shadow_labels.insert(), values)

    def shadow_labels(
        self, *, collection: str | None = None, since: datetime | None = None, limit: int | None = None
    ) -> list[ShadowLabel]:
        """Labels, newest first; ``collection`` and ``since`` narrow them, ``limit`` keeps the newest."""
        query = sa.select(shadow_labels).order_by(shadow_labels.c.created_at.desc())
        if collection is not None:
            query = query.where(shadow_labels.c.collection == collection)
        if since is not None:
            query = query.where(shadow_labels.c.created_at >= naive_utc(since))
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            ShadowLabel(
                request_id=r.request_id,
                collection=r.collection,
                local_answer=r.local_answer,
                paid_answer=r.paid_answer,
                paid_model=r.paid_model,
                agreement_f1=r.agreement_f1,
                agreed=r.agreed,
                paid_abstained=r.paid_abstained,
                confidence=r.confidence,
                features=dict(r.features),
                paid_cost_micro_usd=int(r.paid_cost_micro_usd),
                created_at=r.created_at,
            )
            for r in rows
        ]
