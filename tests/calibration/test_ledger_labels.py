"""What each rating teaches each model, and how ratings and shadow labels merge (no database)."""

from __future__ import annotations

from datetime import datetime

import pytest

from assistant.answering.judge.features import FEATURES
from assistant.calibration.ledger_labels import LabelCounts, ledger_labels, rating_labels
from assistant.ledger import AnswerFeedback, ShadowLabel

NOW = datetime(2026, 3, 1)


def rated(
    rating: str,
    tier: str = "local",
    *,
    local_abstained: bool = False,
    shown_abstention: bool | None = None,
    request_id: str = "r1",
    given_by: str = "owner",
    features: bool = True,
    retrieval_only: bool = False,
) -> AnswerFeedback:
    values = {name: 0.5 for name in FEATURES} | {"abstained": float(local_abstained)}
    if retrieval_only:  # an answer routed before any local run reports these alone
        values = {"retrieval_top": 0.1, "retrieval_margin": 0.0}
    if shown_abstention is None:
        shown_abstention = tier == "none" or (tier == "local" and local_abstained)
    return AnswerFeedback(
        request_id=request_id,
        rating=rating,  # type: ignore[arg-type]
        comment=None,
        given_by=given_by,  # type: ignore[arg-type]
        user_id=1,
        created_at=NOW,
        updated_at=NOW,
        tier=tier,  # type: ignore[arg-type]
        collection="docs",
        abstained=shown_abstention,
        features=values if features else None,
    )


def shadow(request_id: str, *, agreed: bool, paid_abstained: bool = False) -> ShadowLabel:
    return ShadowLabel(
        request_id=request_id,
        collection="docs",
        local_answer="France",
        paid_answer="France" if agreed else "Italy",
        paid_model="gpt-4o-mini",
        agreement_f1=float(agreed),
        agreed=agreed,
        paid_abstained=paid_abstained,
        confidence=0.7,
        features={name: 0.5 for name in FEATURES},
        paid_cost_micro_usd=10,
    )


@pytest.mark.parametrize(
    ("feedback", "labels"),
    [
        # the local answer was shown: the rating is its label
        (rated("up"), {"local_correct": True, "answerable": True}),
        (rated("down"), {"local_correct": False}),  # a wrong answer does not say if a right one existed
        (rated("should_abstain"), {"local_correct": False, "answerable": False}),
        # "I don't know" shown: right exactly when the documents do not say
        (rated("up", "none", local_abstained=True), {"answerable": False, "local_correct": True}),
        (rated("up", "none"), {"answerable": False, "local_correct": False}),  # its unshown answer was wrong
        (rated("down", "none", local_abstained=True), {"answerable": True, "local_correct": False}),
        (rated("down", "none"), {"answerable": True}),  # the unshown local answer may have been right
        (rated("should_abstain", "none", local_abstained=True), {"answerable": False, "local_correct": True}),
        # the paid answer was shown: P(paid helps) only where the local answer is known wrong
        (rated("up", "paid"), {"answerable": True}),
        (
            rated("up", "paid", local_abstained=True),
            {"answerable": True, "local_correct": False, "paid_helps": True},
        ),
        (rated("down", "paid", local_abstained=True), {}),  # answerable or not: unknown, so nothing
        (
            rated("should_abstain", "paid"),
            {"answerable": False, "local_correct": False, "paid_helps_unanswerable": False},
        ),
        (rated("should_abstain", "paid", local_abstained=True), {"answerable": False, "local_correct": True}),
        (  # the paid tier said "I don't know" and was right to
            rated("up", "paid", shown_abstention=True),
            {"answerable": False, "local_correct": False, "paid_helps_unanswerable": True},
        ),
        # nothing to learn from where no local answer was judged
        (rated("up", "cache"), {}),
        (rated("up", features=False), {}),
        (rated("up", "none", retrieval_only=True), {}),
    ],
)
def test_what_a_rating_teaches_each_model(feedback: AnswerFeedback, labels: dict[str, bool]) -> None:
    assert rating_labels(feedback) == labels


def test_a_rating_overrules_a_contradicting_shadow_label_and_the_admin_overrules_the_owner() -> None:
    merged = ledger_labels(
        [
            shadow("r1", agreed=True),
            shadow("r2", agreed=False, paid_abstained=True),
            shadow("r3", agreed=True),
        ],
        [
            rated("down", request_id="r1"),  # contradicts the shadow's "agreed"
            rated("up", request_id="r2", given_by="admin"),
            rated("down", request_id="r2"),  # the owner's; the admin's counts
            rated("up", request_id="r4", tier="cache"),
            rated("down", request_id="r5", features=False),
        ],
    )
    labels = {row.request_id: row.labels for row in merged.rows}
    assert labels["r1"] == {"local_correct": False, "answerable": True}  # answerable: still the shadow's
    assert labels["r2"] == {"local_correct": True, "answerable": True}
    assert labels["r3"] == {"local_correct": True, "answerable": True}
    assert set(labels) == {"r1", "r2", "r3"}  # the cache hit and the unjudged answer teach nothing
    assert (merged.shadow, merged.ratings, merged.overruled, merged.unjudged) == (
        3,
        {"up": 2, "down": 2, "should_abstain": 0},
        2,
        2,
    )
    features, correct = merged.for_model("local_correct")
    assert len(features) == 3 and correct.count(False) == 1
    counts = LabelCounts.of(merged, synthetic=5, per_model={"local_correct": 8, "answerable": 8})
    assert counts.lines()[0] == (
        "labels: 3 shadow, 4 feedback (2 up, 2 down, 0 should have said I don't know), 5 synthetic"
    )
    assert "2 shadow label(s) contradicted by a person's rating: the rating counts" in counts.lines()


def test_a_row_without_a_models_features_does_not_train_it() -> None:
    partial = rated("down", "none", local_abstained=True)
    assert partial.features is not None
    del partial.features["retrieval_top"]
    merged = ledger_labels([], [partial])
    assert merged.for_model("answerable", ["question_support", "question_logprob"])[1] == [True]
    assert merged.for_model("answerable", ["retrieval_top"]) == ([], [])
