"""Fitting the calibration's logistic models on labelled answers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from assistant.answering.features import FEATURES, OPTIONAL_FEATURES
from assistant.calibration.model import Calibration, feature_value


def fit(
    features: Sequence[Mapping[str, float]],
    labels: Sequence[bool | int],
    *,
    names: Sequence[str] = FEATURES,
    regularization_c: float = 1.0,
    meta: dict[str, Any] | None = None,
) -> Calibration:
    """Fit P(correct) by L2-regularised logistic regression on standardised features.

    ``features`` are dicts from :func:`assistant.answering.features.extract_features`; ``labels`` say
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
