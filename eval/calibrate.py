"""Refit the evaluator's logistic model on a run, and pick the threshold that holds quality at least cost.

Labels are "the local answer was correct" (F1 ≥ 0.5 on HasAns; abstained on NoAns). AUROC before/after is
measured on a held-out, label-stratified split of the run: "before" is the P(correct) the service gave
during the run, "after" is a model fitted on the rest. The file written is fitted on the whole run. The
threshold is chosen on out-of-fold predictions (each question scored by a model that never saw it), so
the promised F1 and cost are not flattered by fitting and choosing on the same answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from eval.metrics import auroc
from eval.report import (
    QUALITY_TOLERANCE_F1,
    ConfigSummary,
    cheapest_at_quality,
    local_correct_labels,
    summarize,
)
from eval.runs import Config, QuestionRecord, RunError, load_records, threshold_name

if TYPE_CHECKING:
    from assistant.evaluator import Calibration

THRESHOLD_GRID: tuple[float, ...] = tuple(round(i * 0.01, 2) for i in range(101))


@dataclass
class CalibrationOutcome:
    path: Path
    n_train: int
    n_test: int
    auroc_before: float | None
    auroc_after: float | None
    paid_f1: float | None
    target_f1: float | None
    chosen: ConfigSummary | None  # cheapest threshold meeting the target, on out-of-fold P(correct)
    best_f1: ConfigSummary | None  # the best cascade threshold, when none meets the target
    paid_mean_cost_micro_usd: float | None

    def lines(self) -> list[str]:
        def fmt(value: float | None) -> str:
            return "–" if value is None else f"{value:.3f}"

        out = [
            f"evaluator AUROC on {self.n_test} held-out questions: before {fmt(self.auroc_before)} → after "
            f"{fmt(self.auroc_after)} (fitted on {self.n_train})",
            f"calibration written to {self.path} (fitted on all {self.n_train + self.n_test})",
        ]
        pick = self.chosen or self.best_f1
        if pick is not None and pick.config.threshold is not None:
            cost = (
                f"{100 * pick.mean_cost_micro_usd / self.paid_mean_cost_micro_usd:.0f} % of paid-only cost"
                if self.paid_mean_cost_micro_usd
                else f"mean cost ${pick.mean_cost_micro_usd / 1e6:.6f}"
            )
            verdict = (
                f"meets the target F1 ≥ {self.target_f1:.1f} "
                f"(paid {self.paid_f1:.1f} − {QUALITY_TOLERANCE_F1:g})"
                if self.chosen
                else f"NO threshold reaches F1 ≥ {self.target_f1:.1f}; best F1 shown"
            )
            out.append(
                f"threshold {pick.config.threshold:.2f}: F1 {pick.quality.f1:.1f}, {cost}, escalates "
                f"{100 * pick.paid_call_rate:.0f} % — {verdict} (out-of-fold estimate)"
            )
            out.append(
                f"use it: PENNY_CASCADE__CALIBRATION_FILE={self.path} "
                f"PENNY_CASCADE__ESCALATE_BELOW={pick.config.threshold:.2f}"
            )
        return out


def _training_set(records: Sequence[QuestionRecord]) -> tuple[list[QuestionRecord], list[bool]]:
    usable = [r for r in records if r.local is not None and r.judgement is not None and r.judgement.features]
    labels, _ = local_correct_labels(usable)
    return usable, labels


def stratified_split(labels: Sequence[bool], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices (train, test) with each label split in the same proportion; deterministic for a seed."""
    from sklearn.model_selection import train_test_split

    indices = list(range(len(labels)))
    train, test = train_test_split(indices, test_size=test_fraction, random_state=seed, stratify=list(labels))
    return sorted(train), sorted(test)


def out_of_fold(
    features: Sequence[dict[str, float]], labels: Sequence[bool], folds: int, seed: int
) -> list[float]:
    """P(correct) of each question from a model fitted on the other folds."""
    from sklearn.model_selection import StratifiedKFold

    from assistant.evaluator import fit

    folds = max(2, min(folds, sum(labels), len(labels) - sum(labels)))
    predictions = [0.0] * len(labels)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(list(range(len(labels))), [int(x) for x in labels]):
        model = fit([features[i] for i in train], [labels[i] for i in train])
        for i in test:
            predictions[i] = model.probability(features[i])
    return predictions


def rescored(records: Sequence[QuestionRecord], p_correct: Sequence[float]) -> list[QuestionRecord]:
    """Copies of ``records`` whose evaluator P(correct) is replaced, for re-deriving cascade configs."""
    return [
        replace(r, judgement=replace(r.judgement, p_correct=p)) if r.judgement else r
        for r, p in zip(records, p_correct, strict=True)
    ]


def choose_threshold(
    records: Sequence[QuestionRecord], tolerance_f1: float = QUALITY_TOLERANCE_F1
) -> tuple[ConfigSummary | None, ConfigSummary | None, ConfigSummary | None]:
    """(paid summary, cheapest cascade@T within ``tolerance_f1`` of paid, best-F1 cascade@T)."""
    configs = [Config("paid", "paid"), *(Config(threshold_name(t), "cascade", t) for t in THRESHOLD_GRID)]
    summaries = summarize(records, configs)
    paid = summaries[0]
    cascades = summaries[1:]
    chosen = cheapest_at_quality(cascades, paid.quality.f1 - tolerance_f1)
    best = max(cascades, key=lambda s: (s.quality.f1, -s.mean_cost_micro_usd))
    return paid, chosen, best


def calibrate(
    results: Path,
    *,
    out: Path | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    folds: int = 5,
    tolerance_f1: float = QUALITY_TOLERANCE_F1,
    regularization_c: float = 1.0,
) -> CalibrationOutcome:
    """Fit, evaluate and write a calibration from the run at ``results`` (run dir or its results.jsonl)."""
    from assistant.evaluator import fit

    run_dir = Path(results) if Path(results).is_dir() else Path(results).parent
    calls = run_dir / "calls.jsonl"
    if not calls.exists():
        raise RunError(f"{calls} not found: pass the --out directory of an `eval run` (or its results.jsonl)")
    records = [r for r in load_records(calls) if r.complete]
    # A question re-asked after a partial record appears twice: keep its last complete record.
    records = list({r.id: r for r in records}.values())
    usable, labels = _training_set(records)
    if len(usable) < 10 or sum(labels) < 3 or len(labels) - sum(labels) < 3:
        raise RunError(
            f"{calls}: {len(usable)} usable questions with {sum(labels)} correct local answers; calibration "
            "needs at least 10 questions and 3 of each outcome — run more questions (--limit)"
        )
    features = [r.judgement.features for r in usable if r.judgement]
    train, test = stratified_split(labels, test_fraction, seed)
    before = auroc(
        [labels[i] for i in test], [usable[i].judgement.p_correct for i in test if usable[i].judgement]
    )
    held_out_model = fit(
        [features[i] for i in train], [labels[i] for i in train], regularization_c=regularization_c
    )
    after = auroc([labels[i] for i in test], [held_out_model.probability(features[i]) for i in test])

    oof = out_of_fold(features, labels, folds, seed)
    has_paid = all(r.paid is not None for r in usable)
    paid = chosen = best = None
    if has_paid:
        paid, chosen, best = choose_threshold(rescored(usable, oof), tolerance_f1)

    final: Calibration = fit(
        features,
        labels,
        regularization_c=regularization_c,
        meta={
            "source": f"python -m eval calibrate {run_dir}",
            "label": "local answer correct: F1 >= 0.5 (HasAns) or abstained (NoAns)",
            "auroc_held_out_before": before,
            "auroc_held_out_after": after,
            **({"recommended_threshold": (chosen or best).config.threshold} if (chosen or best) else {}),
        },
    )
    path = Path(out) if out else run_dir / "calibration.json"
    final.save(path)
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
    )
