"""Which decision limits the cascade? The shipped default's three models, fitted out of fold exactly as
`eval calibrate` fits them (the same runs, features and C), then each decision replaced by its true label
in turn, the cascade re-derived at the shipped prices.

Then the same on 80 SQuAD questions no fit has seen (``squad-heldout/cascade-80``, both tiers), judged by
the shipped calibration file itself.

Run: ``python docs/eval/limits/attribution.py`` (stored answers only; nothing is generated).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

from assistant.calibration import Calibration, auroc, paid_helps_mixture
from eval.configs import Config
from eval.fitting import fit_decision
from eval.labelled_runs import rescored, run_records
from eval.paid_helps import fit_paid_helps
from eval.records import QuestionRecord
from eval.summaries import ConfigSummary, paid_correct_labels, summarize

REPO = Path(__file__).resolve().parents[3]
RUNS = [
    REPO / "docs/eval/default-calibration/squad-real",
    REPO / "docs/eval/default-calibration/pydoc-synthetic",
]
HELD_OUT = REPO / "docs/eval/squad-heldout/cascade-80"
SHIPPED = json.loads((REPO / "assistant/data/calibration.json").read_text())
DEFAULT = Config("default", "cascade", wrong_answer_usd=0.005, abstain_ratio=2.0)  # $0.005 and $0.01


def main() -> None:
    records, correct, groups = [], [], []
    for run in RUNS:
        rows, labels = run_records(run, False)
        records += rows
        correct += labels
        groups += [run.name] * len(rows)
    features = [r.judgement.features for r in records]
    answerable = [r.has_answer for r in records]
    paid_right = paid_correct_labels(records)
    abstained = [r.judgement.local_abstained for r in records]
    options = {"folds": 5, "seed": 0, "groups": groups}
    c = SHIPPED["meta"]["C"]
    _, p_correct, _ = fit_decision(
        "local_correct", "", features, correct, regularization_c=c, names=SHIPPED["features"], **options
    )
    answerable_model = SHIPPED["answerable"]
    _, p_answerable, _ = fit_decision(
        "answerable",
        "",
        features,
        answerable,
        regularization_c=answerable_model["meta"]["C"],
        names=answerable_model["features"],
        **options,
    )
    helps_names = SHIPPED["paid_helps"]["features"]
    helps_c = SHIPPED["paid_helps"]["meta"]["C"]

    def helps(p_c: list[float], p_a: list[float]) -> list[float]:
        fitted = fit_paid_helps(
            features,
            correct,
            answerable,
            paid_right,
            p_c,
            p_a,
            abstained,
            regularization_c=helps_c,
            names=helps_names,
            **options,
        )
        assert fitted is not None
        return fitted.oof

    variants = oracles(p_correct, p_answerable, helps, correct, answerable, paid_right)
    for group in dict.fromkeys(groups):
        rows = [i for i, g in enumerate(groups) if g == group]
        picked = {name: tuple([p[i] for i in rows] for p in ps) for name, ps in variants.items()}
        report(f"{group}, out of fold", [records[i] for i in rows], picked)
    sharper(records, groups, correct, answerable, p_correct, p_answerable, helps)
    held_out()


def sharper(
    records: list[QuestionRecord],
    groups: list[str],
    correct: list[bool],
    answerable: list[bool],
    p_correct: list[float],
    p_answerable: list[float],
    helps: Callable[[list[float], list[float]], list[float]],
) -> None:
    """How good must the two signals be? Each log-odds moved by ``shift`` towards its true label (the same
    shift for both), the cascade re-derived: one row per resulting AUROC."""
    rows = [i for i, g in enumerate(groups) if g == groups[0]]
    has = [i for i in rows if answerable[i]]
    picked = [records[i] for i in rows]
    (paid,) = summarize(picked, [Config("paid", "paid")])
    print(f"== {groups[0]}, both signals sharpened towards the truth (out of fold)")
    for shift in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0):
        p_c = [toward(p, y, shift) for p, y in zip(p_correct, correct, strict=True)]
        p_a = [toward(p, y, shift) for p, y in zip(p_answerable, answerable, strict=True)]
        p_h = helps(p_c, p_a)
        correct_auroc = auroc([correct[i] for i in has], [p_c[i] for i in has])
        answerable_auroc = auroc([answerable[i] for i in rows], [p_a[i] for i in rows])
        cascade = cascade_line(
            picked, [p_c[i] for i in rows], [p_a[i] for i in rows], [p_h[i] for i in rows], paid
        )
        print(
            f"  shift {shift:4.2f}: AUROC local correct (HasAns) {correct_auroc:.3f}, "
            f"answerable {answerable_auroc:.3f} -> {cascade}"
        )


def toward(p: float, label: bool, shift: float) -> float:
    z = math.log(p / (1 - p)) + (shift if label else -shift)
    return 1 / (1 + math.exp(-z))


def held_out() -> None:
    """The shipped file's own probabilities on questions it was not fitted on, and the same truths."""
    calibration = Calibration.load()
    records, correct = run_records(HELD_OUT, False)
    features = [r.judgement.features for r in records]
    abstained = [r.judgement.local_abstained for r in records]
    p_correct = [calibration.probability(f) for f in features]
    p_answerable = [calibration.p_answerable(f) or 0.0 for f in features]
    assert calibration.paid_helps is not None and calibration.paid_helps_unanswerable is not None
    rate = calibration.paid_helps_unanswerable

    def helps(p_c: list[float], p_a: list[float]) -> list[float]:
        return [
            paid_helps_mixture(
                calibration.paid_helps.probability(f), rate, p_answerable=a, p_correct=c, local_abstained=x
            )
            for f, c, a, x in zip(features, p_c, p_a, abstained, strict=True)
        ]

    answerable = [r.has_answer for r in records]
    variants = oracles(p_correct, p_answerable, helps, correct, answerable, paid_correct_labels(records))
    report(f"{HELD_OUT.name}, held out", records, variants)


def oracles(
    p_correct: list[float],
    p_answerable: list[float],
    helps: Callable[[list[float], list[float]], list[float]],
    correct: list[bool],
    answerable: list[bool],
    paid_right: list[bool | None],
) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """The models' probabilities, then each decision replaced by its true label (P(paid helps) follows
    the other two, as in the service), then all three."""
    true_correct = [0.999 if y else 0.001 for y in correct]
    true_answerable = [0.999 if y else 0.001 for y in answerable]
    # The paid tier's verdict known in advance: helps only where the local answer is wrong and paid's right.
    true_helps = [0.999 if (not y and bool(p)) else 0.001 for y, p in zip(correct, paid_right, strict=True)]
    return {
        "shipped models": (p_correct, p_answerable, helps(p_correct, p_answerable)),
        "P(answerable) replaced by the truth": (
            p_correct,
            true_answerable,
            helps(p_correct, true_answerable),
        ),
        "P(local correct) replaced by the truth": (
            true_correct,
            p_answerable,
            helps(true_correct, p_answerable),
        ),
        "both replaced by the truth": (true_correct, true_answerable, helps(true_correct, true_answerable)),
        "all three replaced by the truth": (true_correct, true_answerable, true_helps),
    }


def report(
    title: str,
    records: list[QuestionRecord],
    variants: dict[str, tuple[list[float], list[float], list[float]]],
) -> None:
    paid, local = summarize(records, [Config("paid", "paid"), Config("local", "local")])
    print(f"== {title} ({len(records)} questions): paid-only {line(paid)}; local-only {line(local)}")
    for name, (p_correct, p_answerable, p_helps) in variants.items():
        print(f"  {name:<40} {cascade_line(records, p_correct, p_answerable, p_helps, paid)}")


def cascade_line(
    records: list[QuestionRecord],
    p_correct: list[float],
    p_answerable: list[float],
    p_helps: list[float],
    paid: ConfigSummary,
) -> str:
    """The default cascade on ``records`` judged by these probabilities, as one line."""
    (cascade,) = summarize(rescored(records, p_correct, p_answerable, p_helps), [DEFAULT])
    share = cascade.mean_cost_micro_usd / paid.mean_cost_micro_usd
    wasted = cascade.wasted_escalation_share
    return (
        f"{line(cascade)}, {share:4.0%} of paid's cost, escalates {cascade.paid_call_rate:4.0%}, "
        f"paid also wrong on {'–' if wasted is None else f'{wasted:.0%}'}"
    )


def line(s: ConfigSummary) -> str:
    q = s.quality
    return f"F1 {q.f1:4.1f} (HasAns {q.has_ans_f1:4.1f}, NoAns {q.no_ans_f1:4.1f})"


if __name__ == "__main__":
    main()
