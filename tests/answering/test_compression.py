"""The prompt diet: which sentences of the passages the local prompt keeps.

Most tests give each sentence a chosen cosine with the question (two-dimensional unit vectors from a fixed
table, no model); two embed a real example with MiniLM, the model the cascade shares with retrieval.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from assistant.answering.judge.features import sentence_cosines
from assistant.answering.prompt.compression import GAP, STUB, Diet, compress, estimate_tokens, sentence_scores
from assistant.answering.text import sentences
from assistant.settings import CascadeSettings
from index.retrieval import Passage

QUESTION = "Who conquered England in 1066?"
NORMANS = [
    Passage(
        "n1",
        "normans.md",
        "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy. "
        "They were descended from Norse raiders and pirates from Denmark, Iceland and Norway. "
        "In 1066, Duke William II of Normandy conquered England, killing King Harold II at Hastings. "
        "He was crowned king of England on Christmas Day. "
        "The Norman dynasty had a major political, cultural and military impact on medieval Europe.",
        0.03,
        {"title": "Normans"},
    ),
    Passage(
        "n2",
        "normans.md",
        "The Duchy of Normandy was formed by treaty between King Charles III of West Francia and Rollo. "
        "The Norman language developed from Old Norse mixed with the local Romance dialects. "
        "Norman architecture is known for its round arches and massive walls.",
        0.02,
        {"title": "Normans"},
    ),
    Passage(
        "c1",
        "cct.md",
        "Computational complexity theory classifies problems by the resources needed to solve them. "
        "A Turing machine is a mathematical model of a general computing machine.",
        0.01,
        {"title": "Computational complexity theory"},
    ),
]


class Fixed:
    """An embedder whose sentences have the given cosines with the question, without a model."""

    def __init__(self, question: str, passages: list[Passage], cosines: list[list[float]]) -> None:
        units = [s for p in passages for s in sentences(p.text)]
        flat = [c for row in cosines for c in row]
        self.vectors = {question: np.array([1.0, 0.0], dtype=np.float32)}
        for unit, cosine in zip(units, flat, strict=True):
            self.vectors[unit] = np.array([cosine, math.sqrt(1 - cosine * cosine)], dtype=np.float32)

    def embed_memo(self, texts: list[str]) -> np.ndarray:  # the Embedder's method the diet calls
        return np.stack([self.vectors[text] for text in texts])


def passage(pid: str, *parts: str) -> Passage:
    return Passage(pid, f"{pid}.md", " ".join(parts), 0.5, {"title": f"Title {pid}"})


LONG = [
    passage("a", "Alpha one is here.", "Alpha two is here.", "Alpha three is here.", "Alpha four is here."),
    passage("b", "Beta one is here.", "Beta two is here.", "Beta three is here."),
    passage("c", "Gamma one is here.", "Gamma two is here."),
]


def test_keeps_the_answer_sentence_and_drops_the_rest(embedder) -> None:  # type: ignore[no-untyped-def]
    kept = compress(QUESTION, NORMANS, embedder, Diet(budget_tokens=60))
    assert "In 1066, Duke William II of Normandy conquered England" in kept[0].text
    assert sum(map(len, (p.text for p in kept))) < 0.5 * sum(map(len, (p.text for p in NORMANS)))
    assert [p.id for p in kept] == [p.id for p in NORMANS][: len(kept)]
    assert all(p.title == o.title and p.source == o.source for p, o in zip(kept, NORMANS, strict=False))


def test_off_returns_the_passages_unchanged() -> None:
    table = Fixed(QUESTION, LONG, [[0.9, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1], [0.1, 0.1]])
    assert compress(QUESTION, LONG, table, None) == LONG
    assert Diet.from_settings(CascadeSettings(prompt_diet=False)) is None
    assert Diet.from_settings(CascadeSettings()) == Diet()  # on by default, the same defaults


def kept_sentences(passages: list[Passage]) -> list[str]:
    return [s for p in passages if p.text != STUB for s in sentences(p.text.replace(GAP, " "))]


def test_budget_is_respected_but_the_top_passage_keeps_its_best_sentence() -> None:
    table = Fixed(QUESTION, LONG, [[0.5, 0.6, 0.5, 0.5], [0.9, 0.8, 0.8], [0.8, 0.8]])
    anchor = "Alpha two is here."  # the top passage's best sentence: kept whatever the budget
    for budget in (1, 10, 20, 30):
        diet = Diet(budget_tokens=budget, keep_within=1.0, lexical_weight=0.0)
        kept = kept_sentences(compress(QUESTION, LONG, table, diet))
        assert anchor in kept
        assert sum(estimate_tokens(s) for s in kept) <= max(budget, estimate_tokens(anchor))
    diet = Diet(budget_tokens=1, lexical_weight=0.0)
    assert kept_sentences(compress(QUESTION, LONG, table, diet)) == [anchor]


def test_sentences_keep_their_order_and_gaps_are_marked() -> None:
    table = Fixed(QUESTION, LONG, [[0.3, 0.2, 0.9, 0.1], [0.2, 0.2, 0.2], [0.2, 0.85]])
    kept = compress(QUESTION, LONG, table, Diet(budget_tokens=100, keep_within=0.1, neighbours=1))
    # The best hit (alpha three) with its neighbours, in passage order; gamma two is within 0.1 of it.
    assert kept[0].text == "Alpha two is here. Alpha three is here. Alpha four is here."
    assert kept[1].text == STUB  # nothing kept, but it keeps its place: [3] still names passage c
    assert kept[2].text == "Gamma two is here."
    no_neighbours = compress(QUESTION, LONG, table, Diet(budget_tokens=100, keep_within=0.65, neighbours=0))
    assert no_neighbours[0].text == f"Alpha one is here.{GAP}Alpha three is here."


def test_trailing_passages_with_nothing_kept_are_dropped() -> None:
    table = Fixed(QUESTION, LONG, [[0.9, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1], [0.1, 0.1]])
    kept = compress(QUESTION, LONG, table, Diet(keep_within=0.05, neighbours=0, lexical_weight=0))
    assert [(p.id, p.text) for p in kept] == [("a", "Alpha one is here.")]


def test_the_evaluator_finds_the_diets_sentence_vectors(embedder, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    source = sentences(NORMANS[0].text)[2]
    fresh = sentence_cosines(QUESTION, "Duke William II [1]", source, NORMANS, embedder)
    compress(QUESTION, NORMANS, embedder, Diet())
    encoded: list[str] = []
    real = embedder.embed_array

    def counting(texts):  # type: ignore[no-untyped-def]
        encoded.extend(texts)
        return real(texts)

    monkeypatch.setattr(embedder, "embed_array", counting)
    answer = "William, Duke of Normandy"  # not embedded before in this process
    shared = sentence_cosines(QUESTION, answer, source, NORMANS, embedder)
    assert encoded == [answer]  # the question and every sentence came from the memo the diet filled
    assert shared["question_sentence_cos"] == pytest.approx(fresh["question_sentence_cos"], abs=1e-4)
    assert shared["answer_sentence_question_cos"] > 0.5


def test_rare_question_words_weigh_more_and_match_their_stems() -> None:
    question = "Which river was Rollo defending?"
    texts = [passage("r", "Rollo defended the river.", "The river was wide.", "The river ran north.")]
    units = sentences(texts[0].text)
    held, common, _ = sentence_scores(question, units, np.array([0.5, 0.5, 0.5]), lexical_weight=1.0)
    assert held == pytest.approx(1.5)  # every question word ("defending" as "defended"): the whole weight
    assert 0.5 < common < 0.6  # "river" is in every sentence: it tells them apart little
