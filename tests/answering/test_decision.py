"""When to serve, abstain or escalate: the pure rules the cascade and eval share, one case per branch."""

from __future__ import annotations

from dataclasses import replace

import pytest

from assistant.answering.decision import Decision, Policy, decide, route
from assistant.answering.judge.evaluator import Judgement

POLICY = Policy(
    escalate_below=0.5, retrieval_floor=0.25, on_empty_retrieval="abstain", on_local_abstain="escalate"
)
GATED = {"p_answerable": 0.3, "abstain_below": 0.4}  # the calibration's gate says: unanswerable


@pytest.mark.parametrize(
    ("top", "has_passages", "policy", "local_only", "expected"),
    [
        (0.62, True, POLICY, False, None),
        (0.25, True, POLICY, False, None),  # at the floor is above it
        (0.12, True, POLICY, False, ("abstain", "retrieval_empty top=0.12<0.25")),
        (0.0, False, POLICY, False, ("abstain", "retrieval_empty no passages")),
        (0.9, False, POLICY, False, ("abstain", "retrieval_empty no passages")),  # no passage, no answer
        (
            0.12,
            True,
            Policy(0.5, 0.25, on_empty_retrieval="escalate", on_local_abstain="escalate"),
            False,
            ("escalate", "retrieval_empty top=0.12<0.25"),
        ),
        (
            0.12,
            True,
            Policy(0.5, 0.25, on_empty_retrieval="escalate", on_local_abstain="escalate"),
            True,
            ("abstain", "mode=local; retrieval_empty top=0.12<0.25"),
        ),
        (0.62, True, POLICY, True, None),
    ],
    ids=[
        "relevant",
        "at-floor",
        "below-floor-abstains",
        "no-passages",
        "no-passages-whatever-top",
        "below-floor-escalates",
        "local-mode-never-pays",
        "local-mode-relevant",
    ],
)
def test_route(
    top: float, has_passages: bool, policy: Policy, local_only: bool, expected: tuple[str, str] | None
) -> None:
    decision = route(top, has_passages, policy, local_only=local_only)
    assert (None if decision is None else (decision.action, decision.reason)) == expected
    assert decision is None or decision.judgement is None  # nothing was generated to judge


@pytest.mark.parametrize(
    ("judgement", "policy", "overrides", "expected"),
    [
        (Judgement(0.97), POLICY, {}, ("local", "confident p=0.97>=0.50")),
        (Judgement(0.5), POLICY, {}, ("local", "confident p=0.50>=0.50")),  # P = T stays local
        (Judgement(0.31), POLICY, {}, ("escalate", "low_confidence p=0.31<0.50")),
        (Judgement(0.31), POLICY, {"threshold": 0.3}, ("local", "confident p=0.31>=0.30")),
        (Judgement(0.97), POLICY, {"threshold": 1.0}, ("escalate", "low_confidence p=0.97<1.00")),
        (Judgement(0.99, local_abstained=True), POLICY, {}, ("escalate", "local_abstained")),
        (
            Judgement(0.99, local_abstained=True),
            Policy(0.5, 0.25, on_empty_retrieval="abstain", on_local_abstain="abstain"),
            {},
            ("abstain", "local_abstained"),
        ),
        (Judgement(0.99, **GATED), POLICY, {}, ("abstain", "unanswerable p=0.30<0.40")),
        # The gate comes first: an unanswerable question is not escalated even if the local model abstained.
        (Judgement(0.1, local_abstained=True, **GATED), POLICY, {}, ("abstain", "unanswerable p=0.30<0.40")),
        (Judgement(0.99, **GATED), POLICY, {"abstain_below": 0.0}, ("local", "confident p=0.99>=0.50")),
        (
            Judgement(0.99, p_answerable=0.6),
            POLICY,
            {"abstain_below": 0.7},
            ("abstain", "unanswerable p=0.60<0.70"),
        ),
        (
            Judgement(0.99, abstain_below=0.9),
            POLICY,
            {},
            ("local", "confident p=0.99>=0.50"),
        ),  # no gate model
        (Judgement(0.31), POLICY, {"local_only": True}, ("local", "mode=local; low_confidence p=0.31<0.50")),
        (
            Judgement(0.99, **GATED),
            POLICY,
            {"local_only": True},
            ("local", "mode=local; unanswerable p=0.30<0.40"),
        ),
    ],
    ids=[
        "confident",
        "at-threshold",
        "low-confidence",
        "threshold-override-keeps",
        "threshold-override-escalates",
        "local-abstained-escalates",
        "local-abstained-trusted",
        "unanswerable",
        "gate-before-abstention",
        "gate-override-off",
        "gate-override-higher",
        "no-answerable-model",
        "local-mode-serves-low-confidence",
        "local-mode-serves-unanswerable",
    ],
)
def test_decide(
    judgement: Judgement, policy: Policy, overrides: dict[str, float | bool], expected: tuple[str, str]
) -> None:
    decision = decide(judgement, policy, **overrides)  # type: ignore[arg-type]
    assert (decision.action, decision.reason) == expected
    assert decision.judgement == judgement and decision.confidence == judgement.p_correct
    assert decision.answerable == judgement.p_answerable


def test_decision_carries_the_judgement_features() -> None:
    judgement = Judgement(0.8, features={"retrieval_top": 0.6, "abstained": 0.0})
    decision = decide(judgement, POLICY)
    assert decision.features == judgement.features and decision.features is not judgement.features
    assert Decision("local", "client_disconnected").confidence is None


PRICED = replace(POLICY, wrong_answer_usd=0.005, abstain_usd=0.02)


def test_a_likely_right_abstention_is_not_paid_to_be_broken() -> None:
    # The local tier abstained on a question that is likely unanswerable (a = 0.1): escalating replaces the
    # abstention with the paid answer, right only with probability q, so it costs c + (1 − q)·W, not
    # c + (1 − p)(1 − q)·W as for an answer the paid one is assumed to keep right.
    judgement = Judgement(0.83, p_answerable=0.1, local_abstained=True, p_paid_helps=0.25)
    kept = decide(judgement, PRICED, paid_cost_usd=0.0013)
    assert kept.action == "abstain" and kept.reason.startswith("local_abstained ")
    assert kept.expected_loss_usd == pytest.approx({"abstain": 0.1 * 0.02, "escalate": 0.0013 + 0.75 * 0.005})
    # A doubtful abstention on a question that is likely answerable and that the paid tier likely answers.
    doubtful = decide(replace(judgement, p_answerable=0.9, p_paid_helps=0.8), PRICED, paid_cost_usd=0.0013)
    assert doubtful.action == "escalate" and doubtful.expected_cost_usd == 0.0013
