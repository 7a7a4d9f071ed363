"""Turn a run into ``report.md`` (one row per config, savings vs paid) and ``frontier.png`` (F1 vs cost).

The numbers come from :mod:`eval.summaries` and the plot from :mod:`eval.frontier_plot`; this module
writes the words and tables around them.
"""

from __future__ import annotations

import datetime as dt
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assistant.calibration import auroc
from eval.configs import Config
from eval.frontier_plot import plot_frontier, plot_truthfulness
from eval.metrics import mean_recall_at_k
from eval.records import QuestionRecord
from eval.summaries import (
    COST_TARGET_RATIO,
    QUALITY_TOLERANCE_F1,
    ConfigSummary,
    by_name,
    cheapest_at_quality,
    decision_aurocs,
    local_correct_labels,
    summarize,
)
from eval.verdicts import Truthfulness


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _usd(micro_usd: float) -> str:
    return f"${micro_usd / 1e6:.6f}" if micro_usd < 1e6 else f"${micro_usd / 1e6:,.2f}"


def _row(s: ConfigSummary) -> str:
    q = s.quality
    share = " / ".join(f"{100 * s.shares[t]:.0f}" for t in ("local", "paid", "cache"))
    wasted = "–" if s.wasted_escalation_share is None else f"{100 * s.wasted_escalation_share:.0f}%"
    return (
        f"| {s.name} | {q.exact:.1f} | {q.f1:.1f} | {_pct(q.has_ans_f1)} | {_pct(q.no_ans_f1)} | "
        f"{100 * s.paid_call_rate:.0f}% | {wasted} | {share} | {_usd(s.mean_cost_micro_usd)} | "
        f"{_usd(s.total_cost_micro_usd)} | {s.latency_p50_ms:.0f} | {s.latency_p95_ms:.0f} |"
    )


_HEADER = (
    "| config | EM | F1 | HasAns F1 | NoAns F1 | paid calls | paid also wrong | local/paid/cache % "
    "| mean cost | total cost | p50 ms | p95 ms |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def _share(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def _truth_row(label: str, s: ConfigSummary, t: Truthfulness, paid: ConfigSummary | None) -> str:
    vs_paid = (
        f"{100 * s.mean_cost_micro_usd / paid.mean_cost_micro_usd:.0f} %"
        if paid is not None and paid.mean_cost_micro_usd > 0
        else "–"
    )
    return (
        f"| {label} | {t.score:+.2f} | {t.right} / {t.missed} / {t.wrong} | "
        f"{_share(t.answerable_accuracy)} | {_share(t.refused_share)} | "
        f"{_usd(s.mean_cost_micro_usd)} | {vs_paid} |"
    )


_TRUTH_HEADER = (
    "| config | truthfulness | right / missed / wrong | answerable right | unanswerable refused "
    "| mean cost | cost vs paid |\n|---|---:|---:|---:|---:|---:|---:|"
)


def _truthfulness_section(summaries: Sequence[ConfigSummary]) -> list[str]:
    """What users value (eval.verdicts), per config, then by question kind and by serving tier."""
    main = [s for s in summaries if not s.config.sweep and s.truth is not None]
    paid = by_name(summaries, "paid")
    lines = [
        "## What users value: right, missed, wrong",
        "",
        "Truthfulness = (right − wrong) / N (CRAG): an abstention on an answerable question is *missed* (0), "
        "a wrong answer −1. An answerable question is right when the answer holds one variant of every key "
        'fact (SQuAD questions: F1 ≥ 0.5); an unanswerable one when the answer is "not in the documents".',
        "",
        _TRUTH_HEADER,
        *(_truth_row(s.name, s, s.truth, paid) for s in main if s.truth is not None),
    ]
    kinds = [s for s in main if s.truth_by_kind]
    if kinds:
        lines += ["", "By question kind:", "", _TRUTH_HEADER]
        lines += [_truth_row(f"{s.name}, {k}", s, t, None) for s in kinds for k, t in s.truth_by_kind.items()]
        lines.append("")
        lines.append("(cost columns: the config's mean over all questions.)")
    default = by_name(summaries, "cascade")
    if default is not None and default.truth_by_tier:
        lines += ["", "The default cascade by who served the answer (none: abstained):", "", _TRUTH_HEADER]
        lines += [
            _truth_row(f"cascade, {tier}", default, t, None) for tier, t in default.truth_by_tier.items()
        ]
    return lines


def _default_rule(meta: dict[str, Any]) -> str:
    """The run's default decision rule; runs written before the expected-loss rule name a threshold."""
    return str(meta.get("default_rule") or f"threshold {meta.get('default_threshold', '?')}")


def render_markdown(
    records: Sequence[QuestionRecord],
    summaries: Sequence[ConfigSummary],
    meta: dict[str, Any],
    frontier_png: str | None = "frontier.png",
) -> str:
    main = [s for s in summaries if not s.config.sweep]
    sweep = sorted(
        (s for s in summaries if s.config.kind == "cascade" and s.config.threshold is not None),
        key=lambda s: s.config.threshold or 0.0,
    )
    if not any(s.config.sweep for s in sweep):
        sweep = []  # no sweep asked: the main table already has every row
    frontier = sorted(
        (s for s in summaries if s.config.kind == "cascade" and s.config.wrong_answer_usd is not None),
        key=lambda s: s.config.wrong_answer_usd or 0.0,
    )
    if not any(s.config.sweep for s in frontier):
        frontier = []
    n_has = sum(r.has_answer for r in records)
    lines = [
        f"# Eval: {meta.get('dataset', 'dataset')}",
        "",
        f"{len(records)} questions ({n_has} HasAns, {len(records) - n_has} NoAns)"
        + (f", --limit {meta['limit']} --seed {meta.get('seed', 0)}" if meta.get("limit") else "")
        + f". Local model `{meta.get('local_model', '?')}`, paid model `{meta.get('paid_model', '?')}`; "
        f"default cascade: {_default_rule(meta)}. "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()} "
        f"({meta.get('hardware', platform.processor() or 'CPU')}).",
        "",
        "## Results",
        "",
        _HEADER,
        *(_row(s) for s in main),
        "",
        "EM/F1 are the official SQuAD 2.0 numbers (0–100) after stripping citation markers; an abstention "
        "counts as the empty answer, which is correct only for NoAns questions.",
    ]
    lines += ["", *_truthfulness_section(summaries)]
    if frontier_png:
        lines += ["", "![truthfulness vs cost](truthfulness.png)"]
    paid = by_name(summaries, "paid")
    if paid is not None:
        target = paid.quality.f1 - QUALITY_TOLERANCE_F1
        local_summary = by_name(summaries, "local")
        best = cheapest_at_quality(summaries, paid, local_summary)
        strict = cheapest_at_quality(summaries, paid, strict=True)
        lines += ["", "## Savings vs `paid` at equal quality", ""]
        lines.append(
            f"Equal quality: F1 ≥ paid − {QUALITY_TOLERANCE_F1:g} = {target:.1f}, and HasAns F1 no worse "
            "than the local tier alone (so abstaining cannot buy the F1). Strictly equal (HasAns F1 ≥ paid − "
            f"{QUALITY_TOLERANCE_F1:g} too): "
            + (
                f"{strict.name} at {100 * strict.mean_cost_micro_usd / paid.mean_cost_micro_usd:.0f} % of "
                "paid-only cost."
                if strict is not None and paid.mean_cost_micro_usd > 0
                else "no cascade config."
            )
        )
        lines.append("")
        if best is None:
            lines.append(
                f"No cascade config reached paid F1 − {QUALITY_TOLERANCE_F1:g} = {target:.1f} while keeping "
                "HasAns F1 at the local tier's; the evaluator cannot keep enough wrong local answers from "
                "being served (see the frontier)."
            )
        elif paid.mean_cost_micro_usd > 0 and best.mean_cost_micro_usd >= paid.mean_cost_micro_usd:
            local = by_name(summaries, "local")
            if local is not None and local.mean_cost_micro_usd >= paid.mean_cost_micro_usd:
                why = (
                    f"The local tier is the limit: alone it costs {_usd(local.mean_cost_micro_usd)} "
                    f"per answer ({100 * local.mean_cost_micro_usd / paid.mean_cost_micro_usd:.0f} % of "
                    "paid-only; priced from measured worker-seconds), so no cascade can be cheaper."
                )
            else:
                why = (
                    "The evaluator is the limit: it cannot tell the local tier's right answers from "
                    "its wrong ones well enough to keep quality while answering locally."
                )
            lines.append(
                f"Only {best.name} (F1 {best.quality.f1:.1f}) holds paid-only quality, and it costs "
                f"{100 * best.mean_cost_micro_usd / paid.mean_cost_micro_usd:.0f} % of paid-only: no saving. "
                + why
            )
        elif paid.mean_cost_micro_usd > 0:
            ratio = best.mean_cost_micro_usd / paid.mean_cost_micro_usd
            verdict = "meets" if ratio <= COST_TARGET_RATIO else "misses"
            lines.append(
                f"Cheapest config at equal quality (paid-only F1 {paid.quality.f1:.1f}): "
                f"**{best.name}** at F1 {best.quality.f1:.1f}, mean cost {_usd(best.mean_cost_micro_usd)} "
                f"per answer = **{100 * ratio:.0f} % of paid-only** ({100 * (1 - ratio):.0f} % saved, "
                f"{100 * best.paid_call_rate:.0f} % of questions escalated). "
                f"It {verdict} the ≤ {100 * COST_TARGET_RATIO:.0f} % target."
            )
        else:
            lines.append("Paid-only cost 0 in this run (no settled paid usage): savings are undefined.")
    labels, scores = local_correct_labels(records)
    recall_pairs = [(r.retrieved_ids, r.context_id) for r in records]
    k = max((len(r.retrieved_ids) for r in records), default=0)
    auc = auroc(labels, scores)
    recall_1, recall_k = mean_recall_at_k(recall_pairs, 1), mean_recall_at_k(recall_pairs, k)
    answerable = [(r.retrieved_ids, r.context_id) for r in records if r.has_answer]
    lines += [
        "",
        "## Evaluator and retrieval",
        "",
        f'- Evaluator AUROC for "local answer correct" (F1 ≥ 0.5; NoAns: abstained): '
        f"{'–' if auc is None else f'{auc:.3f}'} over {len(labels)} questions "
        f"({sum(labels)} correct). Per decision, from the probabilities recorded as each question was "
        "answered (held-out numbers when the calibration was fitted on other questions):",
        *(
            f"  - {d.decision}: {'–' if d.auroc is None else f'{d.auroc:.3f}'} ({d.positives} of {d.n})"
            for d in decision_aurocs(records)
        ),
        f"- Retrieval recall@1 {_pct(None if recall_1 is None else 100 * recall_1)} %, recall@{k} "
        f"{_pct(None if recall_k is None else 100 * recall_k)} % (gold = the question's own paragraph; "
        f"HasAns only: recall@{k} "
        f"{_pct(None if (v := mean_recall_at_k(answerable, k)) is None else 100 * v)} %).",
        f"- Spent on this run (both tiers, every question): {_usd(sum(r.spent_micro_usd for r in records))}.",
    ]
    if frontier:
        lines += [
            "",
            "## Expected-loss frontier (cascade:w=W, W = the price of a wrong answer in USD)",
            "",
            _HEADER,
            *(_row(s) for s in frontier),
        ]
    if sweep:
        lines += ["", "## Threshold sweep (cascade@T)", "", _HEADER, *(_row(s) for s in sweep)]
    if frontier_png:
        lines += ["", f"![quality vs cost]({frontier_png})"]
    lines += [
        "",
        "## How the numbers are derived",
        "",
        "Each question is asked once per tier: retrieval once (the same passages for every config), the "
        "local answer with the evaluator's features and P(correct), and the paid answer on the same "
        "sources. Every config is derived from those same calls: `local` serves the local answer, `paid` "
        "the paid one; `cascade@T` serves the local answer when P(correct) ≥ T and the paid one otherwise "
        "(the evaluator's own abstain / pre-generation routing decisions are applied first); `cascade` is "
        "cascade@T at the calibrated default threshold. A config's cost per answer is the sum of the "
        "ledger rows (read back by request id, never recomputed) of the calls it would make: the local "
        "worker-seconds cost for the local call, the settled paid cost for the paid call, both for an "
        "escalated cascade answer. Latency is retrieval plus the same calls' measured times.",
        "",
    ]
    return "\n".join(lines)


def write_report(
    out_dir: Path, records: Sequence[QuestionRecord], configs: Sequence[Config], meta: dict[str, Any]
) -> tuple[Path, Path | None]:
    """Write ``report.md`` and (when there is a cost axis to draw) ``frontier.png`` into ``out_dir``."""
    if not records:
        raise ValueError("no completed questions to report on")
    summaries = summarize(records, configs)
    frontier: Path | None = None
    if any(s.config.kind == "cascade" for s in summaries) or len(summaries) > 1:
        frontier = plot_frontier(
            summaries,
            Path(out_dir) / "frontier.png",
            title=f"{meta.get('dataset', '')}: F1 vs cost ({len(records)} questions)",
        )
        plot_truthfulness(
            summaries,
            Path(out_dir) / "truthfulness.png",
            title=f"{meta.get('dataset', '')}: truthfulness vs cost ({len(records)} questions)",
        )
    report = Path(out_dir) / "report.md"
    report.write_text(
        render_markdown(records, summaries, meta, frontier.name if frontier else None), encoding="utf-8"
    )
    return report, frontier
