"""The calibration file (format, errors, the bundled ones) and its fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.answering.decision import Policy, decide
from assistant.answering.judge.evaluator import Evaluator
from assistant.answering.judge.features import EVIDENCE_FEATURES, FEATURES, extract_features
from assistant.calibration import (
    FORMAT_VERSION,
    Calibration,
    CalibrationError,
    fit,
    paid_helps_mixture,
)
from tests.conftest import REPO
from tests.support.answering import PASSAGES, QUESTION, generation, synthetic


def test_default_calibration_ranks_good_above_bad(embedder) -> None:  # type: ignore[no-untyped-def]
    calibration = Calibration.load()
    good = extract_features(QUESTION, PASSAGES, generation("France [1]"), embedder)
    bad = extract_features(
        QUESTION, PASSAGES, generation("It is in Portugal, near Lisbon [3].", [-2.0, -4.5, -1.0]), embedder
    )
    assert calibration.probability(good) > calibration.probability(bad) + 0.1


def test_default_calibration_has_all_three_models_fitted_out_of_fold() -> None:
    calibration = Calibration.load()
    # From `eval calibrate` on two distributions: the shared sample's real questions and synthetic ones
    # from python3.11-doc (docs/eval/default-calibration).
    assert calibration.answerable is not None and calibration.paid_helps is not None
    assert set(calibration.features) <= set(FEATURES)
    # Whether the passages answer the question, and whether paying will help: the question and passages
    # only, never the local answer.
    assert set(calibration.answerable.features) <= set(EVIDENCE_FEATURES)
    assert set(calibration.paid_helps.features) <= set(EVIDENCE_FEATURES)
    assert "question_names_missing" in calibration.answerable.features
    by_distribution = calibration.meta["auroc_out_of_fold_by_distribution"]
    assert len(by_distribution["answerable"]) == 2
    # No feature the two distributions disagree on is read.
    for decision, flips in calibration.meta.get("left_out_sign_changes", {}).items():
        models = {"local_correct": calibration, "answerable": calibration.answerable}
        model = {**models, "paid_helps": calibration.paid_helps}.get(decision)
        assert model is None or not set(flips) & set(model.features)
    assert calibration.meta["auroc_out_of_fold"]["local_correct"] > 0.7
    assert calibration.meta["recommended_wrong_answer_usd"] > 0


def test_calibration_save_load_round_trip(tmp_path: Path) -> None:
    calibration = Calibration.load()
    path = tmp_path / "nested" / "calibration.json"
    calibration.save(path)
    assert Calibration.load(path) == calibration
    assert json.loads(path.read_text())["format_version"] == FORMAT_VERSION == 4


def test_files_without_a_format_version_are_version_1_and_newer_ones_are_refused(tmp_path: Path) -> None:
    old = REPO / "docs" / "eval" / "squad-200" / "calibration.json"  # written before format_version
    assert "format_version" not in json.loads(old.read_text())
    assert Calibration.load(old).paid_helps is None and Calibration.load(old).answerable is not None
    data = Calibration.load().to_dict()
    data["format_version"] = FORMAT_VERSION + 1
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match=r"newer.json: calibration format_version 5 is newer"):
        Calibration.load(newer)


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


def test_an_optional_feature_a_backend_could_not_give_is_read_at_its_mean() -> None:
    rows, labels = synthetic(2, "question_logprob", -1.0, -3.0, 0.5)
    unknown = [{k: v for k, v in row.items() if k != "question_logprob"} for row in rows[:40]]
    calibration = fit(unknown + rows[40:], labels)
    index = calibration.features.index("question_logprob")
    known = [row["question_logprob"] for row in rows[40:]]
    assert calibration.means[index] == pytest.approx(sum(known) / len(known))  # fitted on the known ones
    assert calibration.coef[index] > 1.0
    at_mean = {**rows[0], "question_logprob": calibration.means[index]}
    assert calibration.probability(unknown[0]) == pytest.approx(calibration.probability(at_mean))
    assert calibration.probability({**rows[0], "question_logprob": -1.0}) > calibration.probability(
        unknown[0]
    )
    required = {k: v for k, v in rows[0].items() if k != "lexical_support"}
    with pytest.raises(KeyError):
        calibration.probability(required)  # a required feature missing is a bug, not an unknown


def test_answerable_gate_abstains_and_round_trips(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    rows, answerable = synthetic(1, "question_support", 0.35, 0.0, 0.05)
    calibration = Calibration.load()
    calibration.answerable = fit(rows, answerable)
    calibration.abstain_below = 0.5
    path = tmp_path / "gated.json"
    calibration.save(path)
    loaded = Calibration.load(path)
    assert loaded == calibration and loaded.answerable is not None

    evaluator = Evaluator(loaded, embedder)
    policy = Policy(
        escalate_below=0.0, retrieval_floor=0.25, on_empty_retrieval="abstain", on_local_abstain="escalate"
    )
    kept = evaluator.judge(QUESTION, PASSAGES, generation("Normandy is a region in France [1]."))
    assert kept.abstain_below == 0.5 and kept.p_answerable is not None and kept.p_answerable > 0.5
    assert decide(kept, policy).action == "local"
    gated = evaluator.judge("In what country is Brittany located?", PASSAGES, generation("France"))
    assert gated.p_answerable is not None and gated.p_answerable < 0.5
    decision = decide(gated, policy)
    assert decision.action == "abstain" and decision.reason.startswith("unanswerable p=")

    bad = json.loads(path.read_text())
    bad["abstain_below"] = 1.5
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(CalibrationError, match="abstain_below"):
        Calibration.load(tmp_path / "bad.json")


def test_paid_helps_mixes_its_two_rates_by_how_likely_the_question_is_answerable_given_a_wrong_answer() -> (
    None
):
    # A wrong local answer (not an abstention) to a question answerable with a = 0.8, when the local answer
    # is right with p = 0.6: the question is answerable with (0.8 − 0.6) / 0.4 = 0.5 given the wrong answer.
    mixed = paid_helps_mixture(0.6, 0.1, p_answerable=0.8, p_correct=0.6, local_abstained=False)
    assert mixed == pytest.approx(0.5 * 0.6 + 0.5 * 0.1)
    # An abstention is wrong exactly when the question is answerable: a itself weighs the two.
    assert paid_helps_mixture(
        0.6, 0.1, p_answerable=0.8, p_correct=0.6, local_abstained=True
    ) == pytest.approx(0.8 * 0.6 + 0.2 * 0.1)
    # The two models are fitted apart: a below p, or p = 1, still gives a probability between the rates.
    assert paid_helps_mixture(0.6, 0.1, p_answerable=0.3, p_correct=0.6, local_abstained=False) == 0.1
    assert paid_helps_mixture(
        0.6, 0.1, p_answerable=0.9, p_correct=1.0, local_abstained=False
    ) == pytest.approx(0.9 * 0.6 + 0.1 * 0.1)


def test_the_default_calibration_pays_where_the_question_looks_answerable(embedder) -> None:  # type: ignore[no-untyped-def]
    calibration = Calibration.load()
    assert calibration.paid_helps is not None and calibration.answerable is not None
    rate = calibration.paid_helps_unanswerable
    assert rate is not None and 0.0 < rate < 0.5  # the paid tier seldom abstains where it should
    answered = extract_features(QUESTION, PASSAGES, generation("Portugal"), embedder)
    unanswered = extract_features(
        "In what year did Brittany join Spain?", PASSAGES, generation("1066"), embedder
    )
    helps = [calibration.p_paid_helps(f) for f in (answered, unanswered)]
    answerable = [calibration.p_answerable(f) for f in (answered, unanswered)]
    assert answerable[0] > answerable[1]  # type: ignore[operator]
    assert helps[0] > helps[1] >= rate  # type: ignore[operator]
    evaluator = Evaluator(calibration, embedder)
    judgement = evaluator.judge(QUESTION, PASSAGES, generation("Portugal"))
    assert judgement.p_paid_helps == pytest.approx(helps[0])


def test_format_2_files_keep_their_meaning_and_bad_rates_are_refused(tmp_path: Path) -> None:
    older = Calibration.load(REPO / "docs" / "eval" / "squad-240" / "calibration.json")  # format 2
    assert older.paid_helps is not None and older.paid_helps_unanswerable is None
    features = dict.fromkeys(FEATURES, 0.5)
    # Format 2's paid_helps is already P(paid right | local wrong) on every question: used as it is.
    assert older.p_paid_helps(features) == older.paid_helps.probability(features)
    data = Calibration.load().to_dict()
    data["paid_helps_unanswerable"] = 1.5
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match="paid_helps_unanswerable must be in"):
        Calibration.load(tmp_path / "bad.json")
