"""Feedback on answers: 👍, 👎 or "should have said I don't know", from the answer's owner or the operator.

An answer belongs to the user it was recorded for (``answers.user_id``). Only they, or the admin key, may
rate it; to anyone else it does not exist: the same NotFound as an unknown request id, so request ids
cannot be probed. One rating per answer and giver: a new one replaces the old, and the same one again
changes nothing. ``penny calibrate --from-ledger`` turns ratings into labels
(``assistant/calibration/ledger_labels.py``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from assistant.ledger.base import LedgerBase, naive_utc
from assistant.ledger.errors import LedgerError, NotFound
from assistant.ledger.records import RATINGS, AnswerFeedback, Principal
from assistant.ledger.schema import answer_feedback, answers

MAX_COMMENT_CHARS = 2000


def _feedback(row: Any) -> AnswerFeedback:
    return AnswerFeedback(
        request_id=row.request_id,
        rating=row.rating,
        comment=row.comment,
        given_by=row.given_by,
        user_id=row.user_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        tier=row.tier,
        collection=row.collection,
        abstained=row.abstained,
        features=dict(row.features) if row.features else None,
    )


def _with_answers() -> sa.Select:
    return sa.select(
        answer_feedback,
        answers.c.tier,
        answers.c.collection,
        answers.c.abstained,
        answers.c.features,
    ).join(answers, answers.c.request_id == answer_feedback.c.request_id)


class Feedback(LedgerBase):
    def record_feedback(
        self,
        request_id: str,
        rating: str,
        *,
        principal: Principal | None,
        comment: str | None = None,
    ) -> AnswerFeedback:
        """Store ``principal``'s rating of their answer (None: the admin key, any answer), replacing the
        rating they gave it before. NotFound for an unknown request id and for someone else's answer alike."""
        if rating not in RATINGS:
            raise LedgerError(f"rating must be one of {', '.join(RATINGS)}, not {rating!r}")
        comment = (comment or "").strip() or None
        if comment is not None and len(comment) > MAX_COMMENT_CHARS:
            raise LedgerError(f"comment is {len(comment)} characters long; at most {MAX_COMMENT_CHARS}")
        given_by = "owner" if principal is not None else "admin"
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        with self._write() as conn:
            owner = conn.execute(
                sa.select(answers.c.user_id).where(answers.c.request_id == request_id)
            ).scalar_one_or_none()
            if owner is None or (principal is not None and owner != principal.user_id):
                raise NotFound(
                    f"no answer {request_id!r} of yours: rate an answer with the request_id of its "
                    "response's penny block"
                )
            now = self._now()
            insert = dialect.insert(answer_feedback).values(
                request_id=request_id,
                given_by=given_by,
                user_id=principal.user_id if principal is not None else None,
                rating=rating,
                comment=comment,
                created_at=now,
                updated_at=now,
            )
            changed = sa.or_(
                answer_feedback.c.rating != insert.excluded.rating,
                answer_feedback.c.comment.is_distinct_from(insert.excluded.comment),
            )
            conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[answer_feedback.c.request_id, answer_feedback.c.given_by],
                    set_={
                        "rating": insert.excluded.rating,
                        "comment": insert.excluded.comment,
                        "user_id": insert.excluded.user_id,
                        "updated_at": insert.excluded.updated_at,
                    },
                    where=changed,  # the same rating again leaves the row, and its time, as it was
                )
            )
            row = conn.execute(
                _with_answers().where(
                    answer_feedback.c.request_id == request_id, answer_feedback.c.given_by == given_by
                )
            ).one()
        return _feedback(row)

    def answer_feedback(
        self, *, collection: str | None = None, since: datetime | None = None
    ) -> list[AnswerFeedback]:
        """Every rating with its answer, newest first; ``collection`` (the answer's) and ``since`` (when
        the rating was last given) narrow them. For operators and the refit, never for an API caller."""
        query = _with_answers().order_by(answer_feedback.c.updated_at.desc())
        if collection is not None:
            query = query.where(answers.c.collection == collection)
        if since is not None:
            query = query.where(answer_feedback.c.updated_at >= naive_utc(since))
        with self._read() as conn:
            return [_feedback(row) for row in conn.execute(query).all()]
