"""Retrieval: the one API the cascade, the CLI and eval use to find passages for a question."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from index.embedding import Embedder

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection


@dataclass(frozen=True)
class Passage:
    id: str
    source: str
    text: str
    score: float  # cosine similarity in [-1, 1] for dense retrieval
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return str(self.metadata.get("title") or self.source)


class Retriever:
    def __init__(self, collection: Collection, embedder: Embedder, top_k: int = 4) -> None:
        self.collection = collection
        self.embedder = embedder
        self.top_k = top_k

    def search(self, query: str, k: int | None = None, where: dict[str, Any] | None = None) -> list[Passage]:
        k = k or self.top_k
        if self.collection.count() == 0:
            return []
        [vector] = self.embedder.embed([query])
        result = self.collection.query(
            query_embeddings=[vector],
            n_results=k,
            where=where,
            include=["documents", "metadatas", "distances"],
        )
        passages = []
        for pid, text, meta, distance in zip(
            result["ids"][0],
            (result["documents"] or [[]])[0],
            (result["metadatas"] or [[]])[0],
            (result["distances"] or [[]])[0],
            strict=True,
        ):
            meta = dict(meta or {})
            passages.append(
                Passage(
                    id=pid,
                    source=str(meta.get("source", "")),
                    text=text or "",
                    score=1.0 - distance,
                    metadata=meta,
                )
            )
        return passages
