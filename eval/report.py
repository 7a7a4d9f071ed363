"""Turn a run into ``report.md`` (one row per config, savings vs paid) and ``frontier.png`` (F1 vs cost)."""

from __future__ import annotations

import datetime as dt
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.metrics import (
    QualitySummary,
    auroc,
    latency_percentiles,
    mean_recall_at_k,
    shares,
    summarize_quality,
)
from eval.runs import Config, QuestionRecord, derive, is_correct

QUALITY_TOLERANCE_F1 = 1.0  # "equal quality": within this many F1 points of paid-only
COST_TARGET_RATIO = 0.40  # the bar: cascade cost ≤ 40 % of paid-only


@dataclass(frozen=True)
class ConfigSummary:
    config: Config
    quality: QualitySummary
    paid_call_rate: float
    shares: dict[str, float]
    mean_cost_micro_usd: float
    total_cost_micro_usd: int
    latency_p50_ms: float
    latency_p95_ms: float
    degraded: int
    escalations: int = 0
    escalations_paid_wrong: int = 0  # escalated, and the paid answer was wrong too: money for nothing

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def wasted_escalation_share(self) -> float | None:
        return self.escalations_paid_wrong / self.escalations if self.escalations else None


def summarize(records: Sequence[QuestionRecord], configs: Sequence[Config]) -> list[ConfigSummary]:
    """One summary per config, each derived from the same per-question records."""
    summaries = []
    for config in configs:
        rows = [derive(r, config) for r in records]
        p50, p95 = latency_percentiles([r["latency_ms"] for r in rows])
        total = sum(int(r["cost_micro_usd"]) for r in rows)
        summaries.append(
            ConfigSummary(
                config=config,
                quality=summarize_quality((r["has_answer"], r["em"], r["f1"]) for r in rows),
                paid_call_rate=sum(r["paid_call"] for r in rows) / len(rows),
                shares=shares([r["tier"] for r in rows]),
                mean_cost_micro_usd=total / len(rows),
                total_cost_micro_usd=total,
                latency_p50_ms=p50,
                latency_p95_ms=p95,
                degraded=sum(r["degraded"] for r in rows),
                escalations=sum(r["escalated"] for r in rows),
                escalations_paid_wrong=sum(
                    r["escalated"] and not is_correct(r["has_answer"], r["em"], r["f1"]) for r in rows
                ),
            )
        )
    return summaries


def local_correct_labels(records: Sequence[QuestionRecord]) -> tuple[list[bool], list[float]]:
    """("local answer correct", evaluator P(correct)) per question that has both."""
    local = Config("local", "local")
    labels, scores = [], []
    for record in records:
        if record.local is None or record.judgement is None:
            continue
        row = derive(record, local)
        labels.append(is_correct(record.has_answer, row["em"], row["f1"]))
        scores.append(record.judgement.p_correct)
    return labels, scores


def quality_gap(summary: ConfigSummary, paid: ConfigSummary) -> float:
    """F1 points to paid-only on the weaker of overall and HasAns F1 (negative: behind paid)."""
    gaps = [summary.quality.f1 - paid.quality.f1]
    if summary.quality.has_ans_f1 is not None and paid.quality.has_ans_f1 is not None:
        gaps.append(summary.quality.has_ans_f1 - paid.quality.has_ans_f1)
    return min(gaps)


def holds_quality(
    summary: ConfigSummary,
    paid: ConfigSummary,
    local: ConfigSummary | None = None,
    tolerance_f1: float = QUALITY_TOLERANCE_F1,
    strict: bool = False,
) -> bool:
    """Overall F1 within ``tolerance_f1`` of paid-only, and on the answerable (HasAns) questions no worse
    than the local tier alone (``strict``: within ``tolerance_f1`` of paid-only there too).

    The HasAns condition keeps a config from buying its F1 with abstentions alone: on SQuAD 2.0 answering
    "not in the documents" to everything scores the NoAns share (~50), more than either model here.
    """
    if strict:
        return quality_gap(summary, paid) >= -tolerance_f1 - 1e-9
    q, ref = summary.quality, paid.quality
    if q.f1 < ref.f1 - tolerance_f1 - 1e-9:
        return False
    if q.has_ans_f1 is None or ref.has_ans_f1 is None:
        return True
    floor = local.quality.has_ans_f1 if local is not None else None
    return floor is None or q.has_ans_f1 >= floor - 1e-9


def cheapest_at_quality(
    summaries: Sequence[ConfigSummary],
    paid: ConfigSummary,
    local: ConfigSummary | None = None,
    tolerance_f1: float = QUALITY_TOLERANCE_F1,
    strict: bool = False,
) -> ConfigSummary | None:
    """The cheapest cascade config that :func:`holds_quality` (ties: higher F1)."""
    candidates = [
        s
        for s in summaries
        if s.config.kind == "cascade" and holds_quality(s, paid, local, tolerance_f1, strict)
    ]
    return min(candidates, key=lambda s: (s.mean_cost_micro_usd, -s.quality.f1), default=None)


def _by_name(summaries: Sequence[ConfigSummary], name: str) -> ConfigSummary | None:
    return next((s for s in summaries if s.name == name), None)


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


def config_rule(config: Config) -> str:
    """A cascade config's decision rule in a few words, for legends and tables."""
    if config.threshold is not None:
        return f"T={config.threshold:.2f}"
    if config.wrong_answer_usd is not None:
        return f"W=${config.wrong_answer_usd:g}"
    return "the run's policy"


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
    paid = _by_name(summaries, "paid")
    if paid is not None:
        target = paid.quality.f1 - QUALITY_TOLERANCE_F1
        local_summary = _by_name(summaries, "local")
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
            local = _by_name(summaries, "local")
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
        f"({sum(labels)} correct).",
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


def plot_frontier(summaries: Sequence[ConfigSummary], path: Path, title: str = "") -> Path:
    """F1 vs mean cost per answer: the threshold sweep and the expected-loss frontier as lines,
    local/paid/cascade marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def x(s: ConfigSummary) -> float:
        return s.mean_cost_micro_usd / 1000.0  # micro-USD per answer → US$ per 1,000 answers

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    cascades = sorted(
        (
            s
            for s in summaries
            if s.config.kind == "cascade" and s.config.threshold is not None and s.config.sweep
        ),
        key=lambda s: s.config.threshold or 0,
    )
    priced = sorted(
        (s for s in summaries if s.config.wrong_answer_usd is not None and s.config.sweep),
        key=lambda s: s.config.wrong_answer_usd or 0,
    )
    if priced:
        ax.plot(
            [x(s) for s in priced],
            [s.quality.f1 for s in priced],
            "-^",
            color="tab:brown",
            markersize=4,
            linewidth=1.2,
            label="cascade:w=W (expected loss, W = price of a wrong answer)",
        )
        for s in priced[:: max(1, len(priced) // 5)]:
            ax.annotate(
                f"W=${s.config.wrong_answer_usd:g}",
                (x(s), s.quality.f1),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
                color="tab:brown",
            )
    paid = _by_name(summaries, "paid")
    local = _by_name(summaries, "local")
    if paid is not None:
        target = paid.quality.f1 - QUALITY_TOLERANCE_F1
        ax.axhline(target, color="tab:green", linestyle="--", linewidth=1)
        ax.text(
            0.0,
            target,
            f"  paid F1 − {QUALITY_TOLERANCE_F1:g}",
            va="bottom",
            color="tab:green",
            fontsize=8,
            transform=ax.get_yaxis_transform(),
        )
        if paid.mean_cost_micro_usd > 0:
            ax.axvspan(
                0,
                COST_TARGET_RATIO * x(paid),
                color="tab:green",
                alpha=0.07,
                label=f"cost ≤ {100 * COST_TARGET_RATIO:.0f} % of paid",
            )
    if cascades:
        ax.plot(
            [x(s) for s in cascades],
            [s.quality.f1 for s in cascades],
            "-o",
            color="tab:blue",
            markersize=4,
            linewidth=1.2,
            label="cascade@T (threshold sweep)",
        )
        step = max(1, len(cascades) // 6)
        labelled: set[tuple[float, float]] = set()
        for i, s in enumerate(cascades):
            spot = (round(x(s), 3), round(s.quality.f1, 1))
            if (i % step == 0 or i == len(cascades) - 1) and spot not in labelled:
                labelled.add(spot)  # thresholds that land on the same point are labelled once
                ax.annotate(
                    f"T={s.config.threshold:.2f}",
                    (x(s), s.quality.f1),
                    textcoords="offset points",
                    xytext=(4, -10),
                    fontsize=7,
                    color="tab:blue",
                )
    default = _by_name(summaries, "cascade")
    if default is not None:
        ax.plot(
            x(default),
            default.quality.f1,
            "o",
            markersize=11,
            markerfacecolor="none",
            markeredgecolor="tab:purple",
            markeredgewidth=2,
            label=f"cascade (default: {config_rule(default.config)})",
        )
    best = cheapest_at_quality([*cascades, *priced], paid, local) if paid else None
    if best is not None and paid is not None and best.mean_cost_micro_usd < paid.mean_cost_micro_usd:
        ax.plot(
            x(best),
            best.quality.f1,
            "*",
            markersize=16,
            color="tab:green",
            label=f"cheapest at equal quality: {best.name}",
        )
    for baseline, marker, color in ((local, "s", "tab:orange"), (paid, "D", "tab:red")):
        if baseline is not None:
            ax.plot(
                x(baseline),
                baseline.quality.f1,
                marker,
                markersize=10,
                color=color,
                label=f"{baseline.name} only: F1 {baseline.quality.f1:.1f}",
            )
    ax.set_xlabel("mean cost per answer (US$ per 1,000 answers, from the ledger)")
    ax.set_ylabel("F1 (SQuAD 2.0, 0–100)")
    ax.set_title(title or "Quality vs cost")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8, framealpha=0.85)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


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
    report = Path(out_dir) / "report.md"
    report.write_text(
        render_markdown(records, summaries, meta, frontier.name if frontier else None), encoding="utf-8"
    )
    return report, frontier
