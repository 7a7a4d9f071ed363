"""Self-calibration on a collection: questions written by the paid tier (a scripted fake on loopback, the
one double allowed), the real path on SmolLM2 + Chroma over samples/, the fit, and the service picking
the collection's calibration up. Plus the pure parts: parsing, the verbatim rule, entity swaps."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from assistant.answering.prompt.grounded import ABSTAIN_PHRASE
from assistant.calibration import Calibration, Calibrations, collection_calibration_path
from assistant.cli import cli
from eval.synthetic_rules import answer_problem, entities, parse_question, swap_entity
from tests.conftest import REPO
from tests.support.fake_paid import completion_body
from tests.support.servers import running_server

CHUNK = "The Normans conquered England in 1066 under William the Conqueror, after the Battle of Hastings."


def test_parse_question_reads_the_two_lines_and_trims_the_answer() -> None:
    assert parse_question("Question: Who conquered England?\nAnswer: William the Conqueror.") == (
        "Who conquered England?",
        "William the Conqueror",
    )
    assert parse_question('question:  When?\n\nanswer: "1066"\nextra') == ("When?", "1066")
    assert parse_question("Who conquered England? William.") is None


@pytest.mark.parametrize(
    ("question", "answer", "problem"),
    [
        ("Who conquered England in 1066?", "William the Conqueror", None),
        ("Who conquered England in 1066?", "william the  conqueror", None),  # case and spacing aside
        ("Who conquered England in 1066?", "King Harold", "answer_not_verbatim"),
        (
            "Who conquered England in 1066?",
            "The Normans conquered England in 1066 under William the Conqueror",
            "answer_too_long",
        ),
        ("When did the Normans conquer England in 1066?", "1066", "answer_in_question"),
        ("Conquest", "1066", "not_a_question"),
        ("Who conquered England, according to this passage?", "William the Conqueror", "not_standalone"),
        ("Who is mentioned in the text as the conqueror?", "William the Conqueror", "not_standalone"),
    ],
)
def test_a_generated_answer_must_be_short_verbatim_and_not_given_away(question, answer, problem) -> None:  # type: ignore[no-untyped-def]
    assert answer_problem(question, answer, CHUNK) == problem


def test_a_swap_puts_in_a_name_or_number_the_chunk_lacks() -> None:
    rng = random.Random(0)
    swapped, donor = swap_entity("Who conquered England in 1066?", CHUNK, ["Portugal", "England"], rng)  # type: ignore[misc]
    assert donor == "Portugal" and swapped == "Who conquered Portugal in 1066?"
    year, shifted = swap_entity("What happened in 1066?", CHUNK, [], rng)  # type: ignore[misc]
    assert shifted not in CHUNK and year == f"What happened in {shifted}?"
    assert swap_entity("What did they build?", CHUNK, ["Portugal"], rng) is None
    assert entities("In Britain, the Normans met The Danes.") == ["Britain", "Normans", "Danes"]


def test_a_capital_that_only_starts_a_sentence_is_not_a_donor() -> None:
    text = (
        "However, the index is rebuilt. Returns nothing useful! Usually it works? Note: slow.\n"
        "Changed in version 3.2\n- Deprecated since then\n# Installation\n1. Configure it with pip."
    )
    assert entities(text) == []


def test_a_mid_sentence_name_is_a_donor_whole_and_vouches_for_its_sentence_starts() -> None:
    text = (
        "Penny stores vectors. Data goes to the Python Software Foundation servers and Chroma.\n"
        "Python Software Foundation staff review it. Chroma is fast. Ask Penny anything."
    )
    # "Penny" and "Chroma" start sentences but also occur mid-sentence ("Ask Penny" is "Penny" after an
    # imperative); the multi-word name stays whole at a sentence start too; "Ask" and "Data" are dropped.
    assert entities(text) == [
        "Penny",
        "Python Software Foundation",
        "Chroma",
        "Python Software Foundation",
        "Chroma",
        "Penny",
    ]
    assert entities("Usually Guido writes it.") == ["Guido"]  # the sentence-initial word alone goes
    assert entities("Guido writes it.") == []  # nothing says this one is a name


def test_a_swap_neither_takes_nor_targets_a_sentence_initial_word() -> None:
    chunk = "However, Penny keeps its index in Chroma. Returns are cached."
    other = "Usually the Normans won. Meanwhile Portugal traded."
    donors = sorted({name for text in (chunk, other) for name in entities(text)})
    assert donors == ["Chroma", "Normans", "Penny", "Portugal"]
    for seed in range(20):
        rng = random.Random(seed)
        swapped, donor = swap_entity("Meanwhile, where does Penny keep its index?", chunk, donors, rng)  # type: ignore[misc]
        assert (
            donor in {"Normans", "Portugal"} and swapped == f"Meanwhile, where does {donor} keep its index?"
        )
    # "Meanwhile" opening a question is no name either: nothing is left to swap.
    assert swap_entity("Meanwhile, what did they build?", chunk, donors, random.Random(0)) is None
    # A question-initial name counts when the chunk uses it mid-sentence, and "Which" is dropped from
    # "Which Chroma" as "The" is from a donor, leaving the name.
    swapped, _ = swap_entity("Penny keeps which index?", chunk, ["Portugal"], random.Random(0))  # type: ignore[misc]
    assert swapped == "Portugal keeps which index?"
    swapped, _ = swap_entity("Which Chroma setting matters?", chunk, ["Portugal"], random.Random(0))  # type: ignore[misc]
    assert swapped == "Which Portugal setting matters?"


def test_a_capital_inside_an_identifier_is_not_a_name() -> None:
    # "User-Agent" swapped to "Song-Agent" reads as nonsense, which makes the probe easy to refuse.
    assert entities("Send a custom User-Agent header or an os.Path from the Python docs.") == ["Python"]


def test_a_word_swap_keeps_the_word_ending_or_swaps_nothing() -> None:
    chunk = "Arithmetic operators take numbers."
    question = "What are the types of arithmetic operators?"
    swapped = swap_entity(question, chunk, [], random.Random(0), ["dormant", "decorators"])
    assert swapped == ("What are the types of arithmetic decorators?", "decorators")
    assert swap_entity(question, chunk, [], random.Random(0), ["dormant"]) is None


def writer_app(answer_checks: str = "no", roundtrip_agrees: bool = True) -> Any:
    """The paid tier as calibration sees it: writes a question for a passage, answers it again from that
    passage alone (the round trip), writes an off-topic question, a yes/no check, and grounded answers
    (the last word of the first source for "What is the last word after …")."""
    from litestar import Litestar, post
    from litestar.params import JSONBody

    def last_word(text: str) -> str:
        return re.findall(r"[A-Za-z]{4,}", text)[-1]

    @post("/v1/chat/completions", status_code=200)
    async def chat(data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
        prompt = "\n".join(m["content"] for m in data["messages"])
        if "Write one question that this passage answers" in prompt:
            passage = prompt.split("Passage:\n", 1)[1].split("\n\nWrite one question", 1)[0]
            words = re.findall(r"[A-Za-z]{4,}", passage)
            text = f"Question: What is the last word after {words[0]}?\nAnswer: {words[-1]}"
        elif "Answer the question from the passage alone" in prompt:
            passage = prompt.split("Passage:\n", 1)[1].split("\n\nQuestion:", 1)[0]
            text = last_word(passage) if roundtrip_agrees else "Volcanoes"
        elif "Write one short factual question" in prompt:
            text = "What is the tallest mountain on Mars?"
        elif "Reply with only yes or no" in prompt:
            text = answer_checks
        elif "What is the last word after" in prompt:
            text = last_word(prompt.split("[1]", 1)[1].split("\n\n[2]", 1)[0])
        else:
            text = ABSTAIN_PHRASE
        return completion_body(data["model"], prompt, text)

    return Litestar([chat])


@pytest.fixture(scope="module")
def writer_url() -> Iterator[str]:
    with running_server(writer_app()) as url:
        yield f"{url}/v1"


@pytest.fixture
def collection_env(settings, writer_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:  # type: ignore[no-untyped-def]
    from assistant.service import Penny

    monkeypatch.setenv("PENNY_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("PENNY_MODELS__LOCAL", "smollm2-135m")
    monkeypatch.setenv("PENNY_MODELS__CACHE_DIR", str(settings.models.cache_dir))
    monkeypatch.setenv("PENNY_MODELS__MAX_TOKENS", "16")
    monkeypatch.setenv("PENNY_PAID__BASE_URL", writer_url)
    monkeypatch.setenv("PENNY_PAID__API_KEY_ENV", "NO_KEY_NEEDED")
    assert Penny(settings).ingester("team-docs").ingest([REPO / "samples"]).ok
    from assistant.settings import get_settings

    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def calibrate(*args: str) -> Any:
    return CliRunner().invoke(cli, ["calibrate", "--collection", "team-docs", "--quiet", *args])


def calibration_ledger_rows(settings: Any) -> list[Any]:
    import sqlalchemy as sa

    from assistant.ledger import open_ledger
    from assistant.ledger.schema import ledger_entries, users

    ledger = open_ledger(settings)
    with ledger.engine.connect() as conn:
        return conn.execute(
            sa.select(users.c.name, ledger_entries.c.request_id, ledger_entries.c.kind).join(
                users, users.c.id == ledger_entries.c.user_id
            )
        ).all()


def test_penny_calibrate_writes_questions_answers_them_and_charges_the_system_account(collection_env) -> None:  # type: ignore[no-untyped-def]
    """SmolLM2 never answers these right, so the fit itself must refuse, clearly; everything before it
    (writing, checking, answering, charging) is real and kept for a rerun."""
    from assistant.settings import get_settings

    result = calibrate("--questions", "12")
    settings = get_settings()
    work = settings.calibration_dir / "team-docs.run"
    questions = [json.loads(line) for line in (work / "questions.jsonl").read_text().splitlines()]
    assert len(questions) == 12 and sum(bool(q["answers"]) for q in questions) == 6
    assert {q["kind"] for q in questions if not q["answers"]} <= {"swapped", "off_topic"}
    assert sum(q["kind"] == "off_topic" for q in questions) <= 2  # capped: probes stay mostly adversarial
    assert (work / "run" / "calls.jsonl").exists(), result.output
    calls = [json.loads(line) for line in (work / "run" / "calls.jsonl").read_text().splitlines()]
    assert len(calls) == 12 and all(c["local"] and c["paid"] for c in calls)  # the real path, both tiers
    if result.exit_code != 0:  # the usual case with SmolLM2
        assert result.exit_code == 1
        assert "cannot fit the evaluator on 12 questions" in result.output
        assert "larger --questions" in result.output
        assert not collection_calibration_path(settings.calibration_dir, "team-docs").exists()
    rows = calibration_ledger_rows(settings)
    settled = [r for r in rows if r.kind == "settle"]
    assert {r.name for r in settled} == {"penny-calibrate"}  # every paid call, under the system account
    assert any(r.request_id.startswith("calibrate:write:") for r in settled)
    assert any(r.request_id.startswith("calibrate:check:") for r in settled)
    assert any(r.request_id.startswith("eval-paid-") for r in settled)
    again = calibrate("--questions", "12")  # a rerun asks nothing again
    assert again.exit_code == result.exit_code
    assert len(calibration_ledger_rows(settings)) == len(rows)
    # a refit from the ledger (no shadow labels here) counts the run's 12 labels too, and refuses: too few
    refit = CliRunner().invoke(cli, ["calibrate", "--from-ledger", "--collection", "team-docs"])
    assert refit.output.startswith("labels: 0 shadow, 0 feedback (") and ", 12 synthetic\n" in refit.output
    assert refit.exit_code == 1 and "not replacing the calibration: 12 labels" in refit.output


def test_the_cost_limit_stops_writing_and_a_rerun_resumes(collection_env) -> None:  # type: ignore[no-untyped-def]
    first = calibrate("--questions", "12", "--max-cost-usd", "0.0001")
    assert first.exit_code == 3, first.output
    assert "stopped at the cost limit" in first.output and "rerun the same command" in first.output
    from assistant.settings import get_settings

    work = get_settings().calibration_dir / "team-docs.run"
    attempts = (work / "attempts.jsonl").read_text().splitlines()
    assert attempts and not (work / "run").exists()
    resumed = calibrate("--questions", "12")
    kept = (work / "questions.jsonl").read_text().splitlines()
    assert len(kept) == 12 and (work / "run" / "calls.jsonl").exists(), resumed.output
    redone = (work / "attempts.jsonl").read_text().splitlines()
    assert redone[: len(attempts)] == attempts  # the first attempts were kept, not redone


def test_a_question_the_paid_tier_answers_differently_from_its_passage_is_not_kept(settings) -> None:  # type: ignore[no-untyped-def]
    """Round-trip consistency: a writer that, shown only the chunk, answers its own question otherwise has
    written a question or an answer that is wrong, and a wrong label would teach the evaluator wrong."""
    from assistant.ledger import open_ledger
    from assistant.paid import PaidClient
    from eval.synthetic import Chunk, QuestionWriter

    chunks = [Chunk(f"c{i}", f"{CHUNK} Chapter {i} ends with Hastings.", "doc.md") for i in range(3)]
    with running_server(writer_app(roundtrip_agrees=False)) as url:
        paid = PaidClient.from_settings(settings.paid.model_copy(update={"base_url": f"{url}/v1"}))
        assert paid is not None
        ledger = open_ledger(settings, paid_models=(settings.paid.model,))
        writer = QuestionWriter(
            paid, ledger, chunks, lambda question: [], settings.data_dir / "writer", progress=False
        )
        outcome = writer.run(2)
    assert not any(q.answers for q in outcome.questions)
    attempts = [
        json.loads(a) for a in (settings.data_dir / "writer" / "attempts.jsonl").read_text().splitlines()
    ]
    answerable = [a for a in attempts if a["kind"] == "answerable"]
    assert answerable and {a["rejected"] for a in answerable} == {"not_roundtrip"}
    assert outcome.rejected["not_roundtrip"] == len(answerable)


def test_calibrate_needs_a_paid_tier_and_a_non_empty_collection(settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from assistant.settings import get_settings

    monkeypatch.setenv("PENNY_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("PENNY_PAID__BASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["calibrate", "--collection", "team-docs"])
        assert result.exit_code == 1 and "needs the paid tier" in result.output
        missing = CliRunner().invoke(cli, ["calibrate"])
        assert missing.exit_code == 2
        assert "pass --collection NAME, --from-ledger, --show or --default" in missing.output
    finally:
        get_settings.cache_clear()


def test_a_collection_calibration_is_reloaded_when_rewritten_and_ignored_when_broken(
    tmp_path: Path, caplog
) -> None:  # type: ignore[no-untyped-def]
    default = Calibration.load()
    calibrations = Calibrations(default, tmp_path)
    path = collection_calibration_path(tmp_path, "docs")
    first = Calibration.from_dict({**default.to_dict(), "intercept": 1.0})
    first.save(path)
    assert calibrations.for_collection("docs").intercept == 1.0
    second = Calibration.from_dict({**default.to_dict(), "intercept": 2.0})
    second.save(path)
    import os

    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))  # a refit lands: new mtime
    assert calibrations.for_collection("docs").intercept == 2.0
    path.write_text("{not json")
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 10))
    assert calibrations.for_collection("docs") is default
    assert "using the default calibration" in caplog.text
    assert calibrations.for_collection("../etc") is default  # not a collection name: never a path
