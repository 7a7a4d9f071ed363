"""The semantic cache with the real MiniLM embedder and real SQLite: near-identical questions hit; a
negation, another entity or number, a changed or deleted source, or another collection miss."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from assistant.answering.cache import (
    SemanticCache,
    capitalised_words,
    content_hash,
    negations,
    numbers,
    same_meaning_markers,
)

QUESTION = "In what country is Normandy located?"
CHUNK_TEXT = "Normandy is a region in France."
STORED = {"answer": "France [1].", "sources": [], "tier": "local", "confidence": 0.9}


class Chunks:
    """The chunk texts a collection holds now, by id (what the cascade reads from Chroma)."""

    def __init__(self) -> None:
        self.texts = {"c1": CHUNK_TEXT}

    def __call__(self, ids: Sequence[str]) -> dict[str, str]:
        return {i: content_hash(self.texts[i]) for i in ids if i in self.texts}


@pytest.fixture
def chunks() -> Chunks:
    return Chunks()


@pytest.fixture
def cache(embedder) -> SemanticCache:  # type: ignore[no-untyped-def]
    cache = SemanticCache(embedder, min_similarity=0.95)
    cache.put("docs", QUESTION, STORED, [("c1", content_hash(CHUNK_TEXT))])
    return cache


def test_near_identical_question_hits(cache: SemanticCache, chunks: Chunks) -> None:
    hit = cache.lookup("docs", "In which country is Normandy located?", chunks)
    assert hit is not None
    assert hit.answer == STORED and hit.question == QUESTION and hit.similarity >= 0.95


def test_unrelated_question_and_other_collection_miss(cache: SemanticCache, chunks: Chunks) -> None:
    assert cache.lookup("docs", "Who wrote the Domesday Book?", chunks) is None
    assert cache.last_miss_reason is not None and cache.last_miss_reason.startswith("similarity")
    assert cache.lookup("other", QUESTION, chunks) is None


def test_negation_misses_even_when_embeddings_are_close(embedder, chunks: Chunks) -> None:  # type: ignore[no-untyped-def]
    cache = SemanticCache(embedder, min_similarity=0.9)  # low enough that similarity alone would hit
    cache.put("docs", QUESTION, STORED, [("c1", content_hash(CHUNK_TEXT))])
    assert cache.lookup("docs", "In what country is Normandy not located?", chunks) is None
    assert cache.last_miss_reason == f"guard: negation differs from {QUESTION!r}"
    assert cache.lookup("docs", "In what country isn't Normandy located?", chunks) is None


def test_different_number_misses(embedder, chunks: Chunks) -> None:  # type: ignore[no-untyped-def]
    cache = SemanticCache(embedder, min_similarity=0.95)
    cache.put("docs", "Who ruled Normandy in 1066?", STORED, [("c1", content_hash(CHUNK_TEXT))])
    assert cache.lookup("docs", "Who ruled Normandy in 1067?", chunks) is None  # cosine 0.98
    assert cache.last_miss_reason is not None and "number" in cache.last_miss_reason
    assert cache.lookup("docs", "who ruled Normandy in 1066?", chunks) is not None


def test_different_entity_misses(embedder, chunks: Chunks) -> None:  # type: ignore[no-untyped-def]
    cache = SemanticCache(embedder, min_similarity=0.4)  # low enough that similarity alone would hit
    cache.put("docs", QUESTION, STORED, [("c1", content_hash(CHUNK_TEXT))])
    assert cache.lookup("docs", "In what country is Brittany located?", chunks) is None
    assert cache.last_miss_reason == f"guard: entity differs from {QUESTION!r}"
    # Case alone is not a different entity.
    assert cache.lookup("docs", "in what country is normandy located?", chunks) is not None


def test_changed_or_deleted_source_misses_and_drops_the_entry(cache: SemanticCache, chunks: Chunks) -> None:
    chunks.texts["c1"] = "Normandy is a region in northern France, famous for its cheese."
    assert cache.lookup("docs", QUESTION, chunks) is None
    assert cache.last_miss_reason == "sources changed"
    assert len(cache) == 0

    cache.put("docs", QUESTION, STORED, [("c1", content_hash(chunks.texts["c1"]))])
    del chunks.texts["c1"]
    assert cache.lookup("docs", QUESTION, chunks) is None and len(cache) == 0


def test_sqlite_file_persists_across_instances(embedder, chunks: Chunks, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cache" / "answers.sqlite"
    first = SemanticCache(embedder, path)
    first.put("docs", QUESTION, STORED, [("c1", content_hash(CHUNK_TEXT))])
    first.close()
    again = SemanticCache(embedder, path)
    assert again.lookup("docs", QUESTION, chunks) is not None


def test_max_entries_evicts_the_oldest(embedder, chunks: Chunks) -> None:  # type: ignore[no-untyped-def]
    cache = SemanticCache(embedder, max_entries=2)
    for question in ("Where is Normandy?", "Who was Rollo?", "What is a Turing machine?"):
        cache.put("docs", question, STORED, [])
    assert len(cache) == 2
    assert cache.lookup("docs", "Where is Normandy?", chunks) is None
    assert cache.lookup("docs", "Who was Rollo?", chunks) is not None


def test_markers() -> None:
    assert negations("Why didn't Rollo never sail?") == {"not", "never"}
    assert capitalised_words("Who ruled Normandy after William the Conqueror?") == {
        "normandy",
        "william",
        "conqueror",
    }
    assert numbers("Between 1,066 and 1087.5 or 12") == {"1066", "1087.5", "12"}
    assert same_meaning_markers("Who was Rollo?", "who was rollo") is None
    assert same_meaning_markers("Who was Rollo?", "Who was not Rollo?") == "negation"
