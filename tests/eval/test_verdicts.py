"""What users value: verdicts (right / missed / wrong), the truthfulness score, and natural-question sets
checked against their documents."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from assistant.answering.decision import Policy
from assistant.answering.judge.evaluator import Judgement
from assistant.answering.prompt.grounded import ABSTAIN_PHRASE
from assistant.settings import CascadeSettings
from eval.configs import Config, derive
from eval.datasets import DatasetError, load_dataset
from eval.question_sets import NaturalQuestion, QuestionSetError, check_question_set, load_question_set
from eval.records import QuestionRecord, TierCall
from eval.summaries import summarize
from eval.verdicts import holds_key_facts, truthfulness, verdict

REPO = Path(__file__).resolve().parents[2]
ROLLO = [["viking", "norse"], ["leader", "ruler"]]


def test_a_right_answer_holds_one_variant_of_every_key_fact() -> None:
    assert holds_key_facts("Rollo was the famed Viking ruler [1].", ROLLO)
    assert not holds_key_facts("Rollo was a Viking.", ROLLO)  # one group missing
    assert not holds_key_facts("A Norseman, leader of men", ROLLO)  # whole words: "norseman" is not "norse"
    assert holds_key_facts("The Norse  leader!", ROLLO)  # case, punctuation and spaces do not matter


def test_verdicts_for_answerable_and_unanswerable_questions() -> None:
    assert verdict("Rollo was a Viking leader [1]", answerable=True, key_facts=ROLLO) == "right"
    assert verdict(ABSTAIN_PHRASE, answerable=True, key_facts=ROLLO) == "missed"
    assert verdict("Rollo", answerable=True, key_facts=ROLLO) == "wrong"  # an echo is wrong, not missed
    assert verdict(ABSTAIN_PHRASE, answerable=False) == "right"
    assert verdict("$100", answerable=False) == "wrong"
    # Without key facts (SQuAD spans): F1 ≥ 0.5 against the gold answers.
    assert verdict("France [1]", answerable=True, gold_answers=["France"]) == "right"
    assert (
        verdict("Normandy is a region in northern France", answerable=True, gold_answers=["France"])
        == "wrong"
    )


def test_truthfulness_scores_a_wrong_answer_below_an_abstention() -> None:
    t = truthfulness([(True, "right"), (True, "right"), (True, "missed"), (True, "wrong"), (False, "right")])
    assert (t.right, t.missed, t.wrong, t.n) == (3, 1, 1, 5)
    assert t.score == pytest.approx((3 - 1) / 5)
    assert t.answerable_accuracy == pytest.approx(2 / 4) and t.refused_share == pytest.approx(1.0)
    abstain_all = truthfulness([(True, "missed")] * 2 + [(False, "right")])
    guess_all = truthfulness([(True, "right"), (True, "wrong"), (False, "wrong")])
    assert abstain_all.score == pytest.approx(1 / 3) and guess_all.score == pytest.approx(-1 / 3)


def _natural_record(kind: str, answerable: bool, local: str, paid: str, p_correct: float) -> QuestionRecord:
    return QuestionRecord(
        id=f"q-{kind}",
        question="Who was Rollo?",
        answers=["Rollo was a Viking leader."] if answerable else [],
        context_id=None,
        retrieved_ids=["c1"],
        retrieval_ms=5.0,
        local=TierCall(local, "l", "local", cost_micro_usd=10, latency_ms=100.0),
        judgement=Judgement(p_correct=p_correct, p_answerable=0.9 if answerable else 0.1),
        paid=TierCall(paid, "p", "paid", cost_micro_usd=1000, latency_ms=900.0),
        policy=Policy.from_settings(CascadeSettings()),
        kind=kind,
        key_facts=ROLLO if answerable else None,
    )


def test_derive_and_summaries_give_the_verdict_by_kind_and_tier() -> None:
    records = [
        _natural_record("definitional", True, "Rollo [1]", "Rollo was a Viking leader [1].", 0.0),
        _natural_record("unanswerable", False, "In 933 [1]", "In 933 [1]", 0.05),
    ]
    assert derive(records[0], Config("local", "local"))["verdict"] == "wrong"
    assert derive(records[0], Config("paid", "paid"))["verdict"] == "right"
    [local, paid] = summarize(records, [Config("local", "local"), Config("paid", "paid")])
    assert local.truth is not None and paid.truth is not None
    assert (local.truth.score, paid.truth.score) == (-1.0, 0.0)
    assert set(paid.truth_by_kind) == {"definitional", "unanswerable"}
    assert paid.truth_by_kind["definitional"].right == 1 and paid.truth_by_kind["unanswerable"].wrong == 1
    assert paid.truth_by_tier["paid"].n == 2


def test_the_bundled_question_sets_are_proved_against_their_documents() -> None:
    questions = load_question_set(REPO / "eval/questions/samples.jsonl")
    assert len(questions) >= 40 and 3 * sum(not q.answerable for q in questions) >= len(questions)
    assert {q.kind for q in questions} == {"definitional", "explanatory", "factoid", "unanswerable"}
    assert check_question_set(questions, REPO / "samples") == []
    dataset = load_dataset(REPO / "eval/questions/samples.jsonl")
    first = dataset.questions[0]
    assert first.kind == questions[0].kind and first.key_facts and first.answers == (questions[0].reference,)


def test_the_checker_finds_a_missing_fact_a_missing_evidence_and_an_echo(tmp_path: Path) -> None:
    good = NaturalQuestion(
        "q1",
        "Who was Rollo?",
        "definitional",
        True,
        (("viking",), ("ruler",)),
        "A Viking ruler.",
        "the famed Viking ruler Rollo",
        "normans.md",
    )
    unanswerable = NaturalQuestion(
        "q2", "When did Rollo die?", "unanswerable", False, (), None, None, "normans.md", "no date of death"
    )
    missing = NaturalQuestion(
        "q3", "Who was Rollo?", "definitional", True, (("samurai",),), "x", "Rollo the samurai", "normans.md"
    )
    echo = NaturalQuestion(
        "q4", "Who was the Viking ruler Rollo?", "definitional", True, (("viking",),), "x", None, "normans.md"
    )
    problems = check_question_set([good, unanswerable, unanswerable, missing, echo], REPO / "samples")
    assert problems == [
        "q2: duplicate id",
        "q3: no variant of key fact ('samurai',) occurs in normans.md",
        "q3: evidence sentence not found in normans.md",
        "q4: the question's own words hold every key fact (an echo would be right)",
    ]
    assert check_question_set([good, unanswerable], REPO / "samples") == []
    assert check_question_set([good], REPO / "samples") == [
        "only 0 of 1 questions are unanswerable (need a third)"
    ]


def test_a_malformed_natural_row_names_its_line_and_field(tmp_path: Path) -> None:
    row = {"id": "x", "question": "What is X?", "kind": "definitional", "answerable": True, "key_facts": []}
    path = tmp_path / "set.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(QuestionSetError, match=r"set\.jsonl:1: an answerable question needs key facts"):
        load_question_set(path)
    with pytest.raises(DatasetError, match=r"set\.jsonl:1: an answerable question needs key facts"):
        load_dataset(path)
    path.write_text(json.dumps({**row, "kind": "opinion"}) + "\n", encoding="utf-8")
    with pytest.raises(QuestionSetError, match="'kind' must be one of"):
        load_question_set(path)


def test_prices_are_chosen_on_truthfulness_with_a_wrong_answer_dearer_than_an_abstention() -> None:
    from eval.pricing import ABSTAIN_RATIOS, choose_price

    records = []
    for i in range(30):
        answerable, local_right = i % 3 != 0, i % 3 == 1
        local = "Rollo was a Viking leader [1]." if local_right else "Rollo [1]"
        p = 0.9 if local_right else 0.15
        record = _natural_record("definitional" if answerable else "unanswerable", answerable, local, "", p)
        paid = TierCall("Rollo was a Viking ruler [1].", "p", "paid", cost_micro_usd=1000, latency_ms=900.0)
        records.append(
            replace(
                record,
                id=f"q{i}",
                paid=paid,  # the paid tier answers the unanswerable ones too: wrong
                judgement=Judgement(p_correct=p, p_answerable=0.9 if answerable else 0.1, p_paid_helps=0.9),
            )
        )
    paid, chosen, best = choose_price(records)
    assert max(ABSTAIN_RATIOS) < 1.0 and best.config.abstain_ratio is not None
    assert best.truth is not None and paid.truth is not None and best.truth.score > paid.truth.score
    # Local answers kept where they are sure, the rest abstained: within the cost cap, nothing wrong.
    assert best.mean_cost_micro_usd <= 0.25 * paid.mean_cost_micro_usd
    assert (best.truth.right, best.truth.missed, best.truth.wrong) == (20, 10, 0)
    assert chosen is None  # the target also wants 75 % of answerable questions right: 10 of 20 are
