"""The spend dashboard's chart, drawn on the server as SVG with matplotlib (already a dependency for eval's
plots), so the page needs no chart library and no CDN and shows the same figure to every browser."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

TIER_COLOURS = {"local": "#2f7d4f", "paid": "#c0562f"}


def stacked_cost_svg(days: Sequence[str], cost_by_tier: Mapping[str, Sequence[int]]) -> str:
    """Cost per day stacked by tier, in USD; ``cost_by_tier`` holds one micro-USD value per day and tier.
    Text stays text in the SVG (searchable, scalable, readable by a screen reader)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 2.8), dpi=100)
    axes = figure.add_subplot()
    bottom = [0.0] * len(days)
    labels = [day[5:] for day in days]  # MM-DD: the year is in the page's heading
    positions = range(len(days))
    for tier, values in cost_by_tier.items():
        usd = [v / 1_000_000 for v in values]
        colour = TIER_COLOURS.get(tier, "#777777")
        axes.bar(positions, usd, bottom=bottom, label=tier, color=colour, width=0.7)
        bottom = [b + u for b, u in zip(bottom, usd, strict=True)]
    axes.set_ylabel("USD per day")
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(frameon=False, loc="upper left")
    step = max(1, len(labels) // 10)
    axes.set_xticks(range(0, len(labels), step), labels[::step])
    figure.tight_layout()
    out = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "penny"}):
        figure.savefig(out, format="svg")
    svg = out.getvalue()
    return svg[svg.index("<svg") :]  # the XML prolog and DOCTYPE cannot sit inside HTML
