"""Fit one of the evaluator's models and measure it out of fold: the C chosen by cross-validation, the
out-of-fold probabilities, gradient-boosted trees as the non-linear comparison, the AUROC per distribution
and the features left out because they change sign between distributions. :mod:`eval.calibrate` runs this
for each decision; :mod:`eval.paid_helps` builds P(paid helps) from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from eval.calibration_outcome import DecisionFit
from eval.distributions import SignFlip, auroc_by_group, consistent_features, distinct
from eval.metrics import auroc

if TYPE_CHECKING:
    from assistant.calibration import Calibration

C_GRID: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)


def stratified_split(labels: Sequence[bool], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, test) with each label split in the same proportion; deterministic for a seed."""
    from sklearn.model_selection import train_test_split

    indices = list(range(len(labels)))
    train, test = train_test_split(indices, test_size=test_fraction, random_state=seed, stratify=list(labels))
    return sorted(train), sorted(test)


def out_of_fold(
    features: Sequence[dict[str, float]],
    labels: Sequence[bool],
    folds: int,
    seed: int,
    regularization_c: float = 1.0,
    names: Sequence[str] | None = None,
) -> list[float]:
    """P(label) of each question from a model fitted on the other folds (on ``names``, default all)."""
    from sklearn.model_selection import StratifiedKFold

    from assistant.answering.features import FEATURES
    from assistant.calibration import fit

    names = FEATURES if names is None else names

    folds = max(2, min(folds, sum(labels), len(labels) - sum(labels)))
    predictions = [0.0] * len(labels)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(list(range(len(labels))), [int(x) for x in labels]):
        model = fit(
            [features[i] for i in train],
            [labels[i] for i in train],
            regularization_c=regularization_c,
            names=names,
        )
        for i in test:
            predictions[i] = model.probability(features[i])
    return predictions


def ablation(
    features: Sequence[dict[str, float]],
    labels: Sequence[bool],
    folds: int,
    seed: int,
    regularization_c: float,
    names: Sequence[str],
) -> dict[str, float]:
    """Out-of-fold AUROC lost when each feature is left out (positive: the feature earns its place)."""
    full = auroc(labels, out_of_fold(features, labels, folds, seed, regularization_c, names)) or 0.0
    lost = {}
    for name in names:
        rest = [n for n in names if n != name]
        without = auroc(labels, out_of_fold(features, labels, folds, seed, regularization_c, rest)) or 0.0
        lost[name] = full - without
    return lost


def choose_regularization(
    features: Sequence[dict[str, float]],
    labels: Sequence[bool],
    folds: int,
    seed: int,
    names: Sequence[str] | None = None,
) -> float:
    """The L2 strength C with the least out-of-fold log loss: a few hundred answers and ten correlated
    features overfit at sklearn's default C = 1. Log loss, not AUROC: the decision rule prices the
    probabilities themselves, and AUROC cannot tell a sharp model from one squashed towards the base rate
    (ties go to the stronger regularisation)."""
    from sklearn.metrics import log_loss

    def loss(c: float) -> float:
        return float(log_loss(labels, out_of_fold(features, labels, folds, seed, c, names), labels=[0, 1]))

    return min((loss(c), c) for c in C_GRID)[1]


def trees_out_of_fold(
    features: Sequence[dict[str, float]],
    labels: Sequence[bool],
    folds: int,
    seed: int,
    names: Sequence[str] | None = None,
) -> list[float]:
    """Out-of-fold P(label) from gradient-boosted trees on the same features: the non-linear candidate
    the logistic model is compared against."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from assistant.answering.features import FEATURES
    from assistant.calibration.fitting import feature_matrix, known_features

    names = known_features(features, FEATURES if names is None else names)
    x = feature_matrix(features, names)  # the trees take an unknown (NaN) as it is
    folds = max(2, min(folds, sum(labels), len(labels) - sum(labels)))
    model = HistGradientBoostingClassifier(max_depth=3, learning_rate=0.05, max_iter=150, random_state=seed)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(model, x, np.asarray(labels), cv=splitter, method="predict_proba")[:, 1].tolist()


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
) -> tuple[DecisionFit, list[float], Calibration] | None:
    """Choose C, score out of fold, and fit on all rows (on ``names``, default all features); None when a
    label has fewer than 3 examples. With rows from two or more distributions (``groups``), a feature
    whose sign differs between them is left out, and AUROC is also given per distribution."""
    from assistant.answering.features import FEATURES
    from assistant.calibration.fitting import fit, known_features

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
        auroc_trees=auroc(labels, trees_out_of_fold(features, labels, folds, seed, names)),
        features=tuple(names),
        auroc_by_distribution=auroc_by_group(labels, oof, grouped) if grouped is not None else {},
        sign_flips=tuple(flips),
    )
    return summary, oof, model
