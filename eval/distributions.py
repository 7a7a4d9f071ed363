"""Fitting the evaluator on more than one distribution of questions, without learning a dataset's quirks.

A default calibration fitted on one dataset carries its artefacts: SQuAD 2.0's unanswerable questions copy
their paragraph's words, so on SQuAD alone more word overlap means *less* answerable, while on a team's own
documents (and on questions written from them) it means more. The rule here: fit each decision on each
distribution on its own; a feature whose coefficient has opposite signs in two of them, both of weight, is
a quirk of one of them and is left out of the pooled fit. Every AUROC is also reported per distribution,
so a pooled number cannot hide one distribution at chance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from assistant.calibration import auroc

MIN_WEIGHT = 0.1  # |standardised coefficient| below this is no evidence of a direction either way


@dataclass(frozen=True)
class SignFlip:
    """A feature two distributions disagree on: its standardised coefficient in each."""

    feature: str
    coef: dict[str, float]

    def describe(self) -> str:
        return f"{self.feature} (" + ", ".join(f"{g} {c:+.2f}" for g, c in self.coef.items()) + ")"


def distinct(groups: Sequence[str] | None) -> list[str]:
    return sorted(set(groups)) if groups else []


def coefficients_by_group(
    features: Sequence[dict[str, float]],
    labels: Sequence[bool],
    groups: Sequence[str],
    names: Sequence[str],
    regularization_c: float,
) -> dict[str, dict[str, float]]:
    """Distribution → feature → standardised coefficient, for each distribution with both outcomes."""
    from assistant.calibration import fit

    out = {}
    for group in distinct(groups):
        rows = [i for i, g in enumerate(groups) if g == group]
        ys = [labels[i] for i in rows]
        if 0 < sum(ys) < len(ys):
            model = fit([features[i] for i in rows], ys, names=names, regularization_c=regularization_c)
            out[group] = dict(zip(model.features, model.coef, strict=True))
    return out


def sign_flips(coefficients: dict[str, dict[str, float]], names: Sequence[str]) -> list[SignFlip]:
    """The features whose weighty coefficients point opposite ways in two distributions."""
    flips = []
    for name in names:
        # A distribution without an optional feature (not scored there) has no coefficient for it.
        weighty = {g: c[name] for g, c in coefficients.items() if abs(c.get(name, 0.0)) >= MIN_WEIGHT}
        if any(v > 0 for v in weighty.values()) and any(v < 0 for v in weighty.values()):
            flips.append(SignFlip(name, {g: round(c.get(name, 0.0), 3) for g, c in coefficients.items()}))
    return flips


def consistent_features(
    features: Sequence[dict[str, float]],
    labels: Sequence[bool],
    groups: Sequence[str],
    names: Sequence[str],
    regularization_c: float,
) -> tuple[list[str], list[SignFlip]]:
    """``names`` less the features that change sign between distributions, and those flips."""
    flips = sign_flips(coefficients_by_group(features, labels, groups, names, regularization_c), names)
    dropped = {f.feature for f in flips}
    return [n for n in names if n not in dropped], flips


def auroc_by_group(
    labels: Sequence[bool], scores: Sequence[float], groups: Sequence[str]
) -> dict[str, float | None]:
    """AUROC within each distribution (None where one has a single outcome)."""
    return {
        group: auroc(
            [y for y, g in zip(labels, groups, strict=True) if g == group],
            [s for s, g in zip(scores, groups, strict=True) if g == group],
        )
        for group in distinct(groups)
    }
