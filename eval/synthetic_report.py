"""Does a calibration fitted on synthetic questions hold on real ones? Per decision, its AUROC on the
real questions next to a fit on their real labels (out of fold), and both cascade frontiers: the report
``eval run --calibration synthetic`` writes (``synthetic.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from eval.configs import Config
from eval.records import QuestionRecord

if TYPE_CHECKING:
    from assistant.calibration import Calibration


@dataclass(frozen=True)
class DecisionComparison:
    name: str
    n: int
    auroc_synthetic: float | None  # the synthetic fit, scored on the real questions (never fitted on them)
    auroc_real_oof: float | None  # fitted on the real labels, out of fold

    @property
    def ratio(self) -> float | None:
        if self.auroc_synthetic is None or not self.auroc_real_oof:
            return None
        return self.auroc_synthetic / self.auroc_real_oof


def compare_on_real(
    records: Sequence[QuestionRecord], synthetic: Calibration, *, folds: int = 5, seed: int = 0
) -> tuple[list[DecisionComparison], list[QuestionRecord], list[QuestionRecord]]:
    """Each decision's AUROC on the real questions: the synthetic calibration's (fitted without a real
    label) against a fit on the real labels (out of fold, the best that data can do).

    Also returns the records rescored both ways, for the two cascade frontiers.
    """
    from assistant.calibration.fitting import auroc, feature_sets
    from eval.fitting import fit_decision
    from eval.labelled_runs import judged_by, rescored, training_set
    from eval.paid_helps import fit_paid_helps
    from eval.summaries import paid_correct_labels

    usable, labels = training_set(records)
    features = [r.judgement.features for r in usable if r.judgement]
    abstained = [r.judgement.local_abstained for r in usable if r.judgement]
    has_answer = [r.has_answer for r in usable]
    paid_right = paid_correct_labels(usable)
    wrong = [i for i, y in enumerate(labels) if not y and paid_right[i] is not None]
    options = {"folds": folds, "seed": seed, "regularization_c": None}
    out: list[DecisionComparison] = []
    oof: dict[str, list[float]] = {}
    # The real-label fit reads the same features as the synthetic one, so the ratio compares labels only.
    names = feature_sets(synthetic)
    tasks = (
        ("local_correct", labels, synthetic.probability, names["local_correct"]),
        ("answerable", has_answer, synthetic.p_answerable, names["answerable"]),
    )
    for name, ys, score, columns in tasks:
        fitted = fit_decision(name, name, features, ys, names=columns, **options)  # type: ignore[arg-type]
        if fitted is not None:
            oof[name] = fitted[1]
        scores = [score(f) for f in features]
        synthetic_auroc = None if any(v is None for v in scores) else auroc(ys, scores)
        out.append(DecisionComparison(name, len(ys), synthetic_auroc, fitted[0].auroc if fitted else None))
    helps_fit = fit_paid_helps(
        features,
        labels,
        has_answer,
        paid_right,
        oof["local_correct"],
        oof.get("answerable"),
        abstained,
        names=names["paid_helps"],
        **options,  # type: ignore[arg-type]
    )
    helps: list[float | None] = list(helps_fit.oof) if helps_fit else [None] * len(usable)
    wrong_labels = [bool(paid_right[i]) for i in wrong]
    synthetic_helps = [synthetic.p_paid_helps(features[i], local_abstained=abstained[i]) for i in wrong]
    out.append(
        DecisionComparison(
            "paid_helps",
            len(wrong),
            None if any(v is None for v in synthetic_helps) else auroc(wrong_labels, synthetic_helps),
            helps_fit.summary.auroc if helps_fit else None,
        )
    )
    synthetic_records = judged_by(usable, synthetic)
    real_records = rescored(usable, oof["local_correct"], oof.get("answerable"), helps)
    return out, synthetic_records, real_records


def write_synthetic_report(
    out_dir: Path,
    records: Sequence[QuestionRecord],
    synthetic: Calibration,
    meta: dict[str, object],
    *,
    seed: int = 0,
) -> tuple[Path, list[DecisionComparison]]:
    """``synthetic.md``: per decision, the synthetic fit's AUROC on the real questions against the
    real-label out-of-fold fit, and both cascades' frontiers (one row per price of a wrong answer)."""
    from eval.pricing import price_configs
    from eval.summaries import summarize

    comparisons, synthetic_records, real_records = compare_on_real(records, synthetic, seed=seed)
    ratio = float(synthetic.meta.get("recommended_abstain_usd", 0.0)) / float(
        synthetic.meta.get("recommended_wrong_answer_usd", 1.0) or 1.0
    )
    configs = [Config("local", "local"), Config("paid", "paid"), *price_configs(ratios=(ratio or 1.0,))]
    rows_synthetic = summarize(synthetic_records, configs)
    rows_real = summarize(real_records, configs)
    paid_cost = rows_synthetic[1].mean_cost_micro_usd or 1.0

    def fmt(value: float | None, digits: int = 3) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    n_has = sum(r.has_answer for r in synthetic_records)
    lines = [
        f"# Synthetic calibration, scored on real questions: {meta.get('dataset', '')}",
        "",
        f"Fitted on {synthetic.meta.get('n', '?')} questions the paid tier wrote from the dataset's own "
        f"contexts (no real label used); scored on {len(synthetic_records)} real questions ({n_has} HasAns, "
        f"{len(synthetic_records) - n_has} NoAns). The real-label column is the best the real labels can do: "
        "each question scored by a model fitted on the other folds (5-fold).",
        "",
        "| decision | questions | AUROC, synthetic fit | AUROC, real labels (out of fold) | ratio |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {c.name} | {c.n} | {fmt(c.auroc_synthetic)} | {fmt(c.auroc_real_oof)} | "
            f"{'–' if c.ratio is None else f'{100 * c.ratio:.0f} %'} |"
            for c in comparisons
        ),
        "",
        f"## Cascade frontier (abstention priced at {ratio:g}× a wrong answer)",
        "",
        "| wrong answer | synthetic: F1 | HasAns | NoAns | cost vs paid | real labels: F1 | HasAns | NoAns "
        "| cost vs paid |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s, r in zip(rows_synthetic, rows_real, strict=True):
        name = s.config.name if s.config.wrong_answer_usd is None else f"${s.config.wrong_answer_usd:g}"
        lines.append(
            f"| {name} | {s.quality.f1:.1f} | {fmt(s.quality.has_ans_f1, 1)} | "
            f"{fmt(s.quality.no_ans_f1, 1)} | {100 * s.mean_cost_micro_usd / paid_cost:.0f} % | "
            f"{r.quality.f1:.1f} | "
            f"{fmt(r.quality.has_ans_f1, 1)} | {fmt(r.quality.no_ans_f1, 1)} | "
            f"{100 * r.mean_cost_micro_usd / paid_cost:.0f} % |"
        )
    path = Path(out_dir) / "synthetic.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, comparisons
