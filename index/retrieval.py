"""Retrieval: the one API the cascade, the CLI and eval use to find passages for a question.

Three modes share one call, ``Retriever.search(query, k=None, where=None, mode=None)``:

- ``dense``: cosine similarity from Chroma's HNSW index; ``Passage.score`` is the cosine in [-1, 1].
- ``bm25``: lexical BM25 (bm25s, Snowball-stemmed, English stopwords); ``score`` is the BM25 score.
- ``hybrid`` (default): both lists fused with weighted reciprocal-rank fusion,
  ``score = Σ weight / (rrf_k + rank)``. RRF needs no score calibration between the two systems, which
  is why it is used instead of mixing raw scores. The per-system scores and ranks stay in
  ``metadata`` (``dense_score``, ``bm25_score``, ``dense_rank``, ``bm25_rank``).

The BM25 index lives in memory and is rebuilt lazily whenever the collection's revision stamp (bumped by
every ingest write, see ``index.store``) differs from the one it was built at, so it follows writes made
by other processes through a Chroma server too. ``where`` filters use Chroma's own filter language; for
BM25 Chroma resolves the filter to ids, so both modes filter identically.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from index.embedding import Embedder
from index.store import iter_records, revision

if TYPE_CHECKING:
    import numpy as np
    from bm25s import BM25
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

Mode = Literal["hybrid", "dense", "bm25"]
MODES: tuple[str, ...] = ("hybrid", "dense", "bm25")


@dataclass(frozen=True)
class Passage:
    id: str
    source: str
    text: str
    score: float  # higher = better: cosine (dense), BM25 score (bm25) or fused RRF score (hybrid)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return str(self.metadata.get("title") or self.source)


@dataclass(frozen=True)
class FusionWeights:
    dense: float = 1.0
    bm25: float = 1.0
    rrf_k: int = 60


def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


class Bm25Index:
    """An in-memory BM25 index over every chunk of a collection at one revision."""

    def __init__(self, ids: list[str], texts: list[str], metadatas: list[dict[str, Any]], stamp: str) -> None:
        import bm25s

        self.ids = ids
        self.texts = texts
        self.metadatas = metadatas
        self.stamp = stamp
        self.position = {pid: i for i, pid in enumerate(ids)}
        self._stemmer = _stemmer()
        self.model: BM25 | None = None
        if ids:
            tokens = bm25s.tokenize(texts, stemmer=self._stemmer, show_progress=False)
            self.model = bm25s.BM25()
            self.model.index(tokens, show_progress=False)

    @classmethod
    def build(cls, collection: Collection, stamp: str) -> Bm25Index:
        ids, texts, metadatas = [], [], []
        for pid, text, meta in iter_records(collection, include=("documents", "metadatas")):
            ids.append(pid)
            texts.append(text or "")
            metadatas.append(meta)
        return cls(ids, texts, metadatas, stamp)

    def top(self, query: str, n: int, allowed: set[str] | None = None) -> list[tuple[int, float]]:
        """(position, score) of the best ``n`` chunks with a positive score, optionally among ``allowed``."""
        import bm25s
        import numpy as np

        if self.model is None or n <= 0:
            return []
        [tokens] = bm25s.tokenize([query], stemmer=self._stemmer, return_ids=False, show_progress=False)
        vocabulary = self.model.vocab_dict
        tokens = [t for t in tokens if t in vocabulary]
        if not tokens:
            return []
        scores: np.ndarray = self.model.get_scores(tokens)
        if allowed is not None:
            mask = np.zeros(len(self.ids), dtype=bool)
            mask[[self.position[pid] for pid in allowed if pid in self.position]] = True
            scores = np.where(mask, scores, 0.0)
        n = min(n, len(scores))
        best = np.argpartition(-scores, n - 1)[:n]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(int(i), float(scores[i])) for i in best if scores[i] > 0]


class Retriever:
    def __init__(
        self,
        collection: Collection,
        embedder: Embedder,
        top_k: int = 4,
        *,
        client: ClientAPI | None = None,
        mode: Mode = "hybrid",
        weights: FusionWeights | None = None,
        candidates: int = 50,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; choose one of {', '.join(MODES)}")
        self.collection = collection
        self.embedder = embedder
        self.top_k = top_k
        self.client = client
        self.mode: Mode = mode
        self.weights = weights or FusionWeights()
        self.candidates = candidates
        self._bm25: Bm25Index | None = None
        self._bm25_lock = threading.Lock()
        self._filter_cache: dict[tuple[str, str], set[str]] = {}

    def search(
        self,
        query: str,
        k: int | None = None,
        where: dict[str, Any] | None = None,
        *,
        mode: Mode | None = None,
        weights: FusionWeights | None = None,
    ) -> list[Passage]:
        k = k or self.top_k
        mode = mode or self.mode
        if mode not in MODES:
            raise ValueError(f"unknown retrieval mode {mode!r}; choose one of {', '.join(MODES)}")
        if mode == "dense":
            return self.dense(query, k, where)
        if mode == "bm25":
            return self.bm25(query, k, where)
        depth = max(self.candidates, k)
        dense, lexical = self.dense(query, depth, where), self.bm25(query, depth, where)
        return fuse(dense, lexical, k, weights or self.weights)

    def dense(self, query: str, n: int, where: dict[str, Any] | None = None) -> list[Passage]:
        if self.collection.count() == 0:
            return []
        [vector] = self.embedder.embed([query])
        result = self.collection.query(
            query_embeddings=[vector],
            n_results=n,
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

    def bm25(self, query: str, n: int, where: dict[str, Any] | None = None) -> list[Passage]:
        index = self.bm25_index()
        allowed = self._matching_ids(where, index.stamp) if where else None
        return [
            Passage(
                id=index.ids[i],
                source=str(index.metadatas[i].get("source", "")),
                text=index.texts[i],
                score=score,
                metadata=dict(index.metadatas[i]),
            )
            for i, score in index.top(query, n, allowed)
        ]

    def bm25_index(self) -> Bm25Index:
        """The BM25 index at the collection's current revision, rebuilt if another write happened."""
        stamp = self._stamp()
        with self._bm25_lock:
            if self._bm25 is None or self._bm25.stamp != stamp:
                self._bm25 = Bm25Index.build(self.collection, stamp)
                self._filter_cache = {}
            return self._bm25

    def _stamp(self) -> str:
        if self.client is not None:
            return revision(self.client, self.collection.name)
        return f"count:{self.collection.count()}"  # weaker: misses same-size replacements

    def _matching_ids(self, where: dict[str, Any], stamp: str) -> set[str]:
        key = (stamp, json.dumps(where, sort_keys=True, default=str))
        cached = self._filter_cache.get(key)
        if cached is None:
            cached = set(self.collection.get(where=where, include=[])["ids"])
            if len(self._filter_cache) > 256:
                self._filter_cache.clear()
            self._filter_cache[key] = cached
        return cached


def fuse(
    dense: Sequence[Passage], lexical: Sequence[Passage], k: int, weights: FusionWeights
) -> list[Passage]:
    """Weighted reciprocal-rank fusion of two ranked lists; ties keep dense order first."""
    fused: dict[str, float] = {}
    details: dict[str, dict[str, Any]] = {}
    first_seen: dict[str, Passage] = {}
    for name, ranked, weight in (("dense", dense, weights.dense), ("bm25", lexical, weights.bm25)):
        for rank, passage in enumerate(ranked, start=1):
            first_seen.setdefault(passage.id, passage)
            fused[passage.id] = fused.get(passage.id, 0.0) + weight / (weights.rrf_k + rank)
            details.setdefault(passage.id, {})
            details[passage.id][f"{name}_rank"] = rank
            details[passage.id][f"{name}_score"] = round(passage.score, 6)
    order = sorted(fused, key=lambda pid: -fused[pid])[:k]
    return [
        Passage(
            id=pid,
            source=first_seen[pid].source,
            text=first_seen[pid].text,
            score=fused[pid],
            metadata={**first_seen[pid].metadata, **details[pid]},
        )
        for pid in order
    ]
