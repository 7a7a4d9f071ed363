"""Refit the evaluator's three models on a run, out of fold, and price a wrong answer on what they say.

Three logistic models on the same features, each with its own labels: P(local correct) ("the local answer
was correct": F1 ≥ 0.5 on HasAns, abstained on NoAns), P(answerable) ("the question has an answer", SQuAD
2.0 HasAns) and P(paid helps) ("the paid answer was correct", on the questions where the local one was
not). Each is scored out of fold (every question by models that never saw it) and compared with
gradient-boosted trees on the same features; the logistic model ships (a JSON file, readable without
sklearn) unless trees win by cross-validation. The held-out AUROC before/after compares the P(correct) the
service gave during the run with a model fitted on the rest. The price of a wrong answer W and of an
abstention are chosen (:mod:`eval.pricing`) on the out-of-fold probabilities, so the promised F1 and cost
are not flattered by fitting and choosing on the same answers. The file written is fitted on the whole
run; what was found is a :class:`~eval.calibration_outcome.CalibrationOutcome`. The records and labels
it reads come from :mod:`eval.labelled_runs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.answering.features import EVIDENCE_FEATURES
from eval.calibration_outcome import CalibrationOutcome, DecisionFit
from eval.configs import Config
from eval.distributions import SignFlip, auroc_by_group, consistent_features, distinct
from eval.errors import RunError
from eval.labelled_runs import rescored, run_records
from eval.metrics import auroc
from eval.pricing import COST_CAP, _write_calibrated_report, choose_price
from eval.summaries import (
    QUALITY_TOLERANCE_F1,
    ConfigSummary,
    paid_correct_labels,
    summarize,
)

if TYPE_CHECKING:
    from assistant.answering.calibration import Calibration

C_GRID: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
LOCAL_CORRECT_LABEL = "local answer correct: F1 >= 0.5 (HasAns) or abstained (NoAns)"


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

    from assistant.answering.calibration import fit
    from assistant.answering.features import FEATURES

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

    x = np.asarray([[row[name] for name in (FEATURES if names is None else names)] for row in features])
    folds = max(2, min(folds, sum(labels), len(labels) - sum(labels)))
    model = HistGradientBoostingClassifier(max_depth=3, learning_rate=0.05, max_iter=150, random_state=seed)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(model, x, np.asarray(labels), cv=splitter, method="predict_proba")[:, 1].tolist()


def _fit_decision(
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
    from assistant.answering.calibration import fit
    from assistant.answering.features import FEATURES

    names = list(FEATURES if names is None else names)
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


PAID_HELPS_LABEL = "the paid answer is right, on answerable questions where the local one is wrong"


@dataclass(frozen=True)
class PaidHelpsFit:
    """P(paid helps) as the service computes it (:func:`~assistant.answering.calibration.paid_helps_mixture`):
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
) -> PaidHelpsFit | None:
    """Fit P(paid helps) and score it out of fold with the other two models' out-of-fold probabilities.

    A paid tier is right far more often on the answerable questions the local one gets wrong than on the
    unanswerable ones (where it must abstain, and rarely does), so the evidence that a question is
    answerable is most of what says a paid call will help (docs/eval/evaluator-signals.md, eighth probe).
    Without P(answerable) (``p_answerable`` None) the model is fitted on every wrong local answer instead,
    as format 2 did. The unanswerable rate is Laplace-smoothed and left one out for the questions it
    counts. None when a label has fewer than 3 examples.
    """
    from assistant.answering.calibration import paid_helps_mixture

    wrong = [i for i, y in enumerate(local_correct) if not y and paid_right[i] is not None]
    mixed = p_answerable is not None
    fitted_on = [i for i in wrong if has_answer[i]] if mixed else wrong
    unanswerable = [i for i in wrong if not has_answer[i]] if mixed else []
    fitted = _fit_decision(
        "paid_helps",
        PAID_HELPS_LABEL if mixed else "the paid answer is right, on questions where the local one is wrong",
        [features[i] for i in fitted_on],
        [bool(paid_right[i]) for i in fitted_on],
        folds=folds,
        seed=seed,
        regularization_c=regularization_c,
        names=names,
        groups=None if groups is None else [groups[i] for i in fitted_on],
    )
    if fitted is None and mixed and fitted_on:
        fitted = _constant_rate(fitted_on, [bool(paid_right[i]) for i in fitted_on], names, regularization_c)
    if fitted is None:
        return None
    summary, fitted_oof, model = fitted
    helps = [model.probability(f) for f in features]  # never trained on: outside ``fitted_on``
    for i, p in zip(fitted_on, fitted_oof, strict=True):
        helps[i] = p
    if not mixed or p_answerable is None:
        return PaidHelpsFit(summary, helps, model, None, fitted_on)
    right = sum(bool(paid_right[i]) for i in unanswerable)
    rate = (right + 1) / (len(unanswerable) + 2)
    rates = [rate] * len(features)
    for i in unanswerable:
        rates[i] = (right - bool(paid_right[i]) + 1) / (len(unanswerable) + 1)
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
            f"P(right | answerable) (AUROC {_fmt(summary.auroc)} on {summary.n}) with the rate "
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
    rows: Sequence[int], labels: Sequence[bool], names: Sequence[str] | None, regularization_c: float | None
) -> tuple[DecisionFit, list[float], Calibration]:
    """Too few of one outcome to fit on features: a Laplace-smoothed rate, left one out for each row."""
    import math

    from assistant.answering.calibration import Calibration
    from assistant.answering.features import FEATURES

    names = list(FEATURES if names is None else names)
    right, n = sum(labels), len(labels)
    rate = (right + 1) / (n + 2)
    model = Calibration(
        features=names,
        coef=[0.0] * len(names),
        intercept=math.log(rate / (1 - rate)),
        means=[0.0] * len(names),
        scales=[1.0] * len(names),
        meta={"n": n, "positive_rate": right / n, "label": PAID_HELPS_LABEL, "constant": True},
    )
    oof = [(right - y + 1) / (n + 1) for y in labels]
    summary = DecisionFit("paid_helps", PAID_HELPS_LABEL, n, right, regularization_c or 0.0, None)
    return summary, oof, model


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def calibrate(
    results: Path | Sequence[Path],
    *,
    out: Path | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    folds: int = 5,
    tolerance_f1: float = QUALITY_TOLERANCE_F1,
    regularization_c: float | None = None,
    ablate: bool = False,
    refresh: bool = False,
    cost_cap: float = COST_CAP,
    features_of: Calibration | None = None,
) -> CalibrationOutcome:
    """Fit, evaluate and write the evaluator's three models from the run at ``results`` (run dir or its
    results.jsonl), and choose the price of a wrong answer.

    Several runs are several distributions (say a dataset's real questions and synthetic ones from another
    corpus): they are fitted together, features that change sign between them are left out
    (:mod:`eval.distributions`), and each AUROC is also reported per run. Outputs go to the first run.
    ``regularization_c`` None picks C by cross-validation (:func:`choose_regularization`) per model.
    ``ablate`` also measures the out-of-fold AUROC each feature adds to each model (:func:`ablation`).
    ``refresh`` fills in features the run's records lack (:func:`refresh_features`). ``cost_cap`` is the
    target's largest share of paid-only's cost. ``features_of`` restricts each model to the features the
    same model of that calibration reads: a collection's synthetic questions are one distribution and
    cannot tell a dataset's artefact from a signal, so its fit keeps to what the default kept.
    """
    from assistant.answering.calibration import fit

    names_of = feature_sets(features_of)
    run_dirs = [results] if isinstance(results, (str, Path)) else list(results)
    run_dirs = [Path(r) if Path(r).is_dir() else Path(r).parent for r in run_dirs]
    run_dir, calls = run_dirs[0], run_dirs[0] / "calls.jsonl"
    # Each run is named by its folder; by its path when two folders share a name (`penny calibrate` runs).
    run_names = [d.name for d in run_dirs]
    if len(set(run_names)) < len(run_names):
        run_names = [str(d) for d in run_dirs]
    usable, labels, groups = [], [], []
    for directory, name in zip(run_dirs, run_names, strict=True):
        rows, ys = run_records(directory, refresh)
        usable += rows
        labels += ys
        groups += [name] * len(rows)
    if len(usable) < 10 or sum(labels) < 3 or len(labels) - sum(labels) < 3:
        raise RunError(
            f"{calls}: {len(usable)} usable questions with {sum(labels)} correct local answers; calibration "
            "needs at least 10 questions and 3 of each outcome — run more questions (--limit)"
        )
    features = [r.judgement.features for r in usable if r.judgement]
    from assistant.answering.features import FEATURES

    lacking = sorted({name for row in features for name in FEATURES if name not in row})
    if lacking:
        raise RunError(
            f"{calls}: the run's records lack features {', '.join(lacking)} (added since it ran); pass "
            "--refresh-features to compute them from the stored answers"
        )
    train, test = stratified_split(labels, test_fraction, seed)
    before = auroc(
        [labels[i] for i in test], [usable[i].judgement.p_correct for i in test if usable[i].judgement]
    )
    train_x, train_y = [features[i] for i in train], [labels[i] for i in train]
    held_out_c = regularization_c or choose_regularization(train_x, train_y, folds, seed)
    held_out_model = fit(train_x, train_y, regularization_c=held_out_c)
    after = auroc([labels[i] for i in test], [held_out_model.probability(features[i]) for i in test])

    options = {"folds": folds, "seed": seed, "regularization_c": regularization_c, "groups": groups}
    local_fit = _fit_decision(
        "local_correct",
        LOCAL_CORRECT_LABEL,
        features,
        labels,
        **options,  # type: ignore[arg-type]
        names=names_of["local_correct"],
    )
    assert local_fit is not None  # checked above: both outcomes have ≥ 3 examples
    local_summary, oof, final = local_fit
    has_answer = [r.has_answer for r in usable]
    answerable_rows = [i for i, h in enumerate(has_answer) if h]
    answerable_labels = [labels[i] for i in answerable_rows]
    answerable_oof = [oof[i] for i in answerable_rows]
    local_summary = replace(
        local_summary,
        auroc_has_ans=auroc(answerable_labels, answerable_oof),
        auroc_has_ans_by_distribution=auroc_by_group(
            answerable_labels, answerable_oof, [groups[i] for i in answerable_rows]
        )
        if len(distinct(groups)) > 1
        else {},
    )
    decisions = [local_summary]
    answerable_fit = _fit_decision(
        "answerable",
        "the question has an answer (SQuAD 2.0 HasAns)",
        features,
        has_answer,
        **options,  # type: ignore[arg-type]
        names=names_of["answerable"],
    )
    gate_oof: list[float | None] | None = None
    if answerable_fit is not None:
        decisions.append(answerable_fit[0])
        gate_oof, final.answerable = list(answerable_fit[1]), answerable_fit[2]

    paid_right = paid_correct_labels(usable)
    helps_oof: list[float | None] | None = None
    helps = fit_paid_helps(
        features,
        labels,
        has_answer,
        paid_right,
        oof,
        gate_oof,
        [r.judgement.local_abstained for r in usable if r.judgement],
        names=names_of["paid_helps"],
        **options,  # type: ignore[arg-type]
    )
    if helps is not None:
        decisions.append(helps.summary)
        final.paid_helps, final.paid_helps_unanswerable = helps.model, helps.unanswerable_rate
        helps_oof = list(helps.oof)

    ablations: dict[str, dict[str, float]] = {}
    if ablate:
        subsets = {
            "local_correct": (features, labels),
            "answerable": (features, has_answer),
            "paid_helps": (
                [features[i] for i in helps.fitted_on] if helps else [],
                [bool(paid_right[i]) for i in helps.fitted_on] if helps else [],
            ),
        }
        for d in decisions:
            rows, ys = subsets[d.name]
            ablations[d.name] = ablation(rows, ys, folds, seed, d.regularization_c, d.features)

    has_paid = all(r.paid is not None for r in usable)
    paid = chosen = best = None
    rescored_records = rescored(usable, oof, gate_oof, helps_oof)
    if has_paid:
        paid, chosen, best = choose_price(rescored_records, tolerance_f1, cost_cap)
    pick = chosen or best
    final.meta = {
        **final.meta,
        "source": "python -m eval calibrate " + " ".join(str(d) for d in run_dirs),
        "label": LOCAL_CORRECT_LABEL,
        "auroc_held_out_before": before,
        "auroc_held_out_after": after,
        "auroc_out_of_fold": {d.name: d.auroc for d in decisions},
    }
    if len(run_dirs) > 1:
        final.meta["auroc_out_of_fold_by_distribution"] = {d.name: d.auroc_by_distribution for d in decisions}
        final.meta["local_correct_has_ans_auroc_by_distribution"] = dict(
            local_summary.auroc_has_ans_by_distribution
        )
        final.meta["left_out_sign_changes"] = {
            d.name: {f.feature: f.coef for f in d.sign_flips} for d in decisions if d.sign_flips
        }
    if pick is not None and pick.config.wrong_answer_usd is not None:
        final.meta["recommended_wrong_answer_usd"] = pick.config.wrong_answer_usd
        final.meta["recommended_abstain_usd"] = (
            pick.config.abstain_ratio or 0.0
        ) * pick.config.wrong_answer_usd
    path = Path(out) if out else run_dir / "calibration.json"
    final.save(path)
    report = None
    by_run: dict[str, tuple[ConfigSummary, ConfigSummary, ConfigSummary]] = {}
    if pick is not None and paid is not None:
        first = [r for r, g in zip(rescored_records, groups, strict=True) if g == run_names[0]]
        report = _write_calibrated_report(run_dir, first, pick)
        if len(run_dirs) > 1:
            for group in distinct(groups):
                rows = [r for r, g in zip(rescored_records, groups, strict=True) if g == group]
                by_run[group] = tuple(
                    summarize(rows, [Config("paid", "paid"), Config("local", "local"), pick.config])
                )  # type: ignore[assignment]
    return CalibrationOutcome(
        path=path,
        n_train=len(train),
        n_test=len(test),
        auroc_before=before,
        auroc_after=after,
        paid_f1=paid.quality.f1 if paid else None,
        target_f1=paid.quality.f1 - tolerance_f1 if paid else None,
        chosen=chosen,
        best_f1=best,
        paid_mean_cost_micro_usd=paid.mean_cost_micro_usd if paid else None,
        decisions=decisions,
        report=report,
        paid=paid,
        ablations=ablations,
        cost_cap=cost_cap,
        by_run=by_run,
    )


def feature_sets(calibration: Calibration | None) -> dict[str, Sequence[str] | None]:
    """Each decision's features: ``calibration``'s model's where it has one, else the default set (None
    is every feature for P(local correct); the other two read the question and passages only)."""
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
    return sets
