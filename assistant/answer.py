"""What an answer is, whichever tier produced it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

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
