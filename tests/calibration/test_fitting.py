"""The fitting's small parts: AUROC, the constant-rate model, each decision's feature set."""

from __future__ import annotations

import pytest

from assistant.answering.judge.features import EVIDENCE_FEATURES, FEATURES
from assistant.calibration import Calibration, auroc
from assistant.calibration.fitting import constant_model, feature_sets, smoothed_rate


def test_auroc() -> None:
    # Positives (0.9, 0.4) vs negatives (0.5, 0.1): pairs ranked right: (0.9>0.5, 0.9>0.1, 0.4>0.1) = 3 of 4
    assert auroc([True, True, False, False], [0.9, 0.4, 0.5, 0.1]) == pytest.approx(0.75)
    assert auroc([True, True], [0.2, 0.3]) is None


def test_a_constant_model_gives_the_smoothed_rate_and_each_label_its_own_left_out() -> None:
    labels = [True, False, False, False]
    rate, left_out = smoothed_rate(labels)
    assert rate == pytest.approx(2 / 6)
    assert left_out == pytest.approx([1 / 5, 2 / 5, 2 / 5, 2 / 5])
    model, oof = constant_model(labels, ["lexical_support"], meta={"label": "x"})
    assert oof == left_out
    assert model.probability({"lexical_support": 5.0}) == pytest.approx(rate)
    assert model.meta == {"n": 4, "positive_rate": 0.25, "label": "x", "constant": True}


def test_feature_sets_follow_the_calibration_and_leave_out_exclusions() -> None:
    defaults = feature_sets(None)
    assert defaults == {
        "local_correct": None,
        "answerable": EVIDENCE_FEATURES,
        "paid_helps": EVIDENCE_FEATURES,
    }
    names = ["lexical_support", "retrieval_top"]
    model = Calibration(names, [0.0, 0.0], 0.0, [0.0, 0.0], [1.0, 1.0])
    assert feature_sets(model)["local_correct"] == names
    excluded = feature_sets(None, exclude=["lexical_support"])
    assert excluded["local_correct"] == [n for n in FEATURES if n != "lexical_support"]
    assert "lexical_support" not in (excluded["answerable"] or ())
