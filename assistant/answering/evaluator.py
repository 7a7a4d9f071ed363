"""Is the local answer good enough to serve? Features of (question, sources, local answer) -> P(correct).

A prompt-only router (RouteLLM) sees just the question; this evaluator also sees what the local model did
with the retrieved context, in the spirit of FrugalGPT's answer scorer and AutoMix's check against the
context: how sure the model was (token logprobs), how good retrieval was (top score, margin), whether the
answer's words and meaning are found in the passages it cites, whether it abstained, its length and
citations. A logistic model turns those into P(correct). Its coefficients live in a JSON calibration file
(a hand-set prior ships; ``python -m eval calibrate`` refits it with :func:`fit`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from assistant.answering.prompts import cited_numbers, is_abstention

if TYPE_CHECKING:
    from assistant.local.backend import Generation
    from index.embedding import Embedder
    from index.retrieval import Passage

FEATURES: tuple[str, ...] = (
    "mean_logprob",  # mean log-probability of the generated tokens (<= 0)
    "min_logprob",  # the least likely generated token
    "retrieval_top",  # best passage relevance (dense cosine)
    "retrieval_margin",  # best minus second-best relevance
    "lexical_support",  # share of the answer's new content words found in the cited passages
    "embedding_support",  # cosine of the answer with the closest cited passage
    "abstained",  # 1 if the answer is the abstention phrase
    "answer_tokens",  # completion tokens
    "n_citations",  # distinct in-range [n] citations
    "question_support",  # best share of the question's content words found in one passage
)

Action = Literal["local", "escalate", "abstain"]


class CalibrationError(ValueError):
    """A calibration file that cannot be used; the message names the file and the fix."""


# ------------------------------------------------------------------------------------------ features


def relevance(passage: Passage) -> float:
    """A passage's relevance on the cosine scale, whatever the retrieval mode.

    Hybrid retrieval's ``score`` is a reciprocal-rank-fusion value (~0.03) that says nothing about absolute
    relevance, so prefer the dense cosine it keeps in metadata. A hybrid hit that only BM25 found has no
    cosine among the dense candidates: it counts as 0.
    """
    meta = passage.metadata
    if "dense_score" in meta:
        return float(meta["dense_score"])
    if "bm25_score" in meta:
        return 0.0
    return float(passage.score)


def retrieval_top_and_margin(passages: Sequence[Passage]) -> tuple[float, float]:
    scores = sorted((relevance(p) for p in passages), reverse=True)
    if not scores:
        return 0.0, 0.0
    return scores[0], scores[0] - (scores[1] if len(scores) > 1 else 0.0)


_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CITATION = re.compile(r"\[\d{1,2}\]")


def content_words(text: str) -> set[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return {w for w in _WORD.findall(text.lower()) if w not in ENGLISH_STOP_WORDS}


def lexical_support(question: str, answer: str, passages: Sequence[Passage]) -> float:
    """Share of the answer's content words, beyond those of the question, that occur in ``passages``.

    Words copied from the question are left out: repeating the question proves nothing. An answer with no
    new content word gets 0.
    """
    answer_words = content_words(_CITATION.sub(" ", answer)) - content_words(question)
    if not answer_words or not passages:
        return 0.0
    passage_words: set[str] = set()
    for passage in passages:
        passage_words |= content_words(passage.text)
    return len(answer_words & passage_words) / len(answer_words)


def embedding_support(answer: str, passages: Sequence[Passage], embedder: Embedder) -> float:
    text = _CITATION.sub(" ", answer).strip()
    if not text or not passages:
        return 0.0
    answer_vector, *passage_vectors = embedder.embed([text, *(p.text for p in passages)])
    return max(sum(a * b for a, b in zip(answer_vector, v, strict=True)) for v in passage_vectors)


def ensure_citation(question: str, answer: str, passages: Sequence[Passage]) -> str:
    """Attribute an uncited answer to the passage holding most of its new content words, as ``[n]``.

    Small models often answer correctly without citing; readers still need to know where an answer came
    from. An abstention, an answer that already cites, or one no passage supports is returned unchanged.
    """
    if not passages or is_abstention(answer) or cited_numbers(answer, len(passages)):
        return answer
    words = content_words(_CITATION.sub(" ", answer)) - content_words(question)
    overlaps = [len(words & content_words(p.text)) for p in passages]
    best = max(range(len(passages)), key=lambda i: (overlaps[i], -i))
    if overlaps[best] == 0:
        return answer
    return f"{answer.rstrip()} [{best + 1}]"


def question_support(question: str, passages: Sequence[Passage]) -> float:
    """Best share of the question's content words that one passage contains.

    Unanswerable questions are often a near-copy of a passage sentence with one entity or number swapped
    (SQuAD 2.0's adversarial questions): the swapped word is then missing from every passage.
    """
    words = content_words(question)
    if not words or not passages:
        return 0.0
    return max(len(words & content_words(p.text)) for p in passages) / len(words)


def supporting_passages(answer: str, passages: Sequence[Passage]) -> tuple[list[Passage], int]:
    """The passages the answer cites, or all of them when it cites none; and the citation count."""
    cited = cited_numbers(answer, len(passages))
    return ([passages[n - 1] for n in cited] if cited else list(passages)), len(cited)


def extract_features(
    question: str, passages: Sequence[Passage], generation: Generation, embedder: Embedder
) -> dict[str, float]:
    support, n_citations = supporting_passages(generation.text, passages)
    top, margin = retrieval_top_and_margin(passages)
    abstained = is_abstention(generation.text)
    return {
        "mean_logprob": generation.mean_logprob,
        "min_logprob": generation.min_logprob,
        "retrieval_top": top,
        "retrieval_margin": margin,
        "lexical_support": 0.0 if abstained else lexical_support(question, generation.text, support),
        "embedding_support": 0.0 if abstained else embedding_support(generation.text, support, embedder),
        "abstained": 1.0 if abstained else 0.0,
        "answer_tokens": float(generation.completion_tokens),
        "n_citations": float(n_citations),
        "question_support": question_support(question, passages),
    }


# --------------------------------------------------------------------------------------- calibration


def default_calibration_path() -> Path:
    return Path(str(resources.files("assistant") / "data" / "calibration.json"))


@dataclass
class Calibration:
    """Logistic model on standardised features: P = sigmoid(intercept + Σ coef·(x − mean)/scale).

    The top-level model gives P(local answer correct). An optional second model, ``answerable``, gives
    P(the sources answer the question at all); below ``abstain_below`` the cascade abstains instead of
    answering or paying. Small models rarely abstain on their own, and escalating an unanswerable question
    only buys a second wrong answer.
    """

    features: list[str]
    coef: list[float]
    intercept: float
    means: list[float]
    scales: list[float]
    meta: dict[str, Any] = field(default_factory=dict)
    answerable: Calibration | None = None
    abstain_below: float = 0.0

    def __post_init__(self) -> None:
        unknown = [name for name in self.features if name not in FEATURES]
        if unknown:
            raise CalibrationError(f"unknown features {unknown}; known: {', '.join(FEATURES)}")
        n = len(self.features)
        if not n or not (len(self.coef) == len(self.means) == len(self.scales) == n):
            raise CalibrationError("features, coef, means and scales must be non-empty and the same length")
        if any(not scale > 0 for scale in self.scales):
            raise CalibrationError("every scale must be > 0")
        if not 0.0 <= self.abstain_below <= 1.0:
            raise CalibrationError(f"abstain_below must be in [0, 1], got {self.abstain_below}")

    def logit(self, features: Mapping[str, float]) -> float:
        total = self.intercept
        for name, coef, mean, scale in zip(self.features, self.coef, self.means, self.scales, strict=True):
            total += coef * (float(features[name]) - mean) / scale
        return total

    def probability(self, features: Mapping[str, float]) -> float:
        z = self.logit(features)
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def p_answerable(self, features: Mapping[str, float]) -> float | None:
        """P(the question is answerable from the sources), or None without an answerable model."""
        return None if self.answerable is None else self.answerable.probability(features)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        answerable = data.get("answerable")
        return cls(
            features=list(data["features"]),
            coef=[float(c) for c in data["coef"]],
            intercept=float(data["intercept"]),
            means=[float(m) for m in data["means"]],
            scales=[float(s) for s in data["scales"]],
            meta=dict(data.get("meta") or {}),
            answerable=cls.from_dict(answerable) if answerable else None,
            abstain_below=float(data.get("abstain_below", 0.0)),
        )

    @classmethod
    def load(cls, path: Path | None = None) -> Calibration:
        path = path or default_calibration_path()
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError as exc:
            raise CalibrationError(
                f"calibration file {path} not found; fix cascade.calibration_file or run "
                "`python -m eval calibrate`"
            ) from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise CalibrationError(
                f"calibration file {path} is invalid ({exc}); regenerate it with `python -m eval calibrate`"
            ) from exc

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)  # atomic: a reader never sees half a file


def fit(
    features: Sequence[Mapping[str, float]],
    labels: Sequence[bool | int],
    *,
    names: Sequence[str] = FEATURES,
    regularization_c: float = 1.0,
    meta: dict[str, Any] | None = None,
) -> Calibration:
    """Fit P(correct) by L2-regularised logistic regression on standardised features.

    ``features`` are dicts from :func:`extract_features`; ``labels`` say whether each local answer was
    correct. Needs both outcomes among the labels.
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    if len(features) != len(labels):
        raise ValueError(f"{len(features)} feature rows but {len(labels)} labels")
    y = np.asarray([int(bool(label)) for label in labels])
    if len(set(y.tolist())) < 2:
        raise ValueError("need both correct and incorrect answers to fit a calibration")
    x = np.asarray([[float(row[name]) for name in names] for row in features], dtype=float)
    means = x.mean(axis=0)
    scales = x.std(axis=0)
    scales[scales < 1e-9] = 1.0  # a constant feature: leave it unscaled (its coefficient goes to ~0)
    model = LogisticRegression(C=regularization_c, max_iter=1000)
    model.fit((x - means) / scales, y)
    return Calibration(
        features=list(names),
        coef=[float(c) for c in model.coef_[0]],
        intercept=float(model.intercept_[0]),
        means=[float(m) for m in means],
        scales=[float(s) for s in scales],
        meta={"n": len(y), "positive_rate": float(y.mean()), "C": regularization_c, **(meta or {})},
    )


# ------------------------------------------------------------------------------------------ decision


@dataclass
class Decision:
    action: Action
    reason: str  # starts with a stable code: confident, low_confidence, unanswerable, local_abstained, ...
    confidence: float | None = None
    features: dict[str, float] = field(default_factory=dict)
    answerable: float | None = None  # P(answerable) when the calibration has that model


class Evaluator:
    """Routes a question before generation (is there anything to answer from?) and judges the local answer."""

    def __init__(
        self,
        calibration: Calibration,
        embedder: Embedder | None = None,
        *,
        threshold: float = 0.5,
        retrieval_floor: float = 0.25,
        on_empty_retrieval: Literal["abstain", "escalate"] = "abstain",
        on_local_abstain: Literal["abstain", "escalate"] = "escalate",
    ) -> None:
        self.calibration = calibration
        self._embedder = embedder
        self.threshold = threshold
        self.retrieval_floor = retrieval_floor
        self.on_empty_retrieval = on_empty_retrieval
        self.on_local_abstain = on_local_abstain

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from index.embedding import get_embedder

            self._embedder = get_embedder()
        return self._embedder

    def route_before_generation(self, passages: Sequence[Passage]) -> Decision | None:
        """A decision when retrieval found nothing relevant (the local model is then not run), else None."""
        top, margin = retrieval_top_and_margin(passages)
        if passages and top >= self.retrieval_floor:
            return None
        detail = "no passages" if not passages else f"top={top:.2f}<{self.retrieval_floor:.2f}"
        return Decision(
            action=self.on_empty_retrieval,
            reason=f"retrieval_empty {detail}",
            features={"retrieval_top": top, "retrieval_margin": margin},
        )

    def features(
        self, question: str, passages: Sequence[Passage], generation: Generation
    ) -> dict[str, float]:
        return extract_features(question, passages, generation, self.embedder)

    def assess(
        self,
        question: str,
        passages: Sequence[Passage],
        generation: Generation,
        threshold: float | None = None,
    ) -> Decision:
        threshold = self.threshold if threshold is None else threshold
        features = self.features(question, passages, generation)
        p = self.calibration.probability(features)
        answerable = self.calibration.p_answerable(features)
        floor = self.calibration.abstain_below
        if answerable is not None and answerable < floor:
            return Decision(
                "abstain", f"unanswerable p={answerable:.2f}<{floor:.2f}", p, features, answerable
            )
        if features["abstained"]:
            return Decision(self.on_local_abstain, "local_abstained", p, features, answerable)
        if p < threshold:
            return Decision("escalate", f"low_confidence p={p:.2f}<{threshold:.2f}", p, features, answerable)
        return Decision("local", f"confident p={p:.2f}>={threshold:.2f}", p, features, answerable)
