"""What an answer is, whichever tier produced it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from assistant.answering.judge.evaluator import Judgement
from assistant.answering.judge.features import evidence_sentence
from assistant.local.backend import Generation
from assistant.paid import PaidResult
from index.retrieval import Passage


@dataclass
class Source:
    id: str
    source: str
    text: str
    score: float
    title: str = ""

    @classmethod
    def from_passage(cls, passage: Passage) -> Source:
        return cls(
            id=passage.id,
            source=passage.source,
            text=passage.text,
            score=round(passage.score, 4),
            title=passage.title,
        )


@dataclass(frozen=True)
class Evidence:
    """The sentence of source ``source`` (1-based, as the answer's ``[n]``) that the answer rests on."""

    source: int
    text: str


@dataclass
class Answer:
    answer: str
    sources: list[Source]
    tier: str  # "local" | "paid" | "cache" | "none"
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extras: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency_ms"] = round(self.latency_ms, 1)
        return data


@dataclass
class CascadeAnswer(Answer):
    """An answer plus how the cascade got it: which tier, why, how sure, what it cost.

    ``prompt_tokens``/``completion_tokens`` are those of the tier that produced the answer. ``degraded``
    means an escalation was wanted but failed (or the budget refused it), so a weaker answer is served.
    """

    request_id: str = ""
    escalated: bool = False
    reason: str = ""
    confidence: float | None = None
    answerable: float | None = None  # P(the sources answer the question), when the calibration has a gate
    paid_helps: float | None = None  # P(the paid answer is right | the local one is wrong), when modelled
    paid_helps_source: str = ""  # whence paid_helps: a calibration fitted for the paid model, or its prior
    action: str = ""  # what the cascade decided: local | escalate | abstain ("" when nothing was decided)
    expected_cost_usd: float = 0.0  # what the decided action was expected to spend (the paid call)
    expected_loss_usd: dict[str, float] = field(default_factory=dict)  # per action, by the expected-loss rule
    low_confidence: bool = False  # served locally, but below the policy's confidence bar
    features: dict[str, float] = field(default_factory=dict)
    cost_micro_usd: int = 0  # paid + local generation: what the tiers cost
    local_cost_micro_usd: int = 0
    paid_cost_micro_usd: int = 0
    # The rest of the answer's full cost (set with the ledger's prices when it is recorded): retrieval and
    # the evaluator at the instance price, and its share of its collection's ingest (ledger/costs.py).
    retrieval_cost_micro_usd: int = 0
    evaluation_cost_micro_usd: int = 0
    ingest_amortised_micro_usd: int = 0
    degraded: bool = False
    local_model: str | None = None
    paid_model: str | None = None
    local_generation: Generation | None = None  # when the local model ran
    paid_generation: PaidResult | None = None  # when the paid call succeeded
    judgement: Judgement | None = None  # the evaluator's, when the local answer was judged

    @property
    def evidence(self) -> Evidence | None:
        """The source sentence behind a served answer, for the reader to check; derived, never stored."""
        if self.tier not in ("local", "paid", "cache"):
            return None
        found = evidence_sentence(self.answer, [s.text for s in self.sources])
        return None if found is None else Evidence(*found)

    def to_dict(self) -> dict[str, Any]:
        data = {
            name: value
            for name, value in self.__dict__.items()
            if name not in ("sources", "local_generation", "paid_generation", "judgement")
        }
        data["sources"] = [asdict(source) for source in self.sources]
        evidence = self.evidence
        data["evidence"] = None if evidence is None else asdict(evidence)
        data["latency_ms"] = round(self.latency_ms, 1)
        data["confidence"] = None if self.confidence is None else round(self.confidence, 4)
        data["answerable"] = None if self.answerable is None else round(self.answerable, 4)
        data["paid_helps"] = None if self.paid_helps is None else round(self.paid_helps, 4)
        data["features"] = {name: round(value, 4) for name, value in self.features.items()}
        data["local_generation"] = _local_summary(self.local_generation)
        data["paid_generation"] = _paid_summary(self.paid_generation)
        return data

    def full_cost_usd(self) -> dict[str, float]:
        """The answer's full cost by part: the tiers (paid, local generation), Penny's own compute on the
        answer path (retrieval, evaluation) and its share of the collection's ingest; and their total."""
        parts = {
            "paid": self.paid_cost_micro_usd,
            "local_generation": self.local_cost_micro_usd,
            "retrieval": self.retrieval_cost_micro_usd,
            "evaluation": self.evaluation_cost_micro_usd,
            "ingest_amortised": self.ingest_amortised_micro_usd,
        }
        return {**{k: _usd(v) for k, v in parts.items()}, "total": _usd(sum(parts.values()))}

    def penny_block(self) -> dict[str, Any]:
        """The ``penny`` block of API responses: what makes Penny different (tier, why, how sure, cost)."""
        return {
            "request_id": self.request_id,  # what POST /v1/feedback rates
            "tier": self.tier,
            "escalated": self.escalated,
            "reason": self.reason,
            "degraded": self.degraded,
            "confidence": self.confidence,
            "answerable": self.answerable,
            "paid_helps": self.paid_helps,
            "paid_helps_source": self.paid_helps_source or None,
            "action": self.action or None,
            "expected_cost_usd": round(self.expected_cost_usd, 6),
            "low_confidence": self.low_confidence,
            "cost_usd": _usd(self.cost_micro_usd),
            "full_cost_usd": self.full_cost_usd(),
            "latency_ms": round(self.latency_ms, 1),
            "evidence": None if (evidence := self.evidence) is None else asdict(evidence),
            "sources": [
                {"id": s.id, "source": s.source, "title": s.title, "text": s.text, "score": s.score}
                for s in self.sources
            ],
        }


def _usd(micro_usd: int) -> float:
    return round(micro_usd / 1_000_000, 6)


def _local_summary(generation: Generation | None) -> dict[str, Any] | None:
    """Tokens and timing of a local generation, without its per-token logprobs."""
    if generation is None:
        return None
    return {
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        "finish_reason": generation.finish_reason,
        "seconds": round(generation.seconds, 3),
    }


def _paid_summary(result: PaidResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "finish_reason": result.finish_reason,
        "model": result.model,
        "attempts": result.attempts,
        **asdict(result.usage),
        "seconds": round(result.seconds, 3),
    }
