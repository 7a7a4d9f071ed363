"""The refit from the ledger: shadow labels, people's ratings and a collection's own labels, counted by
source; below the minimum nothing is replaced, and `penny calibrate --from-ledger` says how many it had."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.answering.judge.features import FEATURES
from assistant.calibration import (
    Calibration,
    LabelledAnswers,
    TooFewLabels,
    collection_calibration_path,
    refit_from_ledger,
)
from assistant.ledger import AnswerRecord, ShadowLabel, open_ledger
from assistant.settings import Settings, get_settings


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


def rate_answers(settings: Settings, ratings: list[str], *, shadow: int = 0) -> None:
    """Local answers in the ledger, each rated by its owner; the first ``shadow`` also shadow-checked
    (agreeing with the rating). The features separate right from wrong, so a fit can tell."""
    ledger = open_ledger(settings, paid_models=())
    owner = ledger.system_user()
    for i, rating in enumerate(ratings):
        right = rating == "up"
        features = {name: (1.0 if right else 0.0) + 0.01 * i for name in FEATURES} | {"abstained": 0.0}
        request_id = f"r{i}"
        ledger.record_answer(
            AnswerRecord(request_id, owner, "local", collection="docs", features=features, abstained=False)
        )
        ledger.record_feedback(request_id, rating, principal=owner)
        if i < shadow:
            ledger.record_shadow_label(
                ShadowLabel(request_id, "docs", "a", "a", "gpt-4o-mini", 1.0, right, False, 0.5, features, 1)
            )
    ledger.close()


def test_a_refit_fits_on_the_labels_handed_in_when_the_ledger_has_none(settings: Settings) -> None:
    refit = refit_from_ledger(settings, collection="docs", synthetic=labelled(30), min_labels=30)
    assert (refit.counts.shadow, sum(refit.counts.ratings.values()), refit.counts.synthetic) == (0, 0, 30)
    assert refit.path == collection_calibration_path(settings.calibration_dir, "docs")
    assert refit.auroc["local_correct"] is not None and refit.auroc["local_correct"] > 0.9
    fitted = Calibration.load(refit.path)
    assert fitted.meta["synthetic"] == 30 and fitted.meta["min_labels"] == 30
    assert fitted.answerable is not None and "answerable" in refit.auroc
    assert fitted.paid_helps is not None  # kept from the default: no label says it
    # Fitted for the running local model and style; P(paid helps) still for the default's paid model.
    assert fitted.stamp is not None
    assert (fitted.stamp.local_model.name, fitted.stamp.answer_style) == ("qwen2.5-0.5b", "auto")
    assert fitted.stamp.paid_model == "qwen2.5-1.5b"
    assert [(d.run, d.questions) for d in fitted.stamp.data] == [
        ("ledger shadow labels", 0),
        ("ledger feedback", 0),
        ("penny calibrate --collection docs", 30),
    ]
    assert refit.lines()[-1] == f"calibration written to {refit.path}"


def test_too_few_labels_replace_nothing_and_say_how_many_there_were(settings: Settings) -> None:
    assert settings.cascade.refit_min_labels == 50  # the documented default
    with pytest.raises(
        TooFewLabels, match=r"30 labels for P\(local correct\) \(20 right\); a refit needs at "
    ):
        refit_from_ledger(settings, synthetic=labelled(30))
    assert not (settings.calibration_dir / "ledger.json").exists()


def test_ratings_are_labels_counted_by_source(settings: Settings) -> None:
    rate_answers(settings, ["up", "up", "down"] * 8 + ["should_abstain"] * 4, shadow=6)
    refit = refit_from_ledger(settings, min_labels=28)
    counts = refit.counts
    assert (counts.shadow, dict(counts.ratings)) == (6, {"up": 16, "down": 8, "should_abstain": 4})
    assert counts.per_model["local_correct"] == 28 and counts.overruled == 0
    # should_abstain and up say answerable; down does not: 16 + 4 from ratings, the shadow adds its 2 downs
    assert counts.per_model["answerable"] == 22
    assert "P(answerable) kept from the current calibration: 22 labels (18 answerable)" in refit.lines()[-3]
    fitted = Calibration.load(refit.path)
    assert fitted.meta["feedback_labels"] == 28 and fitted.meta["shadow_labels"] == 6
    right = {name: 1.1 for name in FEATURES} | {"abstained": 0.0}
    wrong = {name: 0.1 for name in FEATURES} | {"abstained": 0.0}
    assert fitted.probability(right) > 0.5 > fitted.probability(wrong)


def test_penny_calibrate_from_ledger_prints_the_counts_and_refuses_below_the_minimum(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from eval.calibrate_cli import penny_calibrate_command

    rate_answers(settings, ["up", "down", "should_abstain", "up"], shadow=1)
    monkeypatch.setenv("PENNY_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    try:
        refused = CliRunner().invoke(penny_calibrate_command, ["--from-ledger"])
        nothing_written = not (settings.calibration_dir / "ledger.json").exists()
        written = CliRunner().invoke(penny_calibrate_command, ["--from-ledger", "--min-labels", "4"])
    finally:
        get_settings.cache_clear()
    assert refused.exit_code == 1
    assert refused.output.splitlines()[0] == (
        "labels: 1 shadow, 4 feedback (2 up, 1 down, 1 should have said I don't know), 0 synthetic"
    )
    assert (
        "Error: not replacing the calibration: 4 labels for P(local correct) (2 right); a refit needs at "
        in (refused.output)
    )
    assert nothing_written
    assert written.exit_code == 0, written.output
    assert written.output.splitlines()[0] == refused.output.splitlines()[0]
    assert f"calibration written to {settings.calibration_dir / 'ledger.json'}" in written.output
