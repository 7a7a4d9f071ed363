"""What a run says per config (:class:`ConfigSummary`), and the bar a cascade config must clear: paid-only
quality (:func:`holds_quality`) at the least cost (:func:`cheapest_at_quality`).

The numbers the report prints, the frontier plots and calibration chooses prices on, computed once here so
they all read a run the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from assistant.calibration import auroc
from eval.configs import Config, derive
from eval.metrics import QualitySummary, latency_percentiles, shares, summarize_quality
from eval.records import QuestionRecord
from eval.verdicts import Truthfulness, truthfulness

QUALITY_TOLERANCE_F1 = 1.0  # "equal quality": within this many F1 points of paid-only
COST_TARGET_RATIO = 0.40  # the target: cascade cost ≤ 40 % of paid-only


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
    truth: Truthfulness | None = None  # right / missed / wrong over every question (eval.verdicts)
    truth_by_kind: dict[str, Truthfulness] = field(default_factory=dict)  # natural sets' question kinds
    truth_by_tier: dict[str, Truthfulness] = field(default_factory=dict)  # by who served (none: abstained)

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
                escalations_paid_wrong=sum(r["escalated"] and r["verdict"] != "right" for r in rows),
                truth=truthfulness((r["has_answer"], r["verdict"]) for r in rows),
                truth_by_kind=_grouped(rows, "kind"),
                truth_by_tier=_grouped(rows, "tier"),
            )
        )
    return summaries


def _grouped(rows: Sequence[dict], key: str) -> dict[str, Truthfulness]:
    groups = sorted({r[key] for r in rows if r[key] is not None})
    return {g: truthfulness((r["has_answer"], r["verdict"]) for r in rows if r[key] == g) for g in groups}


def local_correct_labels(records: Sequence[QuestionRecord]) -> tuple[list[bool], list[float]]:
    """("local answer correct", evaluator P(correct)) per question that has both."""
    local = Config("local", "local")
    labels, scores = [], []
    for record in records:
        if record.local is None or record.judgement is None:
            continue
        row = derive(record, local)
        labels.append(row["verdict"] == "right")
        scores.append(record.judgement.p_correct)
    return labels, scores


def paid_correct_labels(records: Sequence[QuestionRecord]) -> list[bool | None]:
    """ "The paid answer was right", per question (None without a paid answer), scored as the ``paid``
    config is: the same derive and correctness rule as :func:`local_correct_labels`."""
    paid = Config("paid", "paid")
    return [None if r.paid is None else derive(r, paid)["verdict"] == "right" for r in records]


@dataclass(frozen=True)
class DecisionAuroc:
    """How well one of the evaluator's three probabilities, as recorded in the run, ranks its own label."""

    decision: str  # what is predicted, in words
    auroc: float | None  # None when the label has one value only
    n: int
    positives: int


def decision_aurocs(records: Sequence[QuestionRecord]) -> list[DecisionAuroc]:
    """AUROC of each decision on the run's questions, from the probabilities the evaluator gave when they
    were answered: held-out numbers for a calibration fitted elsewhere (``eval calibrate`` gives the
    out-of-fold ones of its own fit). Labels as the fit's: local correct (also on answerable questions
    alone), answerable, and the paid answer right where the local one is wrong."""
    judged = [r for r in records if r.local is not None and r.judgement is not None]
    judgements = [r.judgement for r in judged if r.judgement is not None]
    correct, _ = local_correct_labels(judged)
    paid_right = paid_correct_labels(judged)
    rows = list(zip(judged, judgements, correct, paid_right, strict=True))
    pairs: dict[str, list[tuple[bool, float]]] = {
        "local answer correct": [(y, j.p_correct) for _, j, y, _ in rows],
        "local answer correct, answerable questions": [
            (y, j.p_correct) for r, j, y, _ in rows if r.has_answer
        ],
        "answerable": [(r.has_answer, j.p_answerable) for r, j, _, _ in rows if j.p_answerable is not None],
        "paid answer right, where the local one is wrong": [
            (bool(right), j.p_paid_helps)
            for _, j, y, right in rows
            if not y and right is not None and j.p_paid_helps is not None
        ],
    }
    return [
        DecisionAuroc(
            name, auroc([y for y, _ in pair], [p for _, p in pair]), len(pair), sum(y for y, _ in pair)
        )
        for name, pair in pairs.items()
    ]


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


def by_name(summaries: Sequence[ConfigSummary], name: str) -> ConfigSummary | None:
    """The summary of the config called ``name``, None when the run has no such config."""
    return next((s for s in summaries if s.name == name), None)
