"""What the evaluator sees in (question, sources, local answer), and attribution of uncited answers
(real MiniLM embedder)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from assistant.answering.judge.features import (
    FEATURES,
    OPTIONAL_FEATURES,
    ensure_citation,
    extract_features,
    relevance,
)
from assistant.answering.prompt.grounded import ABSTAIN_PHRASE
from index.retrieval import Passage
from tests.support.answering import PASSAGES, QUESTION, generation


def test_features_of_a_supported_answer_and_of_a_made_up_one(embedder) -> None:  # type: ignore[no-untyped-def]
    good = extract_features(QUESTION, PASSAGES, generation("Normandy is a region in France [1]."), embedder)
    bad = extract_features(
        QUESTION, PASSAGES, generation("It is in Portugal, near Lisbon [3].", [-2.0, -4.5, -1.0]), embedder
    )
    assert set(good) == set(FEATURES) - set(OPTIONAL_FEATURES)  # the question was not scored here
    assert good["lexical_support"] == 1.0  # "region", "france" are in passage 1; the rest is the question
    assert bad["lexical_support"] == 0.0
    assert good["embedding_support"] > bad["embedding_support"] + 0.2
    assert good["n_citations"] == 1 and good["abstained"] == 0
    assert good["retrieval_top"] == pytest.approx(0.62) and good["retrieval_margin"] == pytest.approx(0.21)
    assert good["mean_logprob"] == pytest.approx(-0.15) and bad["min_logprob"] == -4.5
    assert good["answer_tokens"] == 3


def test_the_questions_log_probability_comes_from_the_local_tiers_prefill(embedder) -> None:  # type: ignore[no-untyped-def]
    scored = replace(
        generation("Normandy is a region in France [1]."), scored_tail_logprobs=[-0.5, -2.5, -1.5]
    )
    features = extract_features(QUESTION, PASSAGES, scored, embedder)
    assert set(features) == set(FEATURES)
    assert features["question_logprob"] == pytest.approx(-1.5)


def test_uncited_answer_is_checked_against_all_passages(embedder) -> None:  # type: ignore[no-untyped-def]
    features = extract_features(QUESTION, PASSAGES, generation("France, by the Seine."), embedder)
    assert features["n_citations"] == 0 and features["lexical_support"] == 1.0


def test_abstention_is_flagged(embedder) -> None:  # type: ignore[no-untyped-def]
    features = extract_features(QUESTION, PASSAGES, generation(ABSTAIN_PHRASE), embedder)
    assert features["abstained"] == 1.0 and features["lexical_support"] == 0.0


def test_relevance_uses_the_dense_cosine_of_hybrid_results() -> None:
    fused = Passage("a", "s", "t", score=0.032, metadata={"dense_score": 0.71, "bm25_score": 3.2})
    bm25_only = Passage("b", "s", "t", score=0.016, metadata={"bm25_score": 5.0})
    assert relevance(fused) == 0.71 and relevance(bm25_only) == 0.0
    assert relevance(PASSAGES[0]) == 0.62


def test_uncited_answers_are_attributed_to_the_supporting_passage() -> None:
    passages = [
        Passage(id="a", source="a.md", text="Paris is the capital of France.", score=0.5),
        Passage(id="b", source="b.md", text="William of Normandy won at Hastings in 1066.", score=0.4),
    ]
    question = "Who won at Hastings?"
    assert ensure_citation(question, "William of Normandy won.", passages) == "William of Normandy won. [2]"
    assert ensure_citation(question, "William won [2].", passages) == "William won [2]."  # already cites
    abstain = "I don't know based on the documents."
    assert ensure_citation(question, abstain, passages) == abstain
    assert ensure_citation(question, "Zebras.", passages) == "Zebras."  # nothing supports it


def test_question_support_sees_a_swapped_entity(embedder) -> None:  # type: ignore[no-untyped-def]
    answer = generation("France")
    faithful = extract_features(QUESTION, PASSAGES, answer, embedder)
    swapped = extract_features("In what country is Brittany located?", PASSAGES, answer, embedder)
    # content words country, normandy, located: passage 1 holds "normandy"; "brittany" is in none
    assert faithful["question_support"] == pytest.approx(1 / 3)
    assert swapped["question_support"] == 0.0


def test_verbatim_answer_and_the_rank_of_its_passage(embedder) -> None:  # type: ignore[no-untyped-def]
    first = extract_features(QUESTION, PASSAGES, generation("France [1]"), embedder)
    second = extract_features(QUESTION, PASSAGES, generation("the Seine valley."), embedder)
    made_up = extract_features(QUESTION, PASSAGES, generation("Portugal"), embedder)
    assert first["answer_verbatim_rank"] == 1.0
    assert second["answer_verbatim_rank"] == 0.5  # normalised: article and full stop dropped
    assert made_up["answer_verbatim_rank"] == 0.0


def test_sentence_support_prefers_the_sentence_that_restates_the_question(embedder) -> None:  # type: ignore[no-untyped-def]
    passages = [
        Passage(
            "a",
            "normans.md",
            "Rollo agreed to defend the Seine valley. Normandy is a region located in the country of France.",
            0.6,
        )
    ]
    right = extract_features(QUESTION, passages, generation("France"), embedder)
    wrong_sentence = extract_features(QUESTION, passages, generation("Seine valley"), embedder)
    assert right["answer_sentence_qcov"] > wrong_sentence["answer_sentence_qcov"]
    assert right["question_sentence_cos"] == wrong_sentence["question_sentence_cos"] > 0.5
    # The question matches the sentence "France" came from better than the one "Seine valley" came from.
    assert right["answer_sentence_question_cos"] > wrong_sentence["answer_sentence_question_cos"]
    assert 0.0 < right["answer_sentence_cos"] <= 1.0


def test_answer_type_against_question_type() -> None:
    from assistant.answering.judge.answer_type import type_match
    from assistant.answering.question import question_type

    assert question_type("When did the Normans conquer England?") == "date"
    assert question_type("In what year was Rollo baptised?") == "date"
    assert question_type("How many classes does P contain?") == "number"
    assert question_type("Who conquered England in 1066?") == "entity"
    assert question_type("What is a Turing machine?") == "untyped"
    assert type_match("When did the Normans conquer England?", "1066") == 1.0
    assert type_match("When did the Normans conquer England?", "William") == 0.0
    assert type_match("How many classes are there?", "three") == 1.0
    assert type_match("Who conquered England in 1066?", "the Normans") == 1.0
    assert type_match("Who conquered England in 1066?", "in 1066") == 0.0
    assert type_match("What is a Turing machine?", "a model") == 0.5


def test_dense_and_bm25_agreement_on_the_top_passage() -> None:
    from assistant.answering.judge.features import dense_bm25_agree

    agree = [Passage("a", "s", "t", 0.03, {"dense_rank": 1, "bm25_rank": 1})]
    differ = [
        Passage("a", "s", "t", 0.03, {"dense_rank": 1, "bm25_rank": 2}),
        Passage("b", "s", "t", 0.03, {"bm25_rank": 1}),
    ]
    assert dense_bm25_agree(agree) == 1.0
    assert dense_bm25_agree(differ) == 0.0
    assert dense_bm25_agree(PASSAGES) == 0.5  # dense-only retrieval: no evidence either way


def test_a_name_or_number_no_passage_holds_marks_the_question_unanswered() -> None:
    from assistant.answering.judge.features import question_names, question_names_missing

    passages = [Passage("a", "s", "William of Normandy conquered England in 1066.", 0.7)]
    assert question_names("Who conquered England in 1066?") == {"england", "1066"}
    assert question_names("What is the default recursion limit?") == set()  # the first word is no name
    assert question_names_missing("Who conquered England in 1066?", passages) == 0.0
    assert question_names_missing("Who conquered England in 1067?", passages) == 0.5
    assert question_names_missing("Who conquered Ireland in 1067?", passages) == 1.0
    assert question_names_missing("Who conquered it?", passages) == 0.0  # nothing to miss
    assert question_names_missing("Who conquered Ireland?", []) == 0.0
