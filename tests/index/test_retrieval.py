"""Hybrid retrieval: dense + BM25 fused by RRF, filters in every mode, BM25 follows collection writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.service import Penny
from index.retrieval import FusionWeights, Passage, fuse

DOCS = {
    "ops/pager.md": "# Pager\n\nOn-call engineers carry the pager for one week and hand over on Mondays.",
    "ops/backup.md": "# Backups\n\nDatabase snapshots run nightly; restore drills happen every quarter.",
    "hr/leave.md": "# Leave\n\nEmployees accrue twenty-five vacation days per year.",
    "hr/expenses.txt": "Expense reports above 500 euros need approval from a director.",
    "eng/errors.txt": "Error code ZX-4471 means the ingest queue is full; retry after backoff.",
}


@pytest.fixture
def penny(settings, tmp_path: Path) -> Penny:  # type: ignore[no-untyped-def]
    root = tmp_path / "kb"
    for name, text in DOCS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    penny = Penny(settings)
    assert penny.ingester().ingest([root]).added == len(DOCS)
    return penny


def names(passages: list[Passage]) -> list[str]:
    return [Path(p.source).name for p in passages]


def test_modes_find_the_right_document_with_descending_scores(penny: Penny) -> None:
    retriever = penny.retriever()
    assert retriever.mode == "hybrid"  # the default from settings
    for mode in ("dense", "bm25", "hybrid"):
        found = retriever.search("how many vacation days do employees get", k=3, mode=mode)
        assert names(found)[0] == "leave.md", mode
        scores = [p.score for p in found]
        assert scores == sorted(scores, reverse=True) and len(found) <= 3
    hybrid = retriever.search("how many vacation days do employees get", k=2)
    top = hybrid[0]
    assert {"dense_rank", "dense_score", "bm25_rank", "bm25_score"} <= set(top.metadata)
    assert top.score == pytest.approx(
        1 / (60 + top.metadata["dense_rank"]) + 1 / (60 + top.metadata["bm25_rank"])
    )
    assert -1 <= retriever.search("vacation", mode="dense")[0].score <= 1


def test_bm25_catches_exact_identifiers(penny: Penny) -> None:
    retriever = penny.retriever()
    assert names(retriever.search("ZX-4471", k=1, mode="bm25")) == ["errors.txt"]
    assert names(retriever.search("what does ZX-4471 mean", k=1, mode="hybrid")) == ["errors.txt"]


def test_where_filters_apply_in_every_mode(penny: Penny, tmp_path: Path) -> None:
    retriever = penny.retriever()
    leave = str((tmp_path / "kb" / "hr" / "leave.md").resolve())
    for mode in ("dense", "bm25", "hybrid"):
        only_leave = retriever.search("database restore drills", k=5, where={"source": leave}, mode=mode)
        assert set(names(only_leave)) <= {"leave.md"}, mode
        not_leave = retriever.search("vacation days", k=5, where={"source": {"$ne": leave}}, mode=mode)
        assert "leave.md" not in names(not_leave), mode
    titled = retriever.search("anything about work", k=5, where={"title": {"$in": ["Pager", "Backups"]}})
    assert set(names(titled)) <= {"pager.md", "backup.md"} and titled


def test_bm25_index_follows_writes(penny: Penny, tmp_path: Path) -> None:
    retriever = penny.retriever()
    assert retriever.search("quokka sanctuary", mode="bm25") == []
    built = retriever.bm25_index()
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "zoo.txt").write_text("The quokka sanctuary opens at nine.")
    penny.ingester().ingest([tmp_path / "new"])  # a separate Ingester: only the revision stamp links them
    assert names(retriever.search("quokka sanctuary", mode="bm25")) == ["zoo.txt"]
    assert retriever.bm25_index() is not built
    assert retriever.bm25_index() is retriever.bm25_index()  # no rebuild without a write


def test_fusion_weights_and_k(penny: Penny) -> None:
    retriever = penny.retriever()
    query = "restore drills for database snapshots"
    dense_only = retriever.search(query, k=4, weights=FusionWeights(dense=1.0, bm25=0.0))
    assert [p.id for p in dense_only] == [p.id for p in retriever.search(query, k=4, mode="dense")]
    assert len(retriever.search(query, k=1)) == 1


def test_fuse_rewards_agreement() -> None:
    def passage(pid: str, score: float) -> Passage:
        return Passage(id=pid, source=pid, text=pid, score=score)

    dense = [passage("a", 0.9), passage("b", 0.8), passage("c", 0.7)]
    lexical = [passage("c", 12.0), passage("b", 9.0), passage("d", 3.0)]
    fused = fuse(dense, lexical, k=4, weights=FusionWeights())
    # c (ranks 3+1: 1/63 + 1/61) edges out b (2+2: 2/62); both beat a, first in only one list.
    assert [p.id for p in fused] == ["c", "b", "a", "d"]
    assert fused[1].metadata == {"dense_rank": 2, "dense_score": 0.8, "bm25_rank": 2, "bm25_score": 9.0}
    assert fused[0].score == pytest.approx(1 / 63 + 1 / 61)


def test_empty_collection_and_bad_mode(settings) -> None:  # type: ignore[no-untyped-def]
    retriever = Penny(settings).retriever("empty-one")
    for mode in ("dense", "bm25", "hybrid"):
        assert retriever.search("anything", mode=mode) == []
    with pytest.raises(ValueError, match="unknown retrieval mode"):
        retriever.search("x", mode="fuzzy")  # type: ignore[arg-type]


def test_the_embedding_memo_serves_retrieved_passages_and_questions_without_encoding(penny: Penny) -> None:
    import numpy as np

    embedder = penny.embedder
    embedder.forget_memo()
    question = "who approves expense reports"
    [passage, *_] = penny.retriever().search(question, k=2)
    encoded: list[str] = []
    original = embedder.embed_array
    embedder.embed_array = lambda texts: encoded.extend(texts) or original(texts)  # type: ignore[method-assign]
    try:
        vectors = embedder.embed_memo([question, passage.text])
    finally:
        embedder.embed_array = original  # type: ignore[method-assign]
    assert encoded == []  # the question was embedded by retrieval, the passage's vector read from Chroma
    assert np.allclose(vectors, original([question, passage.text]), atol=1e-4)


def test_the_embedding_memo_is_bounded(embedder) -> None:  # type: ignore[no-untyped-def]
    from index.embedding import Embedder

    small = Embedder(memo_size=2)
    small.__dict__["model"] = embedder.model  # share the loaded model
    small.embed_memo(["one", "two", "three"])
    assert list(small._memo) == ["two", "three"]
    assert small.embed_memo([]).shape == (0, embedder.dimension)
