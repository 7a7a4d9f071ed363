"""``frontier.png``: F1 against mean cost per answer, one line per family of cascade configs, the
local-only and paid-only points and the cheapest config at paid-only quality marked.

Apart from the markdown report because it is the one place that needs matplotlib (imported only when a
plot is drawn), and because calibration draws the same plot for its own re-derivation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.configs import Config
from eval.summaries import (
    COST_TARGET_RATIO,
    QUALITY_TOLERANCE_F1,
    ConfigSummary,
    by_name,
    cheapest_at_quality,
)


def config_rule(config: Config) -> str:
    """A cascade config's decision rule in a few words, for legends and tables."""
    if config.threshold is not None:
        return f"T={config.threshold:.2f}"
    if config.wrong_answer_usd is not None:
        return f"W=${config.wrong_answer_usd:g}"
    return "the run's policy"


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
    paid = by_name(summaries, "paid")
    local = by_name(summaries, "local")
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
    default = by_name(summaries, "cascade")
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
    return _save(fig, ax, path, "F1 (SQuAD 2.0, 0–100)", title or "Quality vs cost")


def plot_truthfulness(summaries: Sequence[ConfigSummary], path: Path, title: str = "") -> Path:
    """``truthfulness.png``: the truthfulness score (right − wrong) / N against mean cost per answer, the
    expected-loss frontier as a line, local-only, paid-only and the default cascade marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def point(s: ConfigSummary) -> tuple[float, float]:
        assert s.truth is not None
        return s.mean_cost_micro_usd / 1000.0, s.truth.score

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    priced = sorted(
        (s for s in summaries if s.config.wrong_answer_usd is not None and s.config.sweep and s.truth),
        key=lambda s: s.config.wrong_answer_usd or 0,
    )
    if priced:
        xs, ys = zip(*(point(s) for s in priced), strict=True)
        ax.plot(xs, ys, "-^", color="tab:brown", markersize=4, linewidth=1.2, label="cascade:w=W")
        for s in priced[:: max(1, len(priced) // 5)]:
            ax.annotate(
                f"W=${s.config.wrong_answer_usd:g}",
                point(s),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
                color="tab:brown",
            )
    marks = (("local", "s", "tab:orange"), ("paid", "D", "tab:red"), ("cascade", "o", "tab:purple"))
    for name, marker, color in marks:
        s = by_name(summaries, name)
        if s is not None and s.truth is not None:
            ax.plot(*point(s), marker, markersize=10, color=color, label=f"{name}: {s.truth.score:+.2f}")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_ylim(-1.0, 1.0)
    return _save(fig, ax, path, "truthfulness (right − wrong) / N", title or "Truthfulness vs cost")


def _save(fig: Any, ax: Any, path: Path, ylabel: str, title: str) -> Path:
    """Both plots' cost axis, grid, legend and file."""
    import matplotlib.pyplot as plt

    ax.set_xlabel("mean cost per answer (US$ per 1,000 answers, from the ledger)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8, framealpha=0.85)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
