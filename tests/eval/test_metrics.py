"""SQuAD 2.0 metrics against hand-checked cases, plus recall, latency and shares."""

from __future__ import annotations

import pytest

from assistant.answering.prompt.grounded import ABSTAIN_PHRASE
from eval.metrics import (
    exact_match,
    latency_percentiles,
    mean_recall_at_k,
    normalize_answer,
    score,
    shares,
    summarize_quality,
    to_prediction,
    token_f1,
)


def test_official_normalisation_lowercases_strips_punctuation_articles_and_whitespace() -> None:
    assert normalize_answer("The  Normans, of Normandy!") == "normans of normandy"
    assert normalize_answer("An apple a day") == "apple day"
    # Articles only as whole words: "theory" and "another" keep their letters.
    assert normalize_answer("the theory of another") == "theory of another"
    # Punctuation goes before article removal, so "the-end" becomes "theend" (one token), as officially.
    assert normalize_answer("the-end") == "theend"
    assert normalize_answer("  \t ") == ""


def test_exact_match_after_normalisation() -> None:
    assert exact_match("France", "france.") == 1.0
    assert exact_match("the 10th century", "10th Century") == 1.0
    assert exact_match("10th and 11th centuries", "in the 10th and 11th centuries") == 0.0


def test_token_f1_hand_checked() -> None:
    # gold "10th and 11th centuries" → [10th, and, 11th, centuries] (4 tokens)
    # pred "in the 10th and 11th centuries" → [in, 10th, and, 11th, centuries] (5 tokens; "the" dropped)
    # common = 4; precision = 4/5, recall = 4/4; F1 = 2·0.8·1/(0.8+1) = 1.6/1.8 = 0.888…
    assert token_f1("10th and 11th centuries", "in the 10th and 11th centuries") == pytest.approx(8 / 9)
    # gold "Denmark, Iceland and Norway" → [denmark, iceland, and, norway]; pred "Norway" → [norway]
    # common = 1; P = 1/1, R = 1/4; F1 = 2·1·0.25/1.25 = 0.4
    assert token_f1("Denmark, Iceland and Norway", "Norway") == pytest.approx(0.4)
    # Repeated tokens count with multiplicity: gold [x, y] vs pred [y, y, y]
    # common = min(1, 3) = 1; P = 1/3, R = 1/2; F1 = 2·(1/6)/(5/6) = 0.4
    assert token_f1("x y", "y y y") == pytest.approx(0.4)
    assert token_f1("France", "Germany") == 0.0


def test_empty_gold_or_prediction_follows_the_official_rule() -> None:
    assert token_f1("", "") == 1.0  # both empty: 1
    assert token_f1("", "France") == 0.0  # one empty: 0
    assert token_f1("France", "") == 0.0
    # A prediction that normalises to nothing ("The.") is empty too.
    assert token_f1("", "The.") == 1.0


def test_score_takes_the_max_over_gold_answers() -> None:
    golds = ["10th and 11th centuries", "in the 10th and 11th centuries"]
    # EM: matches the second gold exactly after normalisation → 1; F1 max = 1 as well.
    assert score("in the 10th and 11th centuries", golds) == (1.0, 1.0)
    # pred "11th centuries": vs gold 1: common 2, P 2/2, R 2/4 → F1 = 2·1·0.5/1.5 = 0.666…
    #                        vs gold 2: common 2, P 2/2, R 2/5 → F1 = 2·1·0.4/1.4 = 0.571…  → max 0.666…
    em, f1 = score("11th centuries", golds)
    assert (em, f1) == (0.0, pytest.approx(2 / 3))


def test_unanswerable_scores_only_an_empty_or_abstaining_prediction() -> None:
    assert score("", []) == (1.0, 1.0)
    assert score("France", []) == (0.0, 0.0)
    # Penny's abstention phrase maps to the empty prediction, so it is right on NoAns...
    assert to_prediction(ABSTAIN_PHRASE) == ""
    assert score(to_prediction(ABSTAIN_PHRASE), []) == (1.0, 1.0)
    # ...and wrong on an answerable question.
    assert score(to_prediction(ABSTAIN_PHRASE), ["France"]) == (0.0, 0.0)
    # Golds that normalise to nothing count as no answer (official: filtered, then [""]).
    assert score("", ["the", "."]) == (1.0, 1.0)


def test_citation_markers_are_stripped_before_scoring() -> None:
    assert to_prediction("Normandy is in France [1].") == "Normandy is in France."
    assert to_prediction("France [1][2], per [1, 3]") == "France, per"
    # pred "Normandy is in France" → [normandy, is, in, france]; gold [france]
    # common 1; P 1/4, R 1/1; F1 = 2·0.25/1.25 = 0.4 — the marker "[1]" would otherwise add a token "1".
    assert score(to_prediction("Normandy is in France [1]."), ["France"]) == (0.0, pytest.approx(0.4))


def test_summary_splits_has_ans_and_no_ans() -> None:
    # (has_answer, em, f1): HasAns EM (1+0)/2 = 50, F1 (1+0.4)/2 = 70; NoAns EM (1+0+1)/3 = 66.67
    # overall EM (1+0+1+0+1)/5 = 60, F1 (1+0.4+1+0+1)/5 = 68
    summary = summarize_quality(
        [(True, 1.0, 1.0), (True, 0.0, 0.4), (False, 1.0, 1.0), (False, 0.0, 0.0), (False, 1.0, 1.0)]
    )
    assert summary.exact == pytest.approx(60.0)
    assert summary.f1 == pytest.approx(68.0)
    assert summary.has_ans_exact == pytest.approx(50.0)
    assert summary.has_ans_f1 == pytest.approx(70.0)
    assert summary.no_ans_f1 == pytest.approx(200 / 3)
    assert (summary.total, summary.has_ans_total, summary.no_ans_total) == (5, 2, 3)
    only_has = summarize_quality([(True, 1.0, 1.0)])
    assert only_has.no_ans_f1 is None
    with pytest.raises(ValueError):
        summarize_quality([])


def test_recall_latency_and_shares() -> None:
    pairs = [(["a", "b", "c"], "a"), (["b", "c", "a"], "a"), (["x", "y", "z"], "a"), (["q"], None)]
    # recall@1: [1, 0, 0] → 1/3; recall@3: [1, 1, 0] → 2/3; the question without gold is excluded.
    assert mean_recall_at_k(pairs, 1) == pytest.approx(1 / 3)
    assert mean_recall_at_k(pairs, 3) == pytest.approx(2 / 3)
    assert mean_recall_at_k([(["a"], None)], 1) is None
    # p50 of 10..100 = 55; p95 (linear) = 10 + 0.95·9·10 = 95.5
    assert latency_percentiles([10, 20, 30, 40, 50, 60, 70, 80, 90, 100]) == pytest.approx((55.0, 95.5))
    assert shares(["local", "local", "paid", "none"]) == {
        "local": 0.5,
        "paid": 0.25,
        "cache": 0.0,
        "none": 0.25,
    }
