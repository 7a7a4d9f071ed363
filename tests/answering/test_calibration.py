"""The calibration file (format, errors, the bundled ones) and its fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.answering.calibration import (
    FORMAT_VERSION,
    Calibration,
    CalibrationError,
    fit,
)
from assistant.answering.decision import Policy, decide
from assistant.answering.evaluator import Evaluator
from assistant.answering.features import EVIDENCE_FEATURES, FEATURES, extract_features
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
    assert json.loads(path.read_text())["format_version"] == FORMAT_VERSION == 2


def test_files_without_a_format_version_are_version_1_and_newer_ones_are_refused(tmp_path: Path) -> None:
    old = REPO / "docs" / "eval" / "squad-200" / "calibration.json"  # written before format_version
    assert "format_version" not in json.loads(old.read_text())
    assert Calibration.load(old).paid_helps is None and Calibration.load(old).answerable is not None
    data = Calibration.load().to_dict()
    data["format_version"] = 3
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match=r"newer.json: calibration format_version 3 is newer"):
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
