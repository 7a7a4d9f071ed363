"""Refit the evaluator's logistic models on a run, and pick the thresholds that hold quality at least cost.

Two models are fitted on the same features. P(correct): labels "the local answer was correct" (F1 ≥ 0.5
on HasAns; abstained on NoAns). P(answerable): labels "the question has an answer" (SQuAD 2.0 HasAns), the
gate below which the cascade abstains. AUROC before/after is measured on a held-out, label-stratified split
of the run: "before" is the P(correct) the service gave during the run, "after" is a model fitted on the
rest. The file written is fitted on the whole run. The escalation threshold T and the abstain gate A are
chosen together on out-of-fold predictions (each question scored by models that never saw it), so the
promised F1 and cost are not flattered by fitting and choosing on the same answers.
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
    quality_gap,
    summarize,
)
from eval.runs import Config, QuestionRecord, RunError, load_records, threshold_name

if TYPE_CHECKING:
    from assistant.answering.calibration import Calibration

THRESHOLD_GRID: tuple[float, ...] = tuple(round(i * 0.02, 2) for i in range(51))
C_GRID: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
GATE_GRID: tuple[float, ...] = tuple(round(i * 0.05, 2) for i in range(20))  # 0.0: no abstain gate


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
    gate_auroc: float | None = None  # out-of-fold AUROC of P(answerable) for "the question has an answer"
    report: Path | None = None  # calibrated.md: the run re-derived with out-of-fold P(correct)/P(answerable)

    def lines(self) -> list[str]:
        def fmt(value: float | None) -> str:
            return "–" if value is None else f"{value:.3f}"

        out = [
            f"evaluator AUROC on {self.n_test} held-out questions: before {fmt(self.auroc_before)} → after "
            f"{fmt(self.auroc_after)} (fitted on {self.n_train})",
            f"answerable gate AUROC (out-of-fold, all questions): {fmt(self.gate_auroc)}",
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
                f"meets the target: F1 ≥ paid − {QUALITY_TOLERANCE_F1:g} ({self.target_f1:.1f}), HasAns F1 "
                "no worse than local-only"
                if self.chosen
                else f"NO (threshold, gate) holds F1 ≥ paid − {QUALITY_TOLERANCE_F1:g} with HasAns F1 at "
                "least local-only's; the closest is shown"
            )
            out.append(
                f"threshold {pick.config.threshold:.2f}, abstain below P(answerable) "
                f"{pick.config.abstain_below or 0:.2f}: F1 {pick.quality.f1:.1f} (HasAns "
                f"{pick.quality.has_ans_f1 or 0:.1f}, NoAns {pick.quality.no_ans_f1 or 0:.1f}), {cost}, "
                f"escalates {100 * pick.paid_call_rate:.0f} % — {verdict} (out-of-fold estimate)"
            )
            if self.report is not None:
                out.append(f"calibrated report (out-of-fold): {self.report}")
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
    features: Sequence[dict[str, float]],
    labels: Sequence[bool],
    folds: int,
    seed: int,
    regularization_c: float = 1.0,
) -> list[float]:
    """P(label) of each question from a model fitted on the other folds."""
    from sklearn.model_selection import StratifiedKFold

    from assistant.answering.calibration import fit

    folds = max(2, min(folds, sum(labels), len(labels) - sum(labels)))
    predictions = [0.0] * len(labels)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(list(range(len(labels))), [int(x) for x in labels]):
        model = fit(
            [features[i] for i in train], [labels[i] for i in train], regularization_c=regularization_c
        )
        for i in test:
            predictions[i] = model.probability(features[i])
    return predictions


def choose_regularization(
    features: Sequence[dict[str, float]], labels: Sequence[bool], folds: int, seed: int
) -> float:
    """The L2 strength C with the best out-of-fold AUROC: a few hundred answers and ten correlated features
    overfit at sklearn's default C = 1 (ties go to the stronger regularisation)."""
    scores = [(auroc(labels, out_of_fold(features, labels, folds, seed, c)) or 0.0, -c) for c in C_GRID]
    return -max(scores)[1]


def rescored(
    records: Sequence[QuestionRecord],
    p_correct: Sequence[float],
    p_answerable: Sequence[float | None] | None = None,
) -> list[QuestionRecord]:
    """Copies of ``records`` whose evaluator P(correct) (and P(answerable)) are replaced, for re-deriving
    cascade configs."""
    gate = list(p_answerable) if p_answerable is not None else [None] * len(records)
    return [
        replace(r, judgement=replace(r.judgement, p_correct=p, p_answerable=a)) if r.judgement else r
        for r, p, a in zip(records, p_correct, gate, strict=True)
    ]


def gated_name(threshold: float, abstain_below: float) -> str:
    return threshold_name(threshold) + (f" abstain<{abstain_below:.2f}" if abstain_below > 0 else "")


def choose_threshold(
    records: Sequence[QuestionRecord],
    tolerance_f1: float = QUALITY_TOLERANCE_F1,
    gates: Sequence[float] = (0.0,),
) -> tuple[ConfigSummary | None, ConfigSummary | None, ConfigSummary | None]:
    """(paid summary, cheapest cascade (T, A) within ``tolerance_f1`` of paid, best-F1 cascade (T, A)).

    ``gates`` are the abstain thresholds A tried on P(answerable); 0 means no gate.
    """
    configs = [
        Config("paid", "paid"),
        Config("local", "local"),
        *(Config(gated_name(t, a), "cascade", t, abstain_below=a) for a in gates for t in THRESHOLD_GRID),
    ]
    summaries = summarize(records, configs)
    paid, local = summaries[0], summaries[1]
    cascades = summaries[2:]
    chosen = cheapest_at_quality(cascades, paid, local, tolerance_f1)
    best = max(cascades, key=lambda s: (quality_gap(s, paid), -s.mean_cost_micro_usd))
    return paid, chosen, best


def calibrate(
    results: Path,
    *,
    out: Path | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    folds: int = 5,
    tolerance_f1: float = QUALITY_TOLERANCE_F1,
    regularization_c: float | None = None,
) -> CalibrationOutcome:
    """Fit, evaluate and write a calibration from the run at ``results`` (run dir or its results.jsonl).

    ``regularization_c`` None picks C by cross-validation (:func:`choose_regularization`), on the training
    split for the held-out AUROC and on the whole run for the file written.
    """
    from assistant.answering.calibration import fit

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
    train_x, train_y = [features[i] for i in train], [labels[i] for i in train]
    held_out_c = regularization_c or choose_regularization(train_x, train_y, folds, seed)
    held_out_model = fit(train_x, train_y, regularization_c=held_out_c)
    after = auroc([labels[i] for i in test], [held_out_model.probability(features[i]) for i in test])

    c_correct = regularization_c or choose_regularization(features, labels, folds, seed)
    oof = out_of_fold(features, labels, folds, seed, c_correct)
    answerable = [r.has_answer for r in usable]
    gate_possible = 3 <= sum(answerable) <= len(answerable) - 3
    c_gate = (
        (regularization_c or choose_regularization(features, answerable, folds, seed))
        if gate_possible
        else 1.0
    )
    gate_oof = out_of_fold(features, answerable, folds, seed, c_gate) if gate_possible else None
    has_paid = all(r.paid is not None for r in usable)
    paid = chosen = best = None
    rescored_records = rescored(usable, oof, gate_oof)
    if has_paid:
        paid, chosen, best = choose_threshold(
            rescored_records, tolerance_f1, GATE_GRID if gate_possible else (0.0,)
        )
    pick = chosen or best

    final: Calibration = fit(
        features,
        labels,
        regularization_c=c_correct,
        meta={
            "source": f"python -m eval calibrate {run_dir}",
            "label": "local answer correct: F1 >= 0.5 (HasAns) or abstained (NoAns)",
            "auroc_held_out_before": before,
            "auroc_held_out_after": after,
            **({"recommended_threshold": pick.config.threshold} if pick else {}),
        },
    )
    if gate_possible:
        final.answerable = fit(
            features,
            answerable,
            regularization_c=c_gate,
            meta={"label": "question has an answer (SQuAD 2.0 HasAns)"},
        )
        final.abstain_below = (pick.config.abstain_below or 0.0) if pick else 0.0
    path = Path(out) if out else run_dir / "calibration.json"
    final.save(path)
    report = None
    if pick is not None and paid is not None:
        report = _write_calibrated_report(run_dir, rescored_records, pick)
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
        gate_auroc=auroc(answerable, gate_oof) if gate_oof is not None else None,
        report=report,
    )


def _write_calibrated_report(run_dir: Path, records: Sequence[QuestionRecord], pick: ConfigSummary) -> Path:
    """``calibrated.md`` and ``calibrated-frontier.png``: the run re-derived with out-of-fold scores, at
    the chosen abstain gate, with the escalation threshold swept."""
    import json

    from eval.report import plot_frontier, render_markdown

    gate = pick.config.abstain_below or 0.0
    configs = [
        Config("local", "local"),
        Config("paid", "paid"),
        Config("cascade", "cascade", pick.config.threshold, abstain_below=gate),
        *(
            Config(threshold_name(t), "cascade", t, sweep=True, abstain_below=gate)
            for t in THRESHOLD_GRID[::5]
        ),
    ]
    summaries = summarize(records, configs)
    meta_path = run_dir / "run.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    meta["default_threshold"] = f"{pick.config.threshold:.2f} (calibrated; abstain below {gate:.2f})"
    png = plot_frontier(
        summaries,
        run_dir / "calibrated-frontier.png",
        title=f"{meta.get('dataset', '')}: calibrated evaluator, out-of-fold ({len(records)} questions)",
    )
    path = run_dir / "calibrated.md"
    text = render_markdown(records, summaries, meta, png.name)
    note = (
        "\n\n> Calibrated re-derivation: every question's P(correct) and P(answerable) come from models "
        "fitted on the other folds of this run (5-fold, out-of-fold), so these rows estimate what the "
        "written calibration does on new questions of the same kind.\n"
    )
    path.write_text(text.replace("\n## Results\n", note + "\n## Results\n", 1), encoding="utf-8")
    return path
