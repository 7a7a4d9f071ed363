"""Which prices of a wrong answer and of an abstention serve users best, at what share of paid-only's cost.

The target is what users value (:mod:`eval.verdicts`): the truthfulness score, answerable questions right,
unanswerable ones refused, within a share of paid-only's cost. A wrong answer is priced above an
abstention: "I don't know" is worth more to a user than a confident wrong answer. The grid of price
settings, the choice among them on a run's probabilities, and the calibrated report that shows the run at
the chosen prices live here; :mod:`eval.calibrate` fits the models whose out-of-fold probabilities this
prices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from eval.configs import PRICE_GRID, Config, price_name, threshold_name
from eval.records import QuestionRecord
from eval.summaries import ConfigSummary, summarize

THRESHOLD_GRID: tuple[float, ...] = tuple(round(i * 0.02, 2) for i in range(51))
# Price of an abstention as a share of a wrong answer's: always less than 1.
ABSTAIN_RATIOS: tuple[float, ...] = (0.1, 0.2, 0.35, 0.5, 0.75)
COST_CAP = 0.25  # the target: at most this share of paid-only's cost
TARGET_TRUTHFULNESS = 0.5  # (right − wrong) / N
TARGET_ANSWERABLE_RIGHT = 0.75  # share of answerable questions answered right
TARGET_REFUSED = 0.8  # share of unanswerable questions answered "not in the documents"
ABSTENTION_SLACK = 0.10  # short of the target, answerable accuracy stays within this of local-only's


def price_configs(
    prices: Sequence[float] = PRICE_GRID, ratios: Sequence[float] = ABSTAIN_RATIOS
) -> list[Config]:
    return [
        Config(f"{price_name(w)} a={r:g}", "cascade", sweep=True, wrong_answer_usd=w, abstain_ratio=r)
        for r in ratios
        for w in prices
    ]


def meets_target(summary: ConfigSummary) -> bool:
    """Truthfulness, answerable accuracy and refusals all at the target."""
    t = summary.truth
    return (
        t is not None
        and t.score >= TARGET_TRUTHFULNESS - 1e-9
        and (t.answerable_accuracy or 0.0) >= TARGET_ANSWERABLE_RIGHT - 1e-9
        and (t.refused_share if t.refused_share is not None else 1.0) >= TARGET_REFUSED - 1e-9
    )


def choose_price(
    records: Sequence[QuestionRecord], cost_cap: float = COST_CAP
) -> tuple[ConfigSummary, ConfigSummary | None, ConfigSummary]:
    """(paid summary, best price setting meeting the target, best price setting).

    Both are the highest truthfulness within ``cost_cap`` of paid-only's cost (ties: cheaper). Natural
    questions (from a natural-question set) are what users ask, so the prices are chosen on them when the
    records hold any. Short of the target, a score is not bought by abstaining: answerable accuracy stays
    within ``ABSTENTION_SLACK`` of local-only's, even where that costs more than ``cost_cap``.
    """
    natural = [r for r in records if r.kind is not None]
    records = natural or list(records)
    summaries = summarize(records, [Config("paid", "paid"), Config("local", "local"), *price_configs()])
    paid, local, cascades = summaries[0], summaries[1], summaries[2:]

    def truth(s: ConfigSummary) -> tuple[float, float]:
        return (round(s.truth.score, 3) if s.truth else -1.0, -s.mean_cost_micro_usd)

    def affordable(s: ConfigSummary) -> bool:
        return s.mean_cost_micro_usd <= cost_cap * paid.mean_cost_micro_usd

    chosen = max((s for s in cascades if affordable(s) and meets_target(s)), key=truth, default=None)
    floor = ((local.truth.answerable_accuracy if local.truth else None) or 0.0) - ABSTENTION_SLACK
    fair = [s for s in cascades if s.truth and (s.truth.answerable_accuracy or 0.0) >= floor - 1e-9]
    # The abstention floor before the cost cap: a cheaper score bought by abstaining is no choice.
    candidates = [s for s in fair if affordable(s)] or fair or cascades
    return paid, chosen, max(candidates, key=truth)


def _write_calibrated_report(run_dir: Path, records: Sequence[QuestionRecord], pick: ConfigSummary) -> Path:
    """``calibrated.md`` and ``calibrated-frontier.png``: the run re-derived with out-of-fold probabilities,
    one frontier point per price of a wrong answer (at the chosen abstention ratio)."""
    import json

    from eval.frontier_plot import plot_frontier
    from eval.report import render_markdown

    ratio = pick.config.abstain_ratio
    configs = [
        Config("local", "local"),
        Config("paid", "paid"),
        replace(pick.config, name="cascade", sweep=False),
        *price_configs(ratios=(ratio or 0.5,)),
        *(Config(threshold_name(t), "cascade", t, sweep=True) for t in THRESHOLD_GRID[::5]),
    ]
    summaries = summarize(records, configs)
    meta_path = run_dir / "run.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    meta["default_rule"] = (
        f"least expected loss at the calibrated prices: wrong answer ${pick.config.wrong_answer_usd:g}, "
        f"abstention {ratio:g} of it"
    )
    png = plot_frontier(
        summaries,
        run_dir / "calibrated-frontier.png",
        title=f"{meta.get('dataset', '')}: calibrated evaluator, out-of-fold ({len(records)} questions)",
    )
    path = run_dir / "calibrated.md"
    text = render_markdown(records, summaries, meta, png.name)
    note = (
        "\n\n> Calibrated re-derivation: every question's three probabilities come from models fitted on "
        "the other folds of this run (5-fold, out-of-fold), so these rows estimate what the written "
        "calibration does on new questions of the same kind.\n"
    )
    path.write_text(text.replace("\n## Results\n", note + "\n## Results\n", 1), encoding="utf-8")
    return path
