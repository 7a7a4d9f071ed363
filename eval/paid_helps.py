"""P(paid helps) as the service computes it: a model on the answerable questions the local tier got
wrong, the paid tier's rate on the unanswerable ones, mixed by P(answerable | local wrong)
(:func:`assistant.calibration.paid_helps_mixture`), scored out of fold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from assistant.calibration import paid_helps_mixture
from assistant.calibration.fitting import auroc, constant_model, smoothed_rate
from eval.calibration_outcome import DecisionFit, format_auroc
from eval.distributions import auroc_by_group, distinct
from eval.fitting import fit_decision

if TYPE_CHECKING:
    from assistant.calibration import Calibration

PAID_HELPS_LABEL = "the paid answer is right, on answerable questions where the local one is wrong"


@dataclass(frozen=True)
class PaidHelpsFit:
    """P(paid helps) as the service computes it (:func:`~assistant.calibration.paid_helps_mixture`):
    a model on the answerable questions the local answer got wrong, a rate on the unanswerable ones, mixed
    by P(answerable | local wrong)."""

    summary: DecisionFit  # the mixture's out-of-fold AUROC, on every question the local answer got wrong
    oof: list[float]  # per question, out of fold
    model: Calibration  # P(paid right | local wrong, answerable), fitted on all of ``fitted_on``
    unanswerable_rate: float | None  # P(paid right | local wrong, unanswerable); None: format 2 (no mixture)
    fitted_on: list[int]  # the rows ``model`` was fitted on


def fit_paid_helps(
    features: Sequence[dict[str, float]],
    local_correct: Sequence[bool],
    has_answer: Sequence[bool],
    paid_right: Sequence[bool | None],
    p_correct: Sequence[float],
    p_answerable: Sequence[float | None] | None,
    local_abstained: Sequence[bool],
    *,
    folds: int,
    seed: int,
    regularization_c: float | None,
    names: Sequence[str] | None,
    groups: Sequence[str] | None = None,
    trees: bool = True,
) -> PaidHelpsFit | None:
    """Fit P(paid helps) and score it out of fold with the other two models' out-of-fold probabilities.

    A paid tier is right far more often on the answerable questions the local one gets wrong than on the
    unanswerable ones (where it must abstain, and rarely does), so the evidence that a question is
    answerable is most of what says a paid call will help (docs/eval/evaluator-signals.md).
    Without P(answerable) (``p_answerable`` None) the model is fitted on every wrong local answer instead,
    as format 2 did. The unanswerable rate is Laplace-smoothed and left one out for the questions it
    counts. None when a label has fewer than 3 examples.
    """
    wrong = [i for i, y in enumerate(local_correct) if not y and paid_right[i] is not None]
    mixed = p_answerable is not None
    fitted_on = [i for i in wrong if has_answer[i]] if mixed else wrong
    unanswerable = [i for i in wrong if not has_answer[i]] if mixed else []
    fitted = fit_decision(
        "paid_helps",
        PAID_HELPS_LABEL if mixed else "the paid answer is right, on questions where the local one is wrong",
        [features[i] for i in fitted_on],
        [bool(paid_right[i]) for i in fitted_on],
        folds=folds,
        seed=seed,
        regularization_c=regularization_c,
        names=names,
        groups=None if groups is None else [groups[i] for i in fitted_on],
        trees=trees,
    )
    if fitted is None and mixed and fitted_on:
        fitted = _constant_rate([bool(paid_right[i]) for i in fitted_on], names, regularization_c)
    if fitted is None:
        return None
    summary, fitted_oof, model = fitted
    helps = [model.probability(f) for f in features]  # never trained on: outside ``fitted_on``
    for i, p in zip(fitted_on, fitted_oof, strict=True):
        helps[i] = p
    if p_answerable is None:
        return PaidHelpsFit(summary, helps, model, None, fitted_on)
    rate, left_out = smoothed_rate([bool(paid_right[i]) for i in unanswerable])
    rates = [rate] * len(features)
    for i, own in zip(unanswerable, left_out, strict=True):
        rates[i] = own
    oof = [
        paid_helps_mixture(
            helps[i],
            rates[i],
            p_answerable=1.0 if a is None else a,
            p_correct=p_correct[i],
            local_abstained=local_abstained[i],
        )
        for i, a in enumerate(p_answerable)
    ]
    wrong_labels = [bool(paid_right[i]) for i in wrong]
    wrong_oof = [oof[i] for i in wrong]
    summary = replace(
        summary,
        label=(
            f"the paid answer is right where the local one is wrong: P(answerable | local wrong) mixes "
            f"P(right | answerable) (AUROC {format_auroc(summary.auroc)} on {summary.n}) with the rate "
            f"{rate:.2f} on {len(unanswerable)} unanswerable"
        ),
        n=len(wrong),
        positives=sum(wrong_labels),
        auroc=auroc(wrong_labels, wrong_oof),
        auroc_trees=None,
        auroc_by_distribution=auroc_by_group(wrong_labels, wrong_oof, [groups[i] for i in wrong])
        if groups is not None and len(distinct(groups)) > 1
        else {},
    )
    return PaidHelpsFit(summary, oof, model, rate, fitted_on)


def _constant_rate(
    labels: Sequence[bool], names: Sequence[str] | None, regularization_c: float | None
) -> tuple[DecisionFit, list[float], Calibration]:
    """Too few of one outcome to fit on features: a smoothed rate (a model whose coefficients are 0)."""
    model, left_out = constant_model(labels, names, meta={"label": PAID_HELPS_LABEL})
    summary = DecisionFit(
        "paid_helps", PAID_HELPS_LABEL, len(labels), sum(labels), regularization_c or 0.0, None
    )
    return summary, left_out, model
