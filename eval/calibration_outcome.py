"""What a calibration found, as records and as the lines `eval calibrate` prints: one :class:`DecisionFit`
per model and the :class:`CalibrationOutcome` of the whole run.

Apart from :mod:`eval.calibrate` so the fitting reads as a procedure and the printing as a format, and so
callers can name the outcome without importing the fitting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from eval.distributions import SignFlip
from eval.pricing import COST_CAP, TARGET_ANSWERABLE_RIGHT, TARGET_REFUSED, TARGET_TRUTHFULNESS
from eval.summaries import ConfigSummary


def format_auroc(value: float | None) -> str:
    """An AUROC as printed: three decimals, or a dash when the label had one value only."""
    return "–" if value is None else f"{value:.3f}"


@dataclass(frozen=True)
class DecisionFit:
    """One of the evaluator's three models, measured out of fold on the questions it is fitted to."""

    name: str  # local_correct | answerable | paid_helps
    label: str
    n: int
    positives: int
    regularization_c: float
    auroc: float | None  # logistic, out of fold
    auroc_trees: float | None = None  # gradient-boosted trees on the same features, out of fold
    auroc_has_ans: float | None = None  # local_correct only: on the answerable questions
    features: tuple[str, ...] = ()
    auroc_by_distribution: dict[str, float | None] = field(default_factory=dict)  # out of fold, per run
    auroc_has_ans_by_distribution: dict[str, float | None] = field(default_factory=dict)  # local_correct
    sign_flips: tuple[SignFlip, ...] = ()  # features left out: they change sign between distributions

    def line(self) -> str:
        extra = f", HasAns only {format_auroc(self.auroc_has_ans)}" if self.name == "local_correct" else ""
        line = (
            f"  {self.name:<13} AUROC {format_auroc(self.auroc)} "
            f"(trees {format_auroc(self.auroc_trees)}{extra}) on {self.n} questions, "
            f"{self.positives} positive, C={self.regularization_c:g} — {self.label}"
        )
        if self.auroc_by_distribution:
            line += "\n    per distribution: " + ", ".join(
                f"{g} {format_auroc(v)}" for g, v in self.auroc_by_distribution.items()
            )
        if self.auroc_has_ans_by_distribution:
            line += "; HasAns only: " + ", ".join(
                f"{g} {format_auroc(v)}" for g, v in self.auroc_has_ans_by_distribution.items()
            )
        if self.sign_flips:
            line += "\n    left out, sign changes between distributions: " + "; ".join(
                f.describe() for f in self.sign_flips
            )
        return line


@dataclass
class CalibrationOutcome:
    path: Path
    n_train: int
    n_test: int
    auroc_before: float | None
    auroc_after: float | None
    paid_f1: float | None
    chosen: ConfigSummary | None  # cheapest price setting meeting the target, on out-of-fold scores
    best_f1: ConfigSummary | None  # the best price setting, when none meets the target
    paid_mean_cost_micro_usd: float | None
    decisions: list[DecisionFit] = field(default_factory=list)
    report: Path | None = None  # calibrated.md: the run re-derived with out-of-fold probabilities
    paid: ConfigSummary | None = None
    ablations: dict[str, dict[str, float]] = field(default_factory=dict)  # decision → feature → AUROC lost
    cost_cap: float = COST_CAP
    by_run: dict[str, tuple[ConfigSummary, ConfigSummary, ConfigSummary]] = field(default_factory=dict)

    @property
    def gate_auroc(self) -> float | None:
        """Out-of-fold AUROC of P(answerable) for "the question has an answer"."""
        fit = next((d for d in self.decisions if d.name == "answerable"), None)
        return None if fit is None else fit.auroc

    def lines(self) -> list[str]:
        out = [
            f"local_correct AUROC on {self.n_test} held-out questions: before "
            f"{format_auroc(self.auroc_before)} → after {format_auroc(self.auroc_after)} "
            f"(fitted on {self.n_train})",
            "per decision, out of fold (5-fold):",
            *(d.line() for d in self.decisions),
            *(
                f"  without one feature, {name} loses AUROC: "
                + ", ".join(f"{f} {v:+.3f}" for f, v in sorted(lost.items(), key=lambda kv: -kv[1]))
                for name, lost in self.ablations.items()
            ),
            f"calibration written to {self.path} (fitted on all {self.n_train + self.n_test})",
        ]
        pick = self.chosen or self.best_f1
        if pick is not None and pick.config.wrong_answer_usd is not None:
            cost = (
                f"{100 * pick.mean_cost_micro_usd / self.paid_mean_cost_micro_usd:.0f} % of paid-only cost"
                if self.paid_mean_cost_micro_usd
                else f"mean cost ${pick.mean_cost_micro_usd / 1e6:.6f}"
            )
            paid = self.paid.quality if self.paid else None
            target = (
                f"truthfulness ≥ {TARGET_TRUTHFULNESS:g}, answerable right ≥ "
                f"{100 * TARGET_ANSWERABLE_RIGHT:.0f} %, unanswerable refused ≥ "
                f"{100 * TARGET_REFUSED:.0f} %, cost ≤ {100 * self.cost_cap:.0f} % of paid"
            )
            verdict = (
                f"meets the target: {target}"
                if self.chosen
                else f"NO price setting meets the target ({target}); shown: the best truthfulness within "
                "that cost, its answerable accuracy near local-only's"
            )
            wasted = pick.wasted_escalation_share
            abstain_usd = (pick.config.abstain_ratio or 0.0) * pick.config.wrong_answer_usd
            out.append(
                f"wrong answer ${pick.config.wrong_answer_usd:g}, abstention ${abstain_usd:g}: "
                f"{_truth(pick)} on natural questions; F1 {pick.quality.f1:.1f} (HasAns "
                f"{pick.quality.has_ans_f1 or 0:.1f}, NoAns {pick.quality.no_ans_f1 or 0:.1f}; paid-only "
                f"{paid.f1 if paid else 0:.1f} / {(paid.has_ans_f1 or 0) if paid else 0:.1f}), {cost}, "
                "escalates "
                f"{100 * pick.paid_call_rate:.0f} %, paid also wrong on "
                f"{'–' if wasted is None else f'{100 * wasted:.0f} %'} of escalations — {verdict} "
                "(out-of-fold estimate)"
            )
            for run, (paid_run, local_run, cascade_run) in self.by_run.items():
                out.append(f"  on {run}: " + _versus(paid_run, local_run, cascade_run))
            if self.report is not None:
                out.append(f"calibrated report (out-of-fold): {self.report}")
            out.append(
                f"use it: PENNY_CASCADE__CALIBRATION_FILE={self.path} "
                f"PENNY_CASCADE__WRONG_ANSWER_USD={pick.config.wrong_answer_usd:g} "
                f"PENNY_CASCADE__ABSTAIN_USD={abstain_usd:g}"
            )
        return out


def _truth(s: ConfigSummary) -> str:
    t = s.truth
    if t is None:
        return "truthfulness –"
    accuracy = "–" if t.answerable_accuracy is None else f"{100 * t.answerable_accuracy:.0f} %"
    refused = "–" if t.refused_share is None else f"{100 * t.refused_share:.0f} %"
    return f"truthfulness {t.score:+.2f} (answerable right {accuracy}, unanswerable refused {refused})"


def _versus(paid: ConfigSummary, local: ConfigSummary, cascade: ConfigSummary) -> str:
    """One run's cascade at the chosen prices against its paid-only and local-only answers."""

    def f1s(s: ConfigSummary) -> str:
        q = s.quality
        return f"{_truth(s)}, F1 {q.f1:.1f} (HasAns {q.has_ans_f1 or 0:.1f}, NoAns {q.no_ans_f1 or 0:.1f})"

    share = cascade.mean_cost_micro_usd / paid.mean_cost_micro_usd if paid.mean_cost_micro_usd else 0.0
    wasted = cascade.wasted_escalation_share
    return (
        f"cascade {f1s(cascade)} at {100 * share:.0f} % of paid's cost, escalates "
        f"{100 * cascade.paid_call_rate:.0f} %, paid also wrong on "
        f"{'–' if wasted is None else f'{100 * wasted:.0f} %'}; paid-only {f1s(paid)}; "
        f"local-only {f1s(local)}"
    )
