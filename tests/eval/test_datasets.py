"""Datasets: SQuAD 2.0 JSON and JSONL loading, deterministic stratified sampling, context ingestion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.datasets import DatasetError, context_id, ingest_contexts, load_dataset

DATA = Path(__file__).parents[1] / "data"
MINI = DATA / "squad2-mini.json"


def test_squad_mini_loads_questions_contexts_and_unanswerables() -> None:
    dataset = load_dataset(MINI)
    assert dataset.name == "squad2-mini"
    assert dataset.collection_name == "eval-squad2-mini"
    assert len(dataset.questions) == 36
    assert len(dataset.contexts) == 6
    has, no = dataset.counts()
    assert has + no == 36 and has > 0 and no > 0
    first = dataset.questions[0]
    assert first.question == "In what country is Normandy located?"
    assert first.answers == ("France",) * 4
    assert first.context_id in dataset.contexts
    assert "Normandy" in dataset.contexts[first.context_id].text
    # Unanswerable questions carry no answers even though SQuAD lists plausible_answers for them.
    raw = json.loads(MINI.read_text())
    impossible = {q["id"] for p in raw["data"][0]["paragraphs"] for q in p["qas"] if q["is_impossible"]}
    assert {q.id for q in dataset.questions if not q.has_answer} == impossible


def test_sampling_is_deterministic_and_keeps_the_has_no_ratio() -> None:
    dataset = load_dataset(MINI)
    has, no = dataset.counts()
    a = dataset.sample(12, seed=7)
    b = dataset.sample(12, seed=7)
    c = dataset.sample(12, seed=8)
    assert [q.id for q in a.questions] == [q.id for q in b.questions]
    assert [q.id for q in a.questions] != [q.id for q in c.questions]
    assert len(a.questions) == 12
    a_has, _ = a.counts()
    assert a_has == round(12 * has / (has + no))
    assert a.contexts == dataset.contexts  # distractor paragraphs stay
    assert dataset.sample(None).questions == dataset.questions
    assert dataset.sample(1000).questions == dataset.questions
    with pytest.raises(DatasetError, match="positive"):
        dataset.sample(0)


def test_jsonl_questions_with_optional_context(tmp_path: Path) -> None:
    path = tmp_path / "team-faq.jsonl"
    path.write_text(
        '{"id": "q1", "question": "Who?", "answers": ["Rollo"], "context": "Rollo led them.", "title": "N"}\n'
        "\n"
        '{"question": "Why?", "answers": []}\n'
        '{"id": "q3", "question": "When?", "answers": [{"text": "911"}]}\n'
    )
    dataset = load_dataset(path)
    assert [q.id for q in dataset.questions] == ["q1", "line-3", "q3"]
    assert dataset.questions[0].context_id == context_id("N", "Rollo led them.")
    assert dataset.questions[1].has_answer is False and dataset.questions[1].context_id is None
    assert dataset.questions[2].answers == ("911",)
    assert list(dataset.contexts) == [dataset.questions[0].context_id]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.jsonl", '{"question": "ok", "answers": []}\n{broken\n', r"bad.jsonl:2: not valid JSON"),
        ("bad.jsonl", '{"answers": ["x"]}\n', r"needs \{\"question\""),
        ("bad.jsonl", '{"question": "q", "answers": "x"}\n', "must be a list"),
        ("dup.jsonl", '{"id": "a", "question": "q"}\n{"id": "a", "question": "r"}\n', "unique"),
        ("bad.json", '{"version": "v2.0"}', "not SQuAD 2.0 JSON"),
        ("bad.json", '{"data": [{"title": "t", "paragraphs": [{"qas": []}]}]}', "malformed"),
        ("empty.jsonl", "\n", "no questions"),
        ("notes.csv", "a,b", "unknown format"),
    ],
)
def test_bad_datasets_fail_with_a_message_that_names_the_fix(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)
    assert path.read_text() == content  # the input file is left as it was


def test_missing_dataset_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nope.json")


def test_contexts_ingest_once_with_ids_that_make_recall_checkable(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    from index.retrieval import Retriever
    from index.store import get_collection, open_client

    dataset = load_dataset(MINI)
    collection = get_collection(open_client(tmp_path / "chroma"), dataset.collection_name)
    assert ingest_contexts(dataset, collection, embedder) == 6
    assert ingest_contexts(dataset, collection, embedder) == 0  # re-run writes nothing
    assert collection.count() == 6
    retriever = Retriever(collection, embedder)
    question = next(q for q in dataset.questions if q.question.startswith("From which countries"))
    passages = retriever.search(question.question, k=4)
    assert question.context_id in [p.id for p in passages]  # gold = the question's own paragraph, by id
    assert passages[0].title == "Normans"
    # The lexical side of hybrid retrieval sees the upserted paragraphs too (revision stamp bumped).
    assert question.context_id in [p.id for p in retriever.search(question.question, k=4, mode="bm25")]
