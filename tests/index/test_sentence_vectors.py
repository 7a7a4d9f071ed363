"""Sentence vectors kept per chunk (index/sentvec.py): stored at ingest or on first retrieval, carried by
the passages, read by the prompt diet and the evaluator instead of embedding every sentence again.

Real Chroma and the real MiniLM embedder; the answers come from the tiny local model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.answering.judge.features import sentence_cosines, text_features
from assistant.answering.prompt.compression import Diet, compress
from assistant.service import Penny
from index.embedding import Embedder
from index.sentences import sentences
from index.sentvec import SentenceVectorStore
from tests.conftest import REPO

SAMPLES = REPO / "samples"
QUESTION = "In what country is Normandy located?"


def penny_with(settings, at_ingest: bool) -> Penny:  # type: ignore[no-untyped-def]
    settings.index.sentence_vectors_at_ingest = at_ingest
    penny = Penny(settings)
    assert penny.ingester().ingest([SAMPLES]).added == 2
    return penny


def store_of(penny: Penny) -> SentenceVectorStore:
    return penny.retriever().sentence_store  # type: ignore[return-value]


def chunks(penny: Penny) -> dict[str, str]:
    found = penny.retriever().collection.get(include=["documents"])
    return {pid: text or "" for pid, text in zip(found["ids"], found["documents"] or [], strict=True)}


def assert_embeds_each_sentence(embedder: Embedder, text: str, vectors: np.ndarray) -> None:
    expected = embedder.embed_array(sentences(text))
    assert vectors.shape == expected.shape and vectors.shape[0] == len(sentences(text)) > 0
    np.testing.assert_allclose(vectors, expected, atol=2e-3)  # float16 on disk


class Counting:
    """Records every text the embedder's model encodes (the memo's misses)."""

    def __init__(self, embedder: Embedder, monkeypatch: pytest.MonkeyPatch) -> None:
        self.encoded: list[str] = []
        real = embedder.embed_array

        def counting(texts):  # type: ignore[no-untyped-def]
            self.encoded.extend(texts)
            return real(texts)

        monkeypatch.setattr(embedder, "embed_array", counting)


def test_vectors_stored_at_ingest_are_each_sentences_embedding(settings) -> None:  # type: ignore[no-untyped-def]
    penny = penny_with(settings, at_ingest=True)
    stored = chunks(penny)
    found = store_of(penny).read(stored)
    assert set(found) == set(stored) and len(stored) > 20  # every chunk, none left for the answer path
    for pid in list(stored)[:5]:
        assert_embeds_each_sentence(penny.embedder, stored[pid], found[pid])


def test_the_answer_path_embeds_no_passage_sentence_when_vectors_are_stored(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    penny = penny_with(settings, at_ingest=True)
    every_sentence = {s for text in chunks(penny).values() for s in sentences(text)}
    penny.embedder.forget_memo()  # a cold question: nothing recent touched these passages
    counting = Counting(penny.embedder, monkeypatch)
    answer = penny.ask(QUESTION, mode="local")
    assert answer.tier == "local" and answer.sources
    assert QUESTION in counting.encoded  # the embedder was watched
    assert not set(counting.encoded) & every_sentence


def test_an_index_without_vectors_answers_and_fills_them_on_first_retrieval(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    penny = penny_with(settings, at_ingest=False)  # what an index built before the store looks like
    store = store_of(penny)
    assert store.count() == 0
    answer = penny.ask(QUESTION, mode="local")
    assert answer.tier == "local" and answer.sources
    retrieved = penny.retriever().search(QUESTION)
    assert store.count() >= len(retrieved) > 0
    for passage in retrieved:
        assert passage.sentence_vectors is not None
        assert_embeds_each_sentence(penny.embedder, passage.text, passage.sentence_vectors)
    penny.embedder.forget_memo()
    counting = Counting(penny.embedder, monkeypatch)
    again = penny.retriever().search(QUESTION)  # the second time they come from the store
    assert [p.id for p in again] == [p.id for p in retrieved]
    text_features(QUESTION, again, "France [1]", penny.embedder)
    compress(QUESTION, again, penny.embedder, Diet())
    assert not set(counting.encoded) & {s for p in again for s in sentences(p.text)}


def test_reingest_replaces_a_changed_files_vectors_and_delete_forgets_them(settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings.index.sentence_vectors_at_ingest = True
    penny = Penny(settings)
    doc = tmp_path / "kb" / "leave.md"
    doc.parent.mkdir()
    doc.write_text("# Leave\n\nEmployees accrue twenty-five vacation days a year. Unused days expire.")
    penny.ingester().ingest([doc.parent])
    store = store_of(penny)
    before = chunks(penny)
    assert set(store.read(before)) == set(before)

    doc.write_text("# Leave\n\nEmployees accrue thirty vacation days per year. Unused days roll over.")
    summary = penny.ingester().ingest([doc.parent])
    assert summary.updated == 1
    after = chunks(penny)
    assert not set(after) & set(before)  # a changed file gets new chunk ids
    assert store.count() == len(after)  # the old chunks' rows went with them
    found = store.read(after)
    for pid, text in after.items():
        assert "thirty" in text
        assert_embeds_each_sentence(penny.embedder, text, found[pid])

    assert penny.ingester().delete_source(str(doc)) == len(after)
    assert store.count() == 0


def test_a_row_whose_chunk_text_changed_is_not_read(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    store = SentenceVectorStore(tmp_path / "v.sqlite", "all-MiniLM-L6-v2")
    text = "Rollo founded Normandy. His heirs ruled it."
    store.fill({"c1": text}, embedder)
    assert set(store.read({"c1": text})) == {"c1"}
    assert store.read({"c1": "Rollo founded Normandy. Nobody ruled it."}) == {}  # same id, other sentences
    other_model = SentenceVectorStore(tmp_path / "v.sqlite", "another-model")
    assert other_model.read({"c1": text}) == {}


def test_the_diet_drops_vectors_that_no_longer_match_its_text(settings) -> None:  # type: ignore[no-untyped-def]
    penny = penny_with(settings, at_ingest=False)
    retrieved = penny.retriever().search(QUESTION)
    assert all(p.sentence_vectors is not None for p in retrieved)
    kept = compress(QUESTION, retrieved, penny.embedder, Diet(budget_tokens=40))
    assert all(p.sentence_vectors is None for p in kept)
    assert any(k.text != p.text for k, p in zip(kept, retrieved, strict=False))
    carried = sentence_cosines(QUESTION, "France", None, retrieved, penny.embedder)
    stripped = [type(p)(p.id, p.source, p.text, p.score, p.metadata) for p in retrieved]
    fresh = sentence_cosines(QUESTION, "France", None, stripped, penny.embedder)
    assert carried == pytest.approx(fresh, abs=1e-3)  # stored float16 vectors give the same cosines


def test_a_store_that_cannot_be_opened_costs_the_embedding_not_the_vectors(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "taken").mkdir()  # a directory where the file should be: SQLite cannot open it
    store = SentenceVectorStore(tmp_path / "taken", "all-MiniLM-L6-v2")
    text = "Rollo founded Normandy. His heirs ruled it."
    found = store.fill({"c1": text}, embedder)
    assert_embeds_each_sentence(embedder, text, found["c1"])
