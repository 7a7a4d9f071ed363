"""The core of self-calibration: where a collection's work files live, and the refit of P(local correct)
and P(answerable) from the ledger's shadow labels (``penny calibrate --from-ledger``).

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

from assistant.calibration.model import CalibrationError

if TYPE_CHECKING:
    from assistant.calibration.model import Calibration
    from assistant.calibration.stamp import Stamp
    from assistant.ledger import PriceTable, ShadowLabel
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


@dataclass
class LedgerRefit:
    path: Path
    shadow_labels: int
    synthetic_labels: int
    auroc: dict[str, float | None] = field(default_factory=dict)

    def lines(self) -> list[str]:
        scores = ", ".join(f"{k} {'–' if v is None else f'{v:.3f}'}" for k, v in self.auroc.items())
        return [
            f"refitted on {self.shadow_labels} shadow labels from the ledger and {self.synthetic_labels} "
            f"synthetic ones; out-of-fold AUROC: {scores or '–'}",
            f"calibration written to {self.path}",
        ]


def refit_from_ledger(
    settings: Settings,
    *,
    collection: str | None = None,
    since: datetime | None = None,
    out: Path | None = None,
    folds: int = 5,
    seed: int = 0,
    synthetic: LabelledAnswers | None = None,
) -> LedgerRefit:
    """Refit P(local correct) and P(answerable) on the ledger's shadow labels plus ``synthetic`` (the
    collection's own, from ``penny calibrate --collection``). A shadow label is the paid tier's verdict,
    not ground truth: "local correct" is agreement with the paid answer, "answerable" is the paid tier
    not abstaining. P(paid helps) has no such label (the paid answer is the reference), so it is kept
    from the current calibration, and so is the paid model its stamp names. Each model reads the features
    the current calibration's does: a feature left out of it (a sign flip between distributions, or
    ``--exclude``) stays out."""
    from assistant.answering.judge.features import FEATURES
    from assistant.calibration.fitting import feature_sets, fit
    from assistant.calibration.model import Calibration
    from assistant.calibration.store import collection_calibration_path
    from assistant.ledger import open_ledger

    ledger = open_ledger(settings, paid_models=())
    labels = ledger.shadow_labels(collection=collection, since=since)
    rows: list[dict[str, float]] = [dict(label.features) for label in labels]
    correct: list[bool] = [label.agreed for label in labels]
    answerable: list[bool] = [not label.paid_abstained for label in labels]
    if synthetic is not None:
        rows += synthetic.features
        correct += synthetic.correct
        answerable += synthetic.answerable
    if len(rows) < 10 or len(set(correct)) < 2:
        raise CalibrationError(
            f"{len(rows)} labelled answers ({sum(correct)} correct); a refit needs at least 10 with both "
            "outcomes: raise cascade.shadow_rate, or run `penny calibrate --collection` first"
        )
    target = out or (
        collection_calibration_path(settings.calibration_dir, collection)
        if collection
        else settings.calibration_dir / "ledger.json"
    )
    base = (
        Calibration.load(target) if target.exists() else Calibration.load(settings.cascade.calibration_file)
    )
    names = feature_sets(base)
    correct_names, answerable_names = names["local_correct"] or FEATURES, names["answerable"] or FEATURES
    synthetic_count = 0 if synthetic is None else len(synthetic.features)
    meta = {
        "source": "penny calibrate --from-ledger",
        "shadow_labels": len(labels),
        "synthetic": synthetic_count,
    }
    model = fit(rows, correct, names=correct_names, regularization_c=0.1, meta=meta)
    scores: dict[str, float | None] = {"local_correct": _oof_auroc(rows, correct, folds, seed, correct_names)}
    if len(set(answerable)) == 2 and min(sum(answerable), len(answerable) - sum(answerable)) >= 3:
        model.answerable = fit(
            rows,
            answerable,
            names=answerable_names,
            regularization_c=0.1,
            meta={"label": "paid tier answered"},
        )
        model.abstain_below = base.abstain_below
        scores["answerable"] = _oof_auroc(rows, answerable, folds, seed, answerable_names)
    else:  # too few of one kind to refit: P(paid helps) still needs P(answerable) to mix its two parts
        model.answerable, model.abstain_below = base.answerable, base.abstain_below
    model.paid_helps, model.paid_helps_unanswerable = base.paid_helps, base.paid_helps_unanswerable
    model.stamp = _ledger_stamp(settings, ledger.prices, model, base, labels, synthetic_count, collection)
    model.save(target)
    return LedgerRefit(target, len(labels), synthetic_count, scores)


def _ledger_stamp(
    settings: Settings,
    prices: PriceTable,
    model: Calibration,
    base: Calibration,
    labels: Sequence[ShadowLabel],
    synthetic: int,
    collection: str | None,
) -> Stamp:
    """A refit from the ledger is fitted for the running local model, answer style and prompt (the labels'
    answers were served with them), and for the paid model its kept P(paid helps) was fitted on."""
    from assistant.calibration.stamp import RunCount, Stamp, running
    from assistant.local.registry import ModelRegistry

    now = running(settings, ModelRegistry(settings.model_cache_dir), prices)
    data = [RunCount("ledger shadow labels", len(labels))]
    if synthetic:
        data.append(RunCount(f"penny calibrate --collection {collection}", synthetic))
    dates = [label.created_at.date().isoformat() for label in labels if label.created_at is not None]
    return Stamp(
        local_model=now.local_model,
        paid_model=None if base.stamp is None else base.stamp.paid_model,
        answer_style=now.answer_style,
        prompt_version=now.prompt_version,
        features=tuple(model.features_read()),
        data=tuple(data),
        date=max(dates) if dates else None,
        source="penny calibrate --from-ledger" + (f" --collection {collection}" if collection else ""),
    )


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
