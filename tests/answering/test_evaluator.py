"""The evaluator's judgement of real local answers (real MiniLM embedder), and the decisions it leads to."""

from __future__ import annotations

from dataclasses import replace

from assistant.answering.decision import Policy, decide, route
from assistant.answering.judge.evaluator import Evaluator
from assistant.answering.judge.features import FEATURES, OPTIONAL_FEATURES, retrieval_top_and_margin
from assistant.answering.prompt.grounded import ABSTAIN_PHRASE
from assistant.calibration import Calibration
from assistant.settings import CascadeSettings
from index.retrieval import Passage
from tests.support.answering import PASSAGES, QUESTION, generation

POLICY = Policy.from_settings(CascadeSettings())


def test_judgement_holds_the_features_and_the_calibration_probabilities(embedder) -> None:  # type: ignore[no-untyped-def]
    calibration = Calibration.load()
    judgement = Evaluator(calibration, embedder).judge(
        QUESTION, PASSAGES, generation("Normandy is a region in France [1].")
    )
    # Not scored here (a backend that cannot): the question's log-probability is unknown, not made up.
    assert set(judgement.features) == set(FEATURES) - set(OPTIONAL_FEATURES) and not judgement.local_abstained
    assert judgement.p_correct == calibration.probability(judgement.features)
    # The bundled file has all three models; the threshold rule's gate is off.
    assert judgement.p_answerable == calibration.p_answerable(judgement.features) is not None
    assert judgement.p_paid_helps == calibration.p_paid_helps(judgement.features) is not None
    assert judgement.abstain_below == 0.0
    abstained = Evaluator(calibration, embedder).judge(QUESTION, PASSAGES, generation(ABSTAIN_PHRASE))
    assert abstained.local_abstained and abstained.features["abstained"] == 1.0


def test_decisions_follow_threshold_and_policies(embedder) -> None:  # type: ignore[no-untyped-def]
    ungated = replace(Calibration.load(), answerable=None)  # the gate has its own test
    evaluator = Evaluator(ungated, embedder)
    judgement = evaluator.judge(QUESTION, PASSAGES, generation("Normandy is a region in France [1]."))
    assert decide(judgement, POLICY, threshold=0.0).action == "local"
    low = decide(judgement, POLICY, threshold=1.0)
    assert low.action == "escalate" and low.reason.startswith("low_confidence p=")
    assert low.confidence == judgement.p_correct and low.reason.endswith("<1.00")

    abstained = evaluator.judge(QUESTION, PASSAGES, generation(ABSTAIN_PHRASE))
    decision = decide(abstained, POLICY, threshold=0.0)
    assert (decision.action, decision.reason) == ("escalate", "local_abstained")
    trusting = replace(POLICY, on_local_abstain="abstain", wrong_answer_usd=None)  # the threshold rule
    assert decide(abstained, trusting).action == "abstain"


def test_pre_generation_routing_on_retrieved_passages() -> None:
    top, _ = retrieval_top_and_margin(PASSAGES)
    assert route(top, True, POLICY) is None
    weak_top, _ = retrieval_top_and_margin([Passage("c", "cct.md", "unrelated", 0.12)])
    routed = route(weak_top, True, POLICY)
    assert routed is not None and (routed.action, routed.reason) == (
        "abstain",
        "retrieval_empty top=0.12<0.25",
    )
