"""Which price of a wrong answer (and of an abstention) holds quality at least cost.

The target (F1 near paid-only's, HasAns F1 near it too, within a share of paid-only's cost), the grid of
price settings, the choice among them on a run's probabilities, and the calibrated report that shows the
run at the chosen prices. :mod:`eval.calibrate` fits the models whose out-of-fold probabilities this
prices; the target lives here so it can be read and changed without the fitting.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from eval.configs import PRICE_GRID, Config, price_name, threshold_name
from eval.records import QuestionRecord
from eval.summaries import QUALITY_TOLERANCE_F1, ConfigSummary, summarize

THRESHOLD_GRID: tuple[float, ...] = tuple(round(i * 0.02, 2) for i in range(51))
ABSTAIN_RATIOS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)  # price of an abstention / of a wrong answer
HAS_ANS_TOLERANCE_F1 = 3.0  # the target: HasAns F1 no more than this below paid-only's
COST_CAP = 0.30  # the target: at most this share of paid-only's cost


def price_configs(
    prices: Sequence[float] = PRICE_GRID, ratios: Sequence[float] = ABSTAIN_RATIOS
) -> list[Config]:
    return [
        Config(f"{price_name(w)} a={r:g}", "cascade", sweep=True, wrong_answer_usd=w, abstain_ratio=r)
        for r in ratios
        for w in prices
    ]


def meets_target(summary: ConfigSummary, paid: ConfigSummary, tolerance_f1: float) -> bool:
    """The issue's bar: F1 within ``tolerance_f1`` of paid-only, HasAns F1 within 3 points of it."""
    q, ref = summary.quality, paid.quality
    if q.f1 < ref.f1 - tolerance_f1 - 1e-9:
        return False
    if q.has_ans_f1 is None or ref.has_ans_f1 is None:
        return True
    return q.has_ans_f1 >= ref.has_ans_f1 - HAS_ANS_TOLERANCE_F1 - 1e-9


def choose_price(
    records: Sequence[QuestionRecord],
    tolerance_f1: float = QUALITY_TOLERANCE_F1,
    cost_cap: float = COST_CAP,
) -> tuple[ConfigSummary, ConfigSummary | None, ConfigSummary]:
    """(paid summary, cheapest price setting meeting the target, best-F1 price setting).

    A price setting is (W, abstention price as a share of W); the decision at each is the service's
    expected-loss rule on the records' probabilities.
    """
    summaries = summarize(records, [Config("paid", "paid"), Config("local", "local"), *price_configs()])
    paid, local, cascades = summaries[0], summaries[1], summaries[2:]
    affordable = [s for s in cascades if s.mean_cost_micro_usd <= cost_cap * paid.mean_cost_micro_usd]
    meeting = [s for s in affordable if meets_target(s, paid, tolerance_f1)]
    chosen = min(meeting, key=lambda s: (s.mean_cost_micro_usd, -s.quality.f1), default=None)
    # Short of the target, buy F1 neither with abstentions (HasAns F1 at least local-only's) nor by
    # escalating everything (within the cost cap).
    floor = local.quality.has_ans_f1 or 0.0
    fair = [s for s in affordable if (s.quality.has_ans_f1 or 0.0) >= floor - 1e-9] or affordable or cascades
    best = max(fair, key=lambda s: (round(s.quality.f1, 1), -s.mean_cost_micro_usd))
    return paid, chosen, best


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
