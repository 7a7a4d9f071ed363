"""Metrics: official SQuAD 2.0 EM/F1 (HasAns/NoAns), retrieval recall@k, latency, shares (the
evaluator's AUROC is :func:`assistant.calibration.fitting.auroc`).

EM/F1 follow the official SQuAD 2.0 evaluation script (``evaluate-v2.0.py``) exactly: lowercase, strip
punctuation, drop the articles a/an/the, collapse whitespace; max over gold answers; an unanswerable
question has the single gold answer "" so only an empty prediction scores. Penny's answers are turned into
SQuAD predictions first: citation markers like ``[1]`` are stripped, and an abstention ("I don't know
based on the documents.") becomes the empty prediction.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from assistant.answering.prompt.grounded import is_abstention

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)
# [1], [1, 2], [1][3], [12] — the markers Penny's grounded prompt asks for.
_CITATIONS = re.compile(r"\s*\[\d{1,2}(?:\s*,\s*\d{1,2})*\]")


def normalize_answer(text: str) -> str:
    """Official SQuAD normalisation: lower, remove punctuation, articles and extra whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact_match(gold: str, prediction: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(prediction))


def token_f1(gold: str, prediction: str) -> float:
    gold_tokens, pred_tokens = _tokens(gold), _tokens(prediction)
    if not gold_tokens or not pred_tokens:
        # Official rule: if either is empty, F1 is 1 when both are empty, else 0.
        return float(gold_tokens == pred_tokens)
    common = collections.Counter(gold_tokens) & collections.Counter(pred_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def to_prediction(answer: str) -> str:
    """Penny's answer as a SQuAD prediction: abstention → "", citation markers removed."""
    if not answer.strip() or is_abstention(answer):
        return ""
    return _CITATIONS.sub("", answer).strip()


def score(prediction: str, gold_answers: Sequence[str]) -> tuple[float, float]:
    """(EM, F1) of a SQuAD prediction against the gold answers, max over answers (official)."""
    golds = [a for a in gold_answers if normalize_answer(a)] or [""]
    return max(exact_match(g, prediction) for g in golds), max(token_f1(g, prediction) for g in golds)


@dataclass(frozen=True)
class QualitySummary:
    """Percentages (0-100) like the official script; HasAns/NoAns are None when that split is empty."""

    exact: float
    f1: float
    has_ans_exact: float | None
    has_ans_f1: float | None
    no_ans_exact: float | None
    no_ans_f1: float | None
    total: int
    has_ans_total: int
    no_ans_total: int


def summarize_quality(rows: Iterable[tuple[bool, float, float]]) -> QualitySummary:
    """Aggregate (has_answer, em, f1) per question into the official overall and HasAns/NoAns numbers."""
    rows = list(rows)
    if not rows:
        raise ValueError("no scored questions to summarise")

    def mean(values: list[float]) -> float | None:
        return 100.0 * sum(values) / len(values) if values else None

    has = [r for r in rows if r[0]]
    no = [r for r in rows if not r[0]]
    return QualitySummary(
        exact=mean([r[1] for r in rows]) or 0.0,
        f1=mean([r[2] for r in rows]) or 0.0,
        has_ans_exact=mean([r[1] for r in has]),
        has_ans_f1=mean([r[2] for r in has]),
        no_ans_exact=mean([r[1] for r in no]),
        no_ans_f1=mean([r[2] for r in no]),
        total=len(rows),
        has_ans_total=len(has),
        no_ans_total=len(no),
    )


def recall_at_k(retrieved_ids: Sequence[str], gold_id: str, k: int) -> float:
    """1.0 if the gold passage is among the first k retrieved (BEIR-style recall with one relevant doc)."""
    return float(gold_id in retrieved_ids[:k])


def mean_recall_at_k(pairs: Iterable[tuple[Sequence[str], str | None]], k: int) -> float | None:
    """Mean recall@k over questions that have a gold passage; None when none has one."""
    values = [recall_at_k(ids, gold, k) for ids, gold in pairs if gold]
    return sum(values) / len(values) if values else None


def latency_percentiles(latencies_ms: Sequence[float]) -> tuple[float, float]:
    """(p50, p95) in ms, linear interpolation (numpy's default)."""
    if not latencies_ms:
        return 0.0, 0.0
    p50, p95 = np.percentile(np.asarray(latencies_ms, dtype=float), [50, 95])
    return float(p50), float(p95)


def shares(tiers: Sequence[str]) -> dict[str, float]:
    """Fraction of answers served by each tier (local / paid / cache / none)."""
    counts = collections.Counter(tiers)
    return {
        tier: counts.get(tier, 0) / len(tiers) if tiers else 0.0
        for tier in ("local", "paid", "cache", "none")
    }
