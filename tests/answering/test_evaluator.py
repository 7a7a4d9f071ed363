"""Evaluator features, the calibration file and its fit, and the decision rules (real MiniLM embedder)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from assistant.answering.evaluator import (
    FEATURES,
    Calibration,
    CalibrationError,
    Evaluator,
    default_calibration_path,
    extract_features,
    fit,
    relevance,
)
from assistant.answering.prompts import ABSTAIN_PHRASE
from assistant.local.backend import Generation
from index.retrieval import Passage

QUESTION = "In what country is Normandy located?"
PASSAGES = [
    Passage("a", "normans.md", "The Normans gave their name to Normandy, a region in France.", 0.62),
    Passage("b", "normans.md", "Rollo agreed to defend the Seine valley against other raiders.", 0.41),
    Passage("c", "cct.md", "A Turing machine is a model of computation.", 0.05),
]


def generation(text: str, logprobs: list[float] | None = None) -> Generation:
    logprobs = logprobs or [-0.1, -0.3, -0.05]
    return Generation(text, prompt_tokens=300, completion_tokens=len(logprobs), token_logprobs=logprobs)


def test_features_of_a_supported_answer_and_of_a_made_up_one(embedder) -> None:  # type: ignore[no-untyped-def]
    good = extract_features(QUESTION, PASSAGES, generation("Normandy is a region in France [1]."), embedder)
    bad = extract_features(
        QUESTION, PASSAGES, generation("It is in Portugal, near Lisbon [3].", [-2.0, -4.5, -1.0]), embedder
    )
    assert set(good) == set(FEATURES)
    assert good["lexical_support"] == 1.0  # "region", "france" are in passage 1; the rest is the question
    assert bad["lexical_support"] == 0.0
    assert good["embedding_support"] > bad["embedding_support"] + 0.2
    assert good["n_citations"] == 1 and good["abstained"] == 0
    assert good["retrieval_top"] == pytest.approx(0.62) and good["retrieval_margin"] == pytest.approx(0.21)
    assert good["mean_logprob"] == pytest.approx(-0.15) and bad["min_logprob"] == -4.5
    assert good["answer_tokens"] == 3


def test_uncited_answer_is_checked_against_all_passages(embedder) -> None:  # type: ignore[no-untyped-def]
    features = extract_features(QUESTION, PASSAGES, generation("France, by the Seine."), embedder)
    assert features["n_citations"] == 0 and features["lexical_support"] == 1.0


def test_abstention_is_flagged(embedder) -> None:  # type: ignore[no-untyped-def]
    features = extract_features(QUESTION, PASSAGES, generation(ABSTAIN_PHRASE), embedder)
    assert features["abstained"] == 1.0 and features["lexical_support"] == 0.0


def test_relevance_uses_the_dense_cosine_of_hybrid_results() -> None:
    fused = Passage("a", "s", "t", score=0.032, metadata={"dense_score": 0.71, "bm25_score": 3.2})
    bm25_only = Passage("b", "s", "t", score=0.016, metadata={"bm25_score": 5.0})
    assert relevance(fused) == 0.71 and relevance(bm25_only) == 0.0
    assert relevance(PASSAGES[0]) == 0.62


def test_default_calibration_ranks_good_above_bad(embedder) -> None:  # type: ignore[no-untyped-def]
    calibration = Calibration.load()
    assert calibration.features == list(FEATURES) and calibration.answerable is None
    good = extract_features(QUESTION, PASSAGES, generation("Normandy is a region in France [1]."), embedder)
    bad = extract_features(
        QUESTION, PASSAGES, generation("It is in Portugal, near Lisbon [3].", [-2.0, -4.5, -1.0]), embedder
    )
    assert calibration.probability(good) > 0.7 > 0.3 > calibration.probability(bad)


def test_squad_calibration_is_fitted_with_a_gate() -> None:
    squad = Calibration.load(default_calibration_path().with_name("calibration-squad2.json"))
    # From `eval calibrate` on the 200-question run: both models, a gate, and the held-out AUROC.
    assert squad.features == list(FEATURES)
    assert squad.answerable is not None and 0 < squad.abstain_below < 1
    assert squad.meta["auroc_held_out_after"] > 0.6


def test_calibration_save_load_round_trip(tmp_path: Path) -> None:
    calibration = Calibration.load()
    path = tmp_path / "nested" / "calibration.json"
    calibration.save(path)
    assert Calibration.load(path) == calibration


def test_bad_calibration_files_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match=r"not found.*eval calibrate"):
        Calibration.load(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CalibrationError, match="invalid"):
        Calibration.load(broken)
    Calibration.load().save(tmp_path / "ok.json")
    data = json.loads((tmp_path / "ok.json").read_text())
    data["features"][0] = "vibes"
    (tmp_path / "unknown.json").write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match="unknown features"):
        Calibration.load(tmp_path / "unknown.json")


def synthetic(
    seed: int, signal: str, when_true: float, when_false: float, sd: float
) -> tuple[list[dict[str, float]], list[bool]]:
    """200 rows of noise features, except ``signal``, which tells the label (a fair coin) from its mean."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for _ in range(200):
        label = bool(rng.random() < 0.5)
        row = {name: float(rng.normal()) for name in FEATURES}
        row[signal] = float(rng.normal(when_true if label else when_false, sd))
        row["abstained"] = 0.0
        rows.append(row)
        labels.append(label)
    return rows, labels


def test_fit_learns_which_way_features_point() -> None:
    rows, labels = synthetic(0, "lexical_support", 0.8, 0.3, 0.15)
    calibration = fit(rows, labels, meta={"dataset": "synthetic"})
    assert calibration.meta["n"] == 200 and calibration.meta["dataset"] == "synthetic"
    support = calibration.coef[calibration.features.index("lexical_support")]
    assert support > 1.0
    assert all(
        abs(c) < support / 2
        for name, c in zip(FEATURES, calibration.coef, strict=True)
        if name != "lexical_support"
    )
    supported = {**rows[0], "lexical_support": 0.9}
    unsupported = {**rows[0], "lexical_support": 0.2}
    assert calibration.probability(supported) > 0.8 > 0.2 > calibration.probability(unsupported)
    with pytest.raises(ValueError, match="both correct and incorrect"):
        fit(rows[:5], [True] * 5)


def test_decisions_follow_threshold_and_policies(embedder) -> None:  # type: ignore[no-untyped-def]
    ungated = replace(Calibration.load(), answerable=None)  # the gate has its own test below
    evaluator = Evaluator(ungated, embedder, threshold=0.5)
    answer = generation("Normandy is a region in France [1].")
    assert evaluator.assess(QUESTION, PASSAGES, answer, threshold=0.0).action == "local"
    low = evaluator.assess(QUESTION, PASSAGES, answer, threshold=1.0)
    assert low.action == "escalate" and low.reason.startswith("low_confidence p=")
    assert low.confidence is not None and low.reason.endswith("<1.00")

    abstained = evaluator.assess(QUESTION, PASSAGES, generation(ABSTAIN_PHRASE), threshold=0.0)
    assert (abstained.action, abstained.reason) == ("escalate", "local_abstained")
    trusting = Evaluator(ungated, embedder, on_local_abstain="abstain")
    assert trusting.assess(QUESTION, PASSAGES, generation(ABSTAIN_PHRASE)).action == "abstain"


def test_pre_generation_routing(embedder) -> None:  # type: ignore[no-untyped-def]
    evaluator = Evaluator(Calibration.load(), embedder, retrieval_floor=0.25)
    assert evaluator.route_before_generation(PASSAGES) is None
    weak = [Passage("c", "cct.md", "unrelated", 0.12)]
    routed = evaluator.route_before_generation(weak)
    assert routed is not None and (routed.action, routed.reason) == (
        "abstain",
        "retrieval_empty top=0.12<0.25",
    )
    empty = Evaluator(Calibration.load(), embedder, on_empty_retrieval="escalate").route_before_generation([])
    assert empty is not None and (empty.action, empty.reason) == ("escalate", "retrieval_empty no passages")


def test_uncited_answers_are_attributed_to_the_supporting_passage() -> None:
    from assistant.answering.evaluator import ensure_citation
    from index.retrieval import Passage

    passages = [
        Passage(id="a", source="a.md", text="Paris is the capital of France.", score=0.5),
        Passage(id="b", source="b.md", text="William of Normandy won at Hastings in 1066.", score=0.4),
    ]
    question = "Who won at Hastings?"
    assert ensure_citation(question, "William of Normandy won.", passages) == "William of Normandy won. [2]"
    assert ensure_citation(question, "William won [2].", passages) == "William won [2]."  # already cites
    abstain = "I don't know based on the documents."
    assert ensure_citation(question, abstain, passages) == abstain
    assert ensure_citation(question, "Zebras.", passages) == "Zebras."  # nothing supports it


def test_question_support_sees_a_swapped_entity(embedder) -> None:  # type: ignore[no-untyped-def]
    answer = generation("France")
    faithful = extract_features(QUESTION, PASSAGES, answer, embedder)
    swapped = extract_features("In what country is Brittany located?", PASSAGES, answer, embedder)
    # content words country, normandy, located: passage 1 holds "normandy"; "brittany" is in none
    assert faithful["question_support"] == pytest.approx(1 / 3)
    assert swapped["question_support"] == 0.0


def test_answerable_gate_abstains_and_round_trips(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    rows, answerable = synthetic(1, "question_support", 0.35, 0.0, 0.05)
    calibration = Calibration.load()
    calibration.answerable = fit(rows, answerable)
    calibration.abstain_below = 0.5
    path = tmp_path / "gated.json"
    calibration.save(path)
    loaded = Calibration.load(path)
    assert loaded == calibration and loaded.answerable is not None

    evaluator = Evaluator(loaded, embedder, threshold=0.0)
    kept = evaluator.assess(QUESTION, PASSAGES, generation("Normandy is a region in France [1]."))
    assert kept.action == "local" and kept.answerable is not None and kept.answerable > 0.5
    gated = evaluator.assess("In what country is Brittany located?", PASSAGES, generation("France"))
    assert gated.action == "abstain" and gated.reason.startswith("unanswerable p=")
    assert gated.answerable is not None and gated.answerable < 0.5

    bad = json.loads(path.read_text())
    bad["abstain_below"] = 1.5
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(CalibrationError, match="abstain_below"):
        Calibration.load(tmp_path / "bad.json")
