"""The refit from the ledger with a collection's own labels handed in, and too few labels refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.answering.judge.features import FEATURES
from assistant.calibration import (
    Calibration,
    CalibrationError,
    LabelledAnswers,
    collection_calibration_path,
    refit_from_ledger,
)
from assistant.settings import Settings


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("PENNY_CONFIG", str(tmp_path / "absent.toml"))
    return Settings(data_dir=tmp_path / "data")


def labelled(n: int) -> LabelledAnswers:
    correct = [i % 3 != 0 for i in range(n)]
    return LabelledAnswers(
        [{name: (1.0 if c else 0.0) + 0.01 * i for name in FEATURES} for i, c in enumerate(correct)],
        correct,
        [i % 4 != 0 for i in range(n)],
    )


def test_a_refit_fits_on_the_labels_handed_in_when_the_ledger_has_none(settings: Settings) -> None:
    refit = refit_from_ledger(settings, collection="docs", synthetic=labelled(30))
    assert refit.shadow_labels == 0 and refit.synthetic_labels == 30
    assert refit.path == collection_calibration_path(settings.calibration_dir, "docs")
    assert refit.auroc["local_correct"] is not None and refit.auroc["local_correct"] > 0.9
    fitted = Calibration.load(refit.path)
    assert fitted.meta["synthetic"] == 30 and fitted.answerable is not None
    assert fitted.paid_helps is not None  # kept from the default: no label says it
    # Fitted for the running local model and style; P(paid helps) still for the default's paid model.
    assert fitted.stamp is not None
    assert (fitted.stamp.local_model.name, fitted.stamp.answer_style) == ("qwen2.5-0.5b", "auto")
    assert fitted.stamp.paid_model == "qwen2.5-1.5b"
    assert [(d.run, d.questions) for d in fitted.stamp.data] == [
        ("ledger shadow labels", 0),
        ("penny calibrate --collection docs", 30),
    ]
    assert refit.lines()[-1] == f"calibration written to {refit.path}"


def test_too_few_labels_are_refused_with_the_fix(settings: Settings) -> None:
    with pytest.raises(CalibrationError, match=r"5 labelled answers \(3 correct\); a refit needs"):
        refit_from_ledger(settings, synthetic=labelled(5))
    assert not (settings.calibration_dir / "ledger.json").exists()
