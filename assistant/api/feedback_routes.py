"""``POST /v1/feedback``: 👍, 👎 or "should have said I don't know" on one of your answers.

The body names the answer by the ``request_id`` of its response's ``penny`` block. The answer's owner may
rate it, and so may the operator with the admin key; for anyone else it does not exist (404, as for an
unknown id). A later rating by the same giver replaces the earlier one. What a rating teaches the evaluator
is ``assistant/calibration/ledger_labels.py``'s; docs/feedback.md says it for users.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar import Request, post
from litestar.params import JSONBody
from msgspec import Struct

from assistant.api.auth import acting_principal, ledger_of, require_api_or_admin_key


class FeedbackRequest(Struct, forbid_unknown_fields=True):
    request_id: str
    rating: str  # up | down | should_abstain; checked by the ledger, whose message names the choices
    comment: str | None = None


def _iso(moment: datetime) -> str:
    return moment.isoformat() + "Z"


@post("/v1/feedback", status_code=200, guards=[require_api_or_admin_key], sync_to_thread=True)
def give_feedback(data: JSONBody[FeedbackRequest], request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Rate one of your answers: ``rating`` up, down or should_abstain, an optional ``comment`` (at most
    2000 characters). Giving another rating replaces yours."""
    stored = ledger_of(request).record_feedback(
        data.request_id.strip(), data.rating, principal=acting_principal(request), comment=data.comment
    )
    return {
        "object": "feedback",
        "request_id": stored.request_id,
        "rating": stored.rating,
        "comment": stored.comment,
        "given_by": stored.given_by,
        "created_at": _iso(stored.created_at),
        "updated_at": _iso(stored.updated_at),
    }


FEEDBACK_ROUTES: list[Any] = [give_feedback]
