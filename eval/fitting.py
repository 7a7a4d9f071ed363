"""Fit one of the evaluator's models and measure it for the report (a :class:`DecisionFit`): the AUROC per
distribution and the features left out because they change sign between distributions, on the fitting of
:mod:`assistant.calibration.fitting`. :mod:`eval.calibrate` runs this for each decision;
:mod:`eval.paid_helps` builds P(paid helps) from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from assistant.answering.judge.features import FEATURES
from assistant.calibration.fitting import (
    auroc,
    choose_regularization,
    fit,
    known_features,
    out_of_fold,
    trees_out_of_fold,
)
from eval.calibration_outcome import DecisionFit
from eval.distributions import SignFlip, auroc_by_group, consistent_features, distinct

if TYPE_CHECKING:
    from assistant.calibration import Calibration


def fit_decision(
    name: str,
    label: str,
    features: Sequence[dict[str, float]],
    labels: Sequence[bool],
    *,
    folds: int,
    seed: int,
    regularization_c: float | None,
    names: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    trees: bool = True,
) -> tuple[DecisionFit, list[float], Calibration] | None:
    """Choose C, score out of fold, and fit on all rows (on ``names``, default all features); None when a
    label has fewer than 3 examples. With rows from two or more distributions (``groups``), a feature
    whose sign differs between them is left out, and AUROC is also given per distribution. ``trees``
    False skips the gradient-boosted comparison (a report line, most of a fit's time; never in the file)."""
    names = known_features(features, FEATURES if names is None else names)
    if sum(labels) < 3 or len(labels) - sum(labels) < 3:
        return None
    flips: list[SignFlip] = []
    grouped = groups if groups is not None and len(distinct(groups)) > 1 else None
    c = regularization_c or choose_regularization(features, labels, folds, seed, names)
    if grouped is not None:
        names, flips = consistent_features(features, labels, grouped, names, c)
        if flips and regularization_c is None:  # fewer features: C is chosen again for them
            c = choose_regularization(features, labels, folds, seed, names)
    oof = out_of_fold(features, labels, folds, seed, c, names)
    model = fit(features, labels, regularization_c=c, meta={"label": label}, names=names)
    summary = DecisionFit(
        name=name,
        label=label,
        n=len(labels),
        positives=sum(labels),
        regularization_c=c,
        auroc=auroc(labels, oof),
        auroc_trees=auroc(labels, trees_out_of_fold(features, labels, folds, seed, names)) if trees else None,
        features=tuple(names),
        auroc_by_distribution=auroc_by_group(labels, oof, grouped) if grouped is not None else {},
        sign_flips=tuple(flips),
    )
    return summary, oof, model
