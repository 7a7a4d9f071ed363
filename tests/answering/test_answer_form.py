"""Answers people can use: the form a question asks for, degenerate answers caught, a second local try, and
the evidence sentence shown with the answer."""

from __future__ import annotations

import pytest

from assistant.answering.answer import CascadeAnswer, Evidence, Source
from assistant.answering.decision import Decision, Policy, better, decide, retry_reason
from assistant.answering.judge.evaluator import Judgement
from assistant.answering.judge.features import evidence_sentence, is_degenerate, new_content_words
from assistant.answering.prompt.grounded import ABSTAIN_PHRASE, SYSTEM_PROMPTS, grounded_messages, style_for
from assistant.answering.question import question_kind
from index.retrieval import Passage

PASSAGES = [
    Passage(
        "a",
        "sky.md",
        "Sky Q is a subscription service. It records up to six programmes at once.",
        0.6,
        {"title": "Sky Q", "headings": "Sky Q > Features"},
    ),
    Passage("b", "normans.md", "The Normans were descended from Norse raiders and pirates.", 0.4),
]


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("What is computational complexity theory?", "definitional"),
        ("What's a generator?", "definitional"),
        ("Who was Rollo?", "definitional"),
        ("What does MVCC stand for?", "definitional"),
        ("Why did the Normans adopt French?", "explanatory"),
        ("How does a with statement work?", "explanatory"),
        ("What is the difference between a list and a tuple?", "explanatory"),
        ("Where did the Normans come from?", "factoid"),
        ("What is the time complexity of quicksort?", "factoid"),  # a value of X, not X
        ("What is the default chunk size of zlib streams?", "factoid"),
        ("How much does a Sky Q box cost?", "factoid"),
        ("When was Rollo born?", "factoid"),
        ("Who conquered England in 1066?", "factoid"),
        ("Who was Bohemond's son?", "factoid"),  # a value of Bohemond
        ("Who was the hostage?", "factoid"),  # asks for a name
        ("Who were the Normans?", "definitional"),  # asks about one
        ("What was absorbed into the Anglo-Norman language?", "factoid"),
        ("What's the Zen of Python?", "definitional"),  # a title, not a value of Python
        ("What's a coroutine in Python?", "definitional"),
        ("What does it mean for an object to be hashable?", "definitional"),
        ("How do you measure how long an algorithm takes?", "explanatory"),
    ],
)
def test_question_kind(question: str, kind: str) -> None:
    assert question_kind(question) == kind


def test_auto_style_asks_for_sentences_where_a_phrase_would_be_a_title() -> None:
    assert style_for("What is Sky Q?", "auto") == "sentence"
    assert style_for("How much does a Sky Q box cost?", "auto") == "concise"
    assert style_for("What is Sky Q?", "concise") == "concise"  # an explicit setting wins
    assert grounded_messages("Why is it so?", PASSAGES, "auto")[0]["content"] == SYSTEM_PROMPTS["sentence"]


@pytest.mark.parametrize(
    ("question", "answer", "degenerate"),
    [
        ("What is Sky Q?", "Sky Q", True),  # the question back
        ("What is Sky Q?", "Sky Q [1]", True),  # citations add nothing
        ("Where did the Normans come from?", "Normans", True),  # plural folded
        ("How does it record?", "Features", True),  # a bare section heading
        ("What is Sky Q?", "A subscription service [1].", False),
        ("Where did the Normans come from?", "From Norse raiders [2]", False),
        ("What is Sky Q?", ABSTAIN_PHRASE, False),  # an abstention says so: not degenerate
    ],
)
def test_degenerate_answers(question: str, answer: str, degenerate: bool) -> None:
    assert is_degenerate(question, answer, PASSAGES) is degenerate


def test_new_content_words_ignore_the_questions_own() -> None:
    assert new_content_words("What is Sky Q?", "Sky Q is a subscription service") == {
        "subscription",
        "service",
    }


POLICY = Policy(
    escalate_below=0.5,
    retrieval_floor=0.25,
    on_empty_retrieval="abstain",
    on_local_abstain="escalate",
    wrong_answer_usd=0.01,
    abstain_usd=0.005,
    never_serve_below=0.1,
    retry_local=True,
)


def test_a_degenerate_answer_and_an_abstention_on_strong_evidence_are_retried() -> None:
    echo = Judgement(p_correct=0.0, p_answerable=0.8, features={"degenerate": 1.0})
    assert retry_reason(echo, decide(echo, POLICY, paid_cost_usd=0.002), POLICY) == "degenerate"
    strong = {"question_sentence_cos": 0.7, "abstained": 1.0}
    abstained = Judgement(p_correct=0.2, p_answerable=0.8, features=strong, local_abstained=True)
    assert retry_reason(abstained, decide(abstained, POLICY), POLICY) == "abstained_on_evidence"
    weak = Judgement(p_correct=0.2, p_answerable=0.3, features=strong, local_abstained=True)
    assert retry_reason(weak, decide(weak, POLICY), POLICY) is None  # the sources likely do not answer
    good = Judgement(p_correct=0.9, p_answerable=0.9, features={"question_sentence_cos": 0.8})
    assert retry_reason(good, decide(good, POLICY), POLICY) is None
    off = Policy(0.5, 0.25, "abstain", "escalate", wrong_answer_usd=0.01, retry_local=False)
    assert retry_reason(echo, decide(echo, off), off) is None


def test_an_almost_surely_wrong_answer_is_never_served_and_a_better_retry_wins() -> None:
    wrong = Judgement(p_correct=0.05, p_answerable=0.9)
    first = decide(wrong, POLICY, paid_cost_usd=float("inf"))  # no paid tier: abstain, not serve
    assert first.action == "abstain" and "local" not in first.expected_loss_usd
    retried = decide(Judgement(p_correct=0.8, p_answerable=0.9), POLICY, paid_cost_usd=float("inf"))
    assert retried.action == "local" and better(first, retried) and not better(retried, first)
    # The threshold rule (no prices): a served answer with a higher P(correct) wins.
    assert better(Decision("abstain", "x", Judgement(0.1)), Decision("local", "y", Judgement(0.6)))


def test_the_answer_carries_the_sentence_it_rests_on() -> None:
    assert evidence_sentence("It records six programmes at once [1].", [p.text for p in PASSAGES]) == (
        1,
        "It records up to six programmes at once.",
    )
    assert evidence_sentence("Norse raiders", [p.text for p in PASSAGES]) == (
        2,
        "The Normans were descended from Norse raiders and pirates.",
    )
    assert evidence_sentence(ABSTAIN_PHRASE, [p.text for p in PASSAGES]) is None
    sources = [Source.from_passage(p) for p in PASSAGES]
    answer = CascadeAnswer("A subscription service [1]", sources, "local", 10.0)
    assert answer.evidence == Evidence(1, "Sky Q is a subscription service.")
    assert answer.penny_block()["evidence"] == {"source": 1, "text": "Sky Q is a subscription service."}
    assert CascadeAnswer(ABSTAIN_PHRASE, sources, "none", 10.0).penny_block()["evidence"] is None
