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
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.answering.judge.features import FEATURES, OPTIONAL_FEATURES
from assistant.calibration.fitting import (
    ablation,
    auroc,
    choose_regularization,
    feature_sets,
    stratified_split,
)
from eval.calibration_outcome import CalibrationOutcome
from eval.configs import Config
from eval.distributions import auroc_by_group, distinct
from eval.errors import RunError
from eval.fitting import fit_decision
from eval.labelled_runs import rescored, run_records
from eval.paid_helps import fit_paid_helps
from eval.pricing import COST_CAP, _write_calibrated_report, choose_price
from eval.stamping import stamp_of
from eval.summaries import (
    ConfigSummary,
    paid_correct_labels,
    summarize,
)

if TYPE_CHECKING:
    from assistant.calibration import Calibration

LOCAL_CORRECT_LABEL = "local answer correct: F1 >= 0.5 (HasAns) or abstained (NoAns)"


def calibrate(
    results: Path | Sequence[Path],
    *,
    out: Path | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    folds: int = 5,
    regularization_c: float | None = None,
    ablate: bool = False,
    refresh: bool = False,
    cost_cap: float = COST_CAP,
    features_of: Calibration | None = None,
    exclude: Sequence[str] = (),
    source: str | None = None,
    reports: bool = True,
    trees: bool = True,
) -> CalibrationOutcome:
    """Fit, evaluate and write the evaluator's three models from the run at ``results`` (run dir or its
    results.jsonl), and choose the price of a wrong answer.

    Several runs are several distributions (say a dataset's real questions and synthetic ones from another
    corpus): they are fitted together, features that change sign between them are left out
    (:mod:`eval.distributions`), and each AUROC is also reported per run. Outputs go to the first run.
    ``regularization_c`` None picks C by cross-validation per model
    (:func:`assistant.calibration.fitting.choose_regularization`). ``ablate`` also measures the
    out-of-fold AUROC each feature adds to each model (:func:`assistant.calibration.fitting.ablation`).
    ``refresh`` fills in features the run's records lack (:func:`refresh_features`). ``cost_cap`` is the
    target's largest share of paid-only's cost. ``features_of`` restricts each model to the features the
    same model of that calibration reads: a collection's synthetic questions are one distribution and
    cannot tell a dataset's artefact from a signal, so its fit keeps to what the default kept. ``exclude``
    leaves features out of every model: a signal measured but not (yet) earning its place, or an A/B.
    The file is stamped with what the runs were answered with (:func:`eval.stamping.stamp_of`) and
    ``source``, the command that fits it (default: this one's ``python -m eval calibrate`` line).
    ``reports`` False writes only the calibration file, not the calibrated report into the first run;
    ``trees`` False skips the gradient-boosted comparison (reported, never in the file).
    """
    from assistant.calibration import fit

    unknown = sorted(set(exclude) - set(FEATURES))
    if unknown:
        raise RunError(f"--exclude: unknown features {', '.join(unknown)}; known: {', '.join(FEATURES)}")
    names_of = feature_sets(features_of, exclude)
    run_dirs = [results] if isinstance(results, (str, Path)) else list(results)
    run_dirs = [Path(r) if Path(r).is_dir() else Path(r).parent for r in run_dirs]
    run_dir, calls = run_dirs[0], run_dirs[0] / "calls.jsonl"
    # Each run is named by its folder; by its path when two folders share a name (`penny calibrate` runs).
    run_names = [d.name for d in run_dirs]
    if len(set(run_names)) < len(run_names):
        run_names = [str(d) for d in run_dirs]
    usable, labels, groups, counts = [], [], [], []
    for directory, name in zip(run_dirs, run_names, strict=True):
        rows, ys = run_records(directory, refresh)
        usable += rows
        labels += ys
        groups += [name] * len(rows)
        counts.append(len(rows))
    source = source or "python -m eval calibrate " + " ".join(str(d) for d in run_dirs)
    stamp = stamp_of(run_dirs, run_names, counts, source)  # before fitting: runs that disagree are refused
    if len(usable) < 10 or sum(labels) < 3 or len(labels) - sum(labels) < 3:
        raise RunError(
            f"{calls}: {len(usable)} usable questions with {sum(labels)} correct local answers; calibration "
            "needs at least 10 questions and 3 of each outcome — run more questions (--limit)"
        )
    features = [r.judgement.features for r in usable if r.judgement]
    required = [name for name in FEATURES if name not in OPTIONAL_FEATURES and name not in exclude]
    lacking = sorted({name for row in features for name in required if name not in row})
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
    local_names = names_of["local_correct"]
    held_out_c = regularization_c or choose_regularization(train_x, train_y, folds, seed, local_names)
    held_out_model = fit(
        train_x, train_y, regularization_c=held_out_c, **({"names": local_names} if local_names else {})
    )
    after = auroc([labels[i] for i in test], [held_out_model.probability(features[i]) for i in test])

    options = {
        "folds": folds,
        "seed": seed,
        "regularization_c": regularization_c,
        "groups": groups,
        "trees": trees,
    }
    local_fit = fit_decision(
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
    answerable_fit = fit_decision(
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
        helps_rows = helps.fitted_on if helps else []
        subsets = {
            "local_correct": (features, labels),
            "answerable": (features, has_answer),
            "paid_helps": (
                [features[i] for i in helps_rows],
                [bool(paid_right[i]) for i in helps_rows],
            ),
        }
        for d in decisions:
            rows, ys = subsets[d.name]
            ablations[d.name] = ablation(rows, ys, folds, seed, d.regularization_c, d.features)

    has_paid = all(r.paid is not None for r in usable)
    paid = chosen = best = None
    rescored_records = rescored(usable, oof, gate_oof, helps_oof)
    if has_paid:
        paid, chosen, best = choose_price(rescored_records, cost_cap)
    pick = chosen or best
    final.stamp = replace(stamp, features=tuple(final.features_read()))
    final.meta = {
        **final.meta,
        "source": source,
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
        report = _write_calibrated_report(run_dir, first, pick) if reports else None
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
