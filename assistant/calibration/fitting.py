"""Fitting the calibration's logistic models on labelled answers, and measuring them out of fold: the C
chosen by cross-validation, out-of-fold probabilities and AUROC, gradient-boosted trees as the non-linear
comparison, each feature's ablation. ``eval`` builds its reports on these; ``penny calibrate`` refits with
them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from assistant.answering.judge.features import EVIDENCE_FEATURES, FEATURES, OPTIONAL_FEATURES
from assistant.calibration.model import Calibration, feature_value

C_GRID: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)


def fit(
    features: Sequence[Mapping[str, float]],
    labels: Sequence[bool | int],
    *,
    names: Sequence[str] = FEATURES,
    regularization_c: float = 1.0,
    meta: dict[str, Any] | None = None,
) -> Calibration:
    """Fit P(correct) by L2-regularised logistic regression on standardised features.

    ``features`` are dicts from :func:`assistant.answering.judge.features.extract_features`; ``labels`` say
    whether each local answer was correct. Needs both outcomes among the labels.
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    if len(features) != len(labels):
        raise ValueError(f"{len(features)} feature rows but {len(labels)} labels")
    y = np.asarray([int(bool(label)) for label in labels])
    if len(set(y.tolist())) < 2:
        raise ValueError("need both correct and incorrect answers to fit a calibration")
    names = known_features(features, names)
    x = feature_matrix(features, names)
    known = ~np.isnan(x)
    means = np.where(known, x, 0.0).sum(axis=0) / np.maximum(known.sum(axis=0), 1)
    x = np.where(known, x, means)  # an unknown optional feature is read at its mean, as logit() reads it
    scales = x.std(axis=0)
    scales[scales < 1e-9] = 1.0  # a constant feature: leave it unscaled (its coefficient goes to ~0)
    model = LogisticRegression(C=regularization_c, max_iter=1000)
    model.fit((x - means) / scales, y)
    return Calibration(
        features=list(names),
        coef=[float(c) for c in model.coef_[0]],
        intercept=float(model.intercept_[0]),
        means=[float(m) for m in means],
        scales=[float(s) for s in scales],
        meta={"n": len(y), "positive_rate": float(y.mean()), "C": regularization_c, **(meta or {})},
    )


def known_features(rows: Sequence[Mapping[str, float]], names: Sequence[str]) -> list[str]:
    """``names`` less the optional features that no row has: rows answered by a backend that cannot give
    them (llama-server, vLLM) fit a model without them rather than one on a column of unknowns."""
    return [n for n in names if n not in OPTIONAL_FEATURES or any(n in row for row in rows)]


def feature_matrix(rows: Sequence[Mapping[str, float]], names: Sequence[str]) -> Any:
    """``rows`` as a float array, one column per name (:func:`feature_value`: NaN where unknown)."""
    import numpy as np

    return np.asarray([[feature_value(row, n) for n in names] for row in rows], dtype=float)


def auroc(labels: Sequence[bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve of ``scores`` for ``labels``; None when only one class is present."""
    from sklearn.metrics import roc_auc_score

    if len(set(labels)) < 2:
        return None
    return float(roc_auc_score([int(x) for x in labels], list(scores)))


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

    names = known_features(features, FEATURES if names is None else names)
    x = feature_matrix(features, names)  # the trees take an unknown (NaN) as it is
    folds = max(2, min(folds, sum(labels), len(labels) - sum(labels)))
    model = HistGradientBoostingClassifier(max_depth=3, learning_rate=0.05, max_iter=150, random_state=seed)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(model, x, np.asarray(labels), cv=splitter, method="predict_proba")[:, 1].tolist()


def smoothed_rate(labels: Sequence[bool]) -> tuple[float, list[float]]:
    """The Laplace-smoothed rate of ``labels``, and each label's rate with that label left out (its
    out-of-fold value)."""
    right, n = sum(labels), len(labels)
    return (right + 1) / (n + 2), [(right - y + 1) / (n + 1) for y in labels]


def constant_model(
    labels: Sequence[bool], names: Sequence[str] | None = None, meta: dict[str, Any] | None = None
) -> tuple[Calibration, list[float]]:
    """Too few of one outcome to fit on features: the smoothed rate as a model whose coefficients are 0,
    and each label's rate left out (:func:`smoothed_rate`)."""
    import math

    names = list(FEATURES if names is None else names)
    rate, left_out = smoothed_rate(labels)
    model = Calibration(
        features=names,
        coef=[0.0] * len(names),
        intercept=math.log(rate / (1 - rate)),
        means=[0.0] * len(names),
        scales=[1.0] * len(names),
        meta={"n": len(labels), "positive_rate": sum(labels) / len(labels), **(meta or {}), "constant": True},
    )
    return model, left_out


def feature_sets(
    calibration: Calibration | None, exclude: Sequence[str] = ()
) -> dict[str, Sequence[str] | None]:
    """Each decision's features: ``calibration``'s model's where it has one, else the default set (None
    is every feature for P(local correct); the other two read the question and passages only); less
    ``exclude``."""
    sets: dict[str, Sequence[str] | None] = {
        "local_correct": None,
        "answerable": EVIDENCE_FEATURES,
        "paid_helps": EVIDENCE_FEATURES,
    }
    if calibration is not None:
        sets["local_correct"] = calibration.features
        for name, model in (("answerable", calibration.answerable), ("paid_helps", calibration.paid_helps)):
            if model is not None:
                sets[name] = model.features
    if exclude:
        for name, names in sets.items():
            sets[name] = [n for n in (FEATURES if names is None else names) if n not in exclude]
    return sets
