"""The core of self-calibration: where a collection's work files live, and the refit of P(local correct)
and P(answerable) from the ledger's labels, shadow checks and people's ratings (``penny calibrate
--from-ledger``).

Writing questions from a collection and answering them as an eval run is ``eval``'s
(:mod:`eval.self_calibration`); a refit takes that run's labels as :class:`LabelledAnswers`, so nothing
here imports ``eval``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.answering.judge.features import FEATURES
from assistant.calibration.ledger_labels import LabelCounts, ledger_labels
from assistant.calibration.model import CalibrationError

if TYPE_CHECKING:
    from assistant.calibration.model import Calibration
    from assistant.calibration.stamp import Stamp
    from assistant.ledger import AnswerFeedback, PriceTable, ShadowLabel
    from assistant.settings import Settings


def collection_work_dir(settings: Settings, collection: str) -> Path:
    """Where ``penny calibrate --collection`` keeps its questions, attempts and eval run (to resume)."""
    return settings.calibration_dir / f"{collection}.run"


@dataclass(frozen=True)
class LabelledAnswers:
    """Answers to fit on: each one's features, whether the local answer was right, whether the question
    has an answer."""

    features: list[dict[str, float]]
    correct: list[bool]
    answerable: list[bool]


class TooFewLabels(CalibrationError):
    """A refit refused: too few labels for P(local correct); ``counts`` says how many, and from where."""

    def __init__(self, message: str, counts: LabelCounts) -> None:
        super().__init__(message)
        self.counts = counts


@dataclass
class LedgerRefit:
    path: Path
    counts: LabelCounts
    auroc: dict[str, float | None] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)  # why a model was kept from the current calibration

    def lines(self) -> list[str]:
        scores = ", ".join(f"{k} {'–' if v is None else f'{v:.3f}'}" for k, v in self.auroc.items())
        return [
            *self.counts.lines(),
            *self.kept,
            f"refitted {', '.join(_NAMES[k] for k in self.auroc)}; out-of-fold AUROC: {scores or '–'}",
            f"calibration written to {self.path}",
        ]


_NAMES = {"local_correct": "P(local correct)", "answerable": "P(answerable)"}


def refit_from_ledger(
    settings: Settings,
    *,
    collection: str | None = None,
    since: datetime | None = None,
    out: Path | None = None,
    folds: int = 5,
    seed: int = 0,
    synthetic: LabelledAnswers | None = None,
    min_labels: int | None = None,
) -> LedgerRefit:
    """Refit P(local correct) and P(answerable) on the ledger's labels (shadow checks and people's ratings:
    :mod:`.ledger_labels`) plus ``synthetic`` (the collection's own, from ``penny calibrate --collection``).

    A model is replaced only with at least ``min_labels`` labels (default ``cascade.refit_min_labels``),
    both outcomes among them: below that, P(local correct) raises :class:`TooFewLabels` and nothing is
    written; P(answerable) is kept from the current calibration. P(paid helps) is always kept, and so is
    the paid model its stamp names: the ledger's labels for it are one-sided (a paid answer is rated only
    when it was served) and few, so they are counted, not fitted. Each model reads the features the current
    calibration's does: a feature left out of it (a sign flip between distributions, or ``--exclude``)
    stays out."""
    from assistant.calibration.fitting import feature_sets, fit
    from assistant.calibration.model import Calibration
    from assistant.calibration.store import collection_calibration_path
    from assistant.ledger import open_ledger

    minimum = settings.cascade.refit_min_labels if min_labels is None else min_labels
    target = out or (
        collection_calibration_path(settings.calibration_dir, collection)
        if collection
        else settings.calibration_dir / "ledger.json"
    )
    base = (
        Calibration.load(target) if target.exists() else Calibration.load(settings.cascade.calibration_file)
    )
    names = feature_sets(base)
    ledger = open_ledger(settings, paid_models=())
    try:
        shadow = list(ledger.shadow_labels(collection=collection, since=since))
        feedback = list(ledger.answer_feedback(collection=collection, since=since))
        prices = ledger.prices
    finally:
        ledger.close()
    labels = ledger_labels(shadow, feedback)
    rows, correct = labels.for_model("local_correct", names["local_correct"])
    answerable_rows, answerable = labels.for_model("answerable", names["answerable"])
    if synthetic is not None:
        rows, correct = rows + synthetic.features, correct + synthetic.correct
        answerable_rows = answerable_rows + synthetic.features
        answerable = answerable + synthetic.answerable
    synthetic_count = 0 if synthetic is None else len(synthetic.features)
    per_model = {
        "local_correct": len(correct),
        "answerable": len(answerable),
        "paid_helps": len(labels.for_model("paid_helps", names["paid_helps"])[1])
        + len(labels.for_model("paid_helps_unanswerable", names["paid_helps"])[1]),
    }
    counts = LabelCounts.of(labels, synthetic_count, per_model)
    if len(rows) < minimum or len(set(correct)) < 2:
        raise TooFewLabels(
            f"not replacing the calibration: {len(rows)} labels for P(local correct) ({sum(correct)} "
            f"right); a refit needs at least {minimum} with both outcomes (cascade.refit_min_labels, or "
            "--min-labels): raise cascade.shadow_rate, rate answers, or run `penny calibrate --collection`",
            counts,
        )
    correct_names = names["local_correct"] or FEATURES
    meta = {
        "source": "penny calibrate --from-ledger",
        "shadow_labels": labels.shadow,
        "feedback_labels": sum(labels.ratings.values()),
        "synthetic": synthetic_count,
        "min_labels": minimum,
    }
    model = fit(rows, correct, names=correct_names, regularization_c=0.1, meta=meta)
    scores: dict[str, float | None] = {"local_correct": _oof_auroc(rows, correct, folds, seed, correct_names)}
    kept: list[str] = []
    positives = sum(answerable)
    if len(answerable) >= minimum and min(positives, len(answerable) - positives) >= 3:
        answerable_names = names["answerable"] or FEATURES
        model.answerable = fit(
            answerable_rows,
            answerable,
            names=answerable_names,
            regularization_c=0.1,
            meta={"label": "the documents answer it (paid tier answered, or a person's rating)"},
        )
        model.abstain_below = base.abstain_below
        scores["answerable"] = _oof_auroc(answerable_rows, answerable, folds, seed, answerable_names)
    else:  # P(paid helps) still needs P(answerable) to mix its two parts
        model.answerable, model.abstain_below = base.answerable, base.abstain_below
        kept.append(
            f"P(answerable) kept from the current calibration: {len(answerable)} labels ({positives} "
            f"answerable), fewer than {minimum} or fewer than 3 of either outcome"
        )
    model.paid_helps, model.paid_helps_unanswerable = base.paid_helps, base.paid_helps_unanswerable
    model.stamp = _ledger_stamp(settings, prices, model, base, counts, _latest(shadow, feedback), collection)
    model.save(target)
    return LedgerRefit(target, counts, scores, kept)


def _ledger_stamp(
    settings: Settings,
    prices: PriceTable,
    model: Calibration,
    base: Calibration,
    counts: LabelCounts,
    latest: datetime | None,
    collection: str | None,
) -> Stamp:
    """A refit from the ledger is fitted for the running local model, answer style and prompt (the labels'
    answers were served with them), and for the paid model its kept P(paid helps) was fitted on."""
    from assistant.calibration.stamp import RunCount, Stamp, running
    from assistant.local.registry import ModelRegistry

    now = running(settings, ModelRegistry(settings.model_cache_dir), prices)
    data = [
        RunCount("ledger shadow labels", counts.shadow),
        RunCount("ledger feedback", sum(counts.ratings.values())),
    ]
    if counts.synthetic:
        data.append(RunCount(f"penny calibrate --collection {collection}", counts.synthetic))
    return Stamp(
        local_model=now.local_model,
        paid_model=None if base.stamp is None else base.stamp.paid_model,
        answer_style=now.answer_style,
        prompt_version=now.prompt_version,
        features=tuple(model.features_read()),
        data=tuple(data),
        date=None if latest is None else latest.date().isoformat(),
        source="penny calibrate --from-ledger" + (f" --collection {collection}" if collection else ""),
    )


def _latest(shadow: Sequence[ShadowLabel], feedback: Sequence[AnswerFeedback]) -> datetime | None:
    dates = [label.created_at for label in shadow if label.created_at is not None]
    dates += [item.updated_at for item in feedback]
    return max(dates) if dates else None


def _oof_auroc(
    rows: Sequence[dict[str, float]],
    labels: Sequence[bool],
    folds: int,
    seed: int,
    names: Sequence[str] | None = None,
) -> float | None:
    from assistant.calibration.fitting import auroc, out_of_fold

    if min(sum(labels), len(labels) - sum(labels)) < 2:
        return None
    return auroc(labels, out_of_fold(rows, labels, folds, seed, 0.1, names))
