"""Per-decision AUROC of a run, from the probabilities recorded with each answer (the held-out view of a
calibration fitted elsewhere)."""

from __future__ import annotations

import pytest

from assistant.answering.decision import Policy
from assistant.answering.judge.evaluator import Judgement
from assistant.answering.prompt.grounded import ABSTAIN_PHRASE
from assistant.settings import CascadeSettings
from eval.records import QuestionRecord, TierCall
from eval.summaries import decision_aurocs

POLICY = Policy.from_settings(CascadeSettings())
PAID = TierCall("France [1]", "p", "paid", cost_micro_usd=300, latency_ms=1500.0)


def record(answers: list[str], local: str, p: float, a: float, q: float) -> QuestionRecord:
    call = TierCall(local, "l", "local", cost_micro_usd=20, latency_ms=800.0)
    judgement = Judgement(p, p_answerable=a, p_paid_helps=q, local_abstained=local == ABSTAIN_PHRASE)
    return QuestionRecord(
        "q", "Where is Normandy?", answers, None, [], 1.0, call, judgement, PAID, policy=POLICY
    )


def test_each_decision_is_scored_against_its_own_label() -> None:
    records = [
        record(["France"], "Normandy is in France", p=0.2, a=0.9, q=0.8),  # local wrong (F1 0.4), paid right
        record(["France"], "France [1]", p=0.9, a=0.8, q=0.3),  # local right
        record([], "France", p=0.3, a=0.85, q=0.1),  # unanswerable, answered: local wrong, paid wrong too
        record([], ABSTAIN_PHRASE, p=0.8, a=0.3, q=0.2),  # unanswerable, abstained: local right
    ]
    found = {d.decision: (d.auroc, d.positives, d.n) for d in decision_aurocs(records)}
    assert found == {
        "local answer correct": (1.0, 2, 4),
        "local answer correct, answerable questions": (1.0, 1, 2),
        # answerable 0.9, 0.8 against unanswerable 0.85, 0.3: three of four pairs in order
        "answerable": (pytest.approx(0.75), 2, 4),
        "paid answer right, where the local one is wrong": (1.0, 1, 2),
    }
