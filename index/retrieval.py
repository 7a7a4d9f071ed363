"""Retrieval: the one API the cascade, the CLI and eval use to find passages for a question.

Three modes share one call, ``Retriever.search(query, k=None, where=None, mode=None)``:

- ``dense``: cosine similarity from Chroma's HNSW index; ``Passage.score`` is the cosine in [-1, 1].
- ``bm25``: lexical BM25 (bm25s, Snowball-stemmed, English stopwords); ``score`` is the BM25 score.
- ``hybrid`` (default): both lists fused with weighted reciprocal-rank fusion,
  ``score = Σ weight / (rrf_k + rank)``. RRF needs no score calibration between the two systems, which
  is why it is used instead of mixing raw scores. The per-system scores and ranks stay in
  ``metadata`` (``dense_score``, ``bm25_score``, ``dense_rank``, ``bm25_rank``).

The BM25 index is loaded from its persisted state (``index.bm25``: saved and updated by ingest) and
reloaded whenever the collection's revision stamp (bumped by every ingest write, see ``index.store``)
differs from the one it holds, so it follows writes made by other processes too. ``where`` filters use
Chroma's own filter language; for BM25 Chroma resolves the filter to ids, so both modes filter identically.

Candidates are ranked on ids and scores alone; texts and metadata are fetched from Chroma only for the
``k`` passages returned, in one call. In hybrid mode the BM25 lookup runs on a worker thread while the
query is embedded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from chromadb.errors import InternalError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from index.bm25 import Bm25Index, Bm25Store
from index.embedding import Embedder
from index.sentvec import SentenceVectorStore
from index.store import revision

if TYPE_CHECKING:
    import numpy as np
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
    # One row per ``index.sentences.sentences(text)``, from the index's sentence store; None: not known.
    sentence_vectors: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def title(self) -> str:
        return str(self.metadata.get("title") or self.source)


@dataclass(frozen=True)
class FusionWeights:
    dense: float = 1.0
    bm25: float = 1.0
    rrf_k: int = 60


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
        bm25_store: Bm25Store | None = None,
        sentence_store: SentenceVectorStore | None = None,
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
        self.bm25_store = bm25_store or Bm25Store(None)
        self.sentence_store = sentence_store
        self._bm25: Bm25Index | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="penny-bm25")
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
        lexical_job = self._pool.submit(self._bm25_ranked, query, depth, where)
        dense = self._dense_ranked(query, depth, where)
        lexical = lexical_job.result()
        weights = weights or self.weights
        fused: dict[str, float] = {}
        details: dict[str, dict[str, Any]] = {}
        for name, ranked, weight in (("dense", dense, weights.dense), ("bm25", lexical, weights.bm25)):
            for rank, (pid, score) in enumerate(ranked, start=1):
                fused[pid] = fused.get(pid, 0.0) + weight / (weights.rrf_k + rank)
                details.setdefault(pid, {}).update({f"{name}_rank": rank, f"{name}_score": round(score, 6)})
        order = sorted(fused, key=lambda pid: -fused[pid])[:k]  # stable: ties keep dense order first
        return self._passages([(pid, fused[pid]) for pid in order], details)

    def dense(self, query: str, n: int, where: dict[str, Any] | None = None) -> list[Passage]:
        return self._passages(self._dense_ranked(query, n, where))

    def bm25(self, query: str, n: int, where: dict[str, Any] | None = None) -> list[Passage]:
        return self._passages(self._bm25_ranked(query, n, where))

    def _dense_ranked(self, query: str, n: int, where: dict[str, Any] | None) -> list[tuple[str, float]]:
        [vector] = self.embedder.embed_memo([query])
        # Chroma refuses a query on an empty collection, and while a collection's first write is still
        # reaching its vector segment it reports "Nothing found on disk": empty is no hits, the other is
        # asked again shortly.
        for attempt in Retrying(
            retry=retry_if_exception_type(InternalError),
            stop=stop_after_attempt(4),
            wait=wait_exponential(multiplier=0.05, max=0.5),
            reraise=True,
        ):
            with attempt:
                try:
                    result = self.collection.query(
                        query_embeddings=[vector], n_results=n, where=where, include=["distances"]
                    )
                except Exception:
                    if self.collection.count() == 0:
                        return []
                    raise
        distances = (result["distances"] or [[]])[0]
        return [(pid, 1.0 - float(d)) for pid, d in zip(result["ids"][0], distances, strict=True)]

    def _bm25_ranked(self, query: str, n: int, where: dict[str, Any] | None) -> list[tuple[str, float]]:
        index = self.bm25_index()
        allowed = self._matching_ids(where, index.stamp) if where else None
        return index.top(query, n, allowed)

    def by_ids(self, ids: list[str]) -> list[Passage]:
        """The passages with these ids, in this order (score 0): what a stored answer was given, read again
        when retrieval would now rank others (eval recomputes a stored answer's text features)."""
        return self._passages([(pid, 0.0) for pid in ids])

    def _passages(
        self, ranked: list[tuple[str, float]], details: dict[str, dict[str, Any]] | None = None
    ) -> list[Passage]:
        """Passages for ranked (id, score) pairs: texts and metadata read from Chroma in one call."""
        if not ranked:
            return []
        found = self.collection.get(
            ids=[pid for pid, _ in ranked], include=["documents", "metadatas", "embeddings"]
        )
        if found["embeddings"] is not None and len(found["embeddings"]):
            # The evaluator compares the answer with these passages: their vectors are in the index.
            self.embedder.remember([text or "" for text in found["documents"] or []], found["embeddings"])
        rows = {
            pid: (text or "", dict(meta or {}))
            for pid, text, meta in zip(
                found["ids"], found["documents"] or [], found["metadatas"] or [], strict=True
            )
        }
        # The diet and the evaluator read every sentence: stored once per chunk, embedded on first use.
        vectors = {}
        if self.sentence_store is not None:
            vectors = self.sentence_store.fill({pid: text for pid, (text, _) in rows.items()}, self.embedder)
        passages = []
        for pid, score in ranked:
            if pid not in rows:  # deleted between ranking and reading
                continue
            text, meta = rows[pid]
            if details:
                meta.update(details.get(pid, {}))
            passages.append(
                Passage(
                    id=pid,
                    source=str(meta.get("source", "")),
                    text=text,
                    score=score,
                    metadata=meta,
                    sentence_vectors=vectors.get(pid),
                )
            )
        return passages

    def bm25_index(self) -> Bm25Index:
        """The BM25 index at the collection's current revision: loaded from disk, or rebuilt if stale."""
        stamp = self._stamp()
        with self._bm25_lock:
            if self._bm25 is None or self._bm25.stamp != stamp:
                self._bm25 = self.bm25_store.current(self.collection, stamp)
                self._filter_cache = {}
            return self._bm25

    def _stamp(self) -> str:
        if self.client is not None:
            return revision(self.client, self.collection.name)
        return f"count:{self.collection.count()}"  # weaker: misses same-size replacements

    def _matching_ids(self, where: dict[str, Any], stamp: str) -> set[str]:
        key = (stamp, json.dumps(where, sort_keys=True, default=str))
        with self._bm25_lock:
            cached = self._filter_cache.get(key)
        if cached is None:
            cached = set(self.collection.get(where=where, include=[])["ids"])
            with self._bm25_lock:
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
            sentence_vectors=first_seen[pid].sentence_vectors,
        )
        for pid in order
    ]
