"""Eval runs end to end on real parts: SmolLM2 local tier, real Chroma, the real Cascade and SQLite ledger.

The only double is the paid upstream: a loopback OpenAI-compatible server that answers each question with
its gold answer (or the abstention phrase) and reports token usage, so costs flow through the real
reserve → settle path and are read back from the ledger.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from assistant.answering.decision import Decision, route
from assistant.answering.judge.evaluator import Judgement
from assistant.answering.prompt.grounded import ABSTAIN_PHRASE
from eval.configs import parse_configs
from eval.datasets import Dataset, load_dataset
from eval.errors import RunError
from eval.records import TierCall, load_records
from eval.runs import EvalRun, read_results
from index.retrieval import Passage
from tests.support.fake_paid import completion_body
from tests.support.servers import running_server

MINI = Path(__file__).parents[1] / "data" / "squad2-mini.json"
CONFIGS = ("local", "paid", "cascade", "cascade@0.3", "sweep")


def fake_upstream_app(answers: dict[str, str]) -> Any:
    """OpenAI-compatible /v1/chat/completions answering from ``answers`` (question → text)."""
    from litestar import Litestar, post
    from litestar.params import JSONBody

    @post("/v1/chat/completions", status_code=200)
    async def chat(data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
        prompt = "\n".join(m["content"] for m in data["messages"])
        question = prompt.rsplit("Question:", 1)[-1].strip()
        text = answers.get(question, ABSTAIN_PHRASE)
        return completion_body(data["model"], prompt, text)

    return Litestar([chat])


@pytest.fixture(scope="module")
def mini() -> Dataset:
    return load_dataset(MINI)


@pytest.fixture(scope="module")
def upstream_url(mini: Dataset) -> Iterator[str]:
    gold = {q.question: (f"{q.answers[0]} [1]" if q.answers else ABSTAIN_PHRASE) for q in mini.questions}
    with running_server(fake_upstream_app(gold)) as url:
        yield f"{url}/v1"


@pytest.fixture(scope="module")
def eval_settings(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, upstream_url: str):  # type: ignore[no-untyped-def]
    """Settings in a module tmp dir: SmolLM2 on one thread (the CI machine's 2 cores are shared)."""
    from assistant.settings import Settings

    tmp = tmp_path_factory.mktemp("eval")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PENNY_CONFIG", str(tmp / "absent.toml"))
        yield Settings(
            data_dir=tmp / "data",
            models={
                "local": "smollm2-135m",
                "cache_dir": model_cache,
                "n_ctx": 2048,
                "max_tokens": 24,
                "n_threads": 1,
            },
            index={"top_k": 2},  # short prompts: llama.cpp prompt time dominates these tests
            paid={"base_url": upstream_url, "model": "gpt-4o-mini", "max_retries": 0},
        )


@pytest.fixture(scope="module")
def answerer(eval_settings, mini: Dataset):  # type: ignore[no-untyped-def]
    from eval.answerer import build_answerer

    answerer, _meta = build_answerer(eval_settings, mini, None, CONFIGS)
    yield answerer
    answerer.ledger.close()


@pytest.fixture(scope="module")
def complete_run(answerer: Any, mini: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One finished 3-question run, shared by the tests that only read it."""
    return _run(mini.sample(3, seed=5).questions, answerer, tmp_path_factory.mktemp("complete") / "run")


class Recording:
    """Delegates to the real answerer, remembers which questions were asked, and can crash on demand."""

    def __init__(self, inner: Any, crash_on_local_call: int | None = None) -> None:
        self.inner = inner
        self.policy = inner.policy
        self.crash_on = crash_on_local_call
        self.local_asked: list[str] = []
        self.paid_asked: list[str] = []

    def retrieve(self, question: str) -> list[Passage]:
        return self.inner.retrieve(question)

    def answer_local(
        self, question: str, passages: Sequence[Passage], request_id: str
    ) -> tuple[TierCall, Judgement, Decision | None]:
        if self.crash_on is not None and len(self.local_asked) + 1 == self.crash_on:
            raise RuntimeError("simulated crash")
        self.local_asked.append(question)
        return self.inner.answer_local(question, passages, request_id)

    def paid_worst_case_micro_usd(self, question: str, passages: Sequence[Passage]) -> int:
        return self.inner.paid_worst_case_micro_usd(question, passages)

    def answer_paid(self, question: str, passages: Sequence[Passage], request_id: str) -> TierCall:
        self.paid_asked.append(question)
        return self.inner.answer_paid(question, passages, request_id)


def _run(
    questions: Sequence[Any], answerer: Any, out: Path, names: Sequence[str] = CONFIGS, **kwargs: Any
) -> Any:
    configs = parse_configs(names)
    return EvalRun(questions, answerer, out, configs, progress=False, **kwargs).run()


def test_crashed_run_resumes_asking_only_the_remaining_questions(
    answerer: Any, mini: Dataset, tmp_path: Path
) -> None:
    questions = mini.sample(3, seed=1).questions
    out = tmp_path / "run"
    crashing = Recording(answerer, crash_on_local_call=2)  # question 1 completes, the 2nd crashes
    with pytest.raises(RuntimeError, match="simulated crash"):
        _run(questions, crashing, out)
    assert [r.id for r in load_records(out / "calls.jsonl")] == [questions[0].id]

    resumed = Recording(answerer)
    outcome = _run(questions, resumed, out)
    assert resumed.local_asked == [q.question for q in questions[1:]]  # only the remaining ones
    assert resumed.paid_asked == [q.question for q in questions[1:]]
    assert outcome.asked == 2 and outcome.complete
    assert [r.id for r in outcome.records] == [q.id for q in questions]

    rows = read_results(out / "results.jsonl")
    n_configs = len(parse_configs(CONFIGS))
    assert len(rows) == 3 * n_configs
    assert len({(r["config"], r["id"]) for r in rows}) == len(rows)  # each (config, question) once

    # Every config derives from the same two calls: costs are the ledger's, read back by request id.
    records = {r.id: r for r in outcome.records}
    # Each record carries the policy in force and the route the service would have taken before generating.
    assert json.loads((out / "run.json").read_text())["policy"] == asdict(answerer.policy)
    for r in outcome.records:
        assert r.policy == answerer.policy and r.judgement is not None
        assert r.route == route(r.judgement.features["retrieval_top"], bool(r.retrieved_ids), r.policy)
    ledger = answerer.ledger
    for row in rows:
        record = records[row["id"]]
        expected = sum(
            (ledger.answer(rid)["local_cost_micro_usd"] + ledger.answer(rid)["paid_cost_micro_usd"])
            for rid in row["request_ids"]
        )
        assert row["cost_micro_usd"] == expected
        if row["config"] == "local":
            assert row["request_ids"] == [record.local.request_id] and row["tier"] == "local"
        if row["config"] == "paid":
            assert row["request_ids"] == [record.paid.request_id] and row["tier"] == "paid"
            assert row["paid_call"] and row["cost_micro_usd"] > 0
        if row["config"] == "cascade@0.00" and not record.judgement.local_abstained:
            assert row["request_ids"] == [record.local.request_id]  # T=0: every judged answer stays local
        judgement = record.judgement
        gated = judgement.p_answerable is not None and judgement.p_answerable < judgement.abstain_below
        if gated:  # the answerable gate abstains after the local call, whatever T
            assert row["config"] in ("local", "paid") or row["request_ids"] == [record.local.request_id]
        elif row["config"] == "cascade@1.00" and judgement.p_correct < 1.0:
            assert row["request_ids"] == [record.local.request_id, record.paid.request_id]
            assert row["cost_micro_usd"] == record.local.cost_micro_usd + record.paid.cost_micro_usd
    # The paid tier answered with the gold answer, so paid-only scores (near) perfectly: F1 from real data.
    paid_f1 = [r["f1"] for r in rows if r["config"] == "paid"]
    assert sum(paid_f1) / len(paid_f1) == pytest.approx(1.0)


def test_resume_refuses_a_directory_holding_other_questions(
    answerer: Any, mini: Dataset, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    _run(mini.sample(2, seed=1).questions, answerer, out, max_cost_micro_usd=0)
    with pytest.raises(RunError, match="different questions"):
        _run(mini.sample(2, seed=2).questions, answerer, out)


def test_cost_stop_never_lets_a_paid_call_overspend(answerer: Any, mini: Dataset, tmp_path: Path) -> None:
    # Paid-only, so the stop point depends on the paid tier's deterministic token counts (not on how fast
    # this shared CPU generates locally), and a paid-only run never calls the local tier.
    questions = mini.sample(3, seed=3).questions
    first = questions[0]
    worst = answerer.paid_worst_case_micro_usd(first.question, answerer.retrieve(first.question))
    # Room for the first question's worst case; after its actual spend (its prompt tokens), the second
    # question's worst case (its prompt plus 256 output tokens) no longer fits.
    limit = worst + 1
    recording = Recording(answerer)
    out = tmp_path / "run"
    outcome = _run(questions, recording, out, ["paid"], max_cost_micro_usd=limit)
    assert recording.local_asked == []

    assert outcome.stopped is not None and "would exceed --max-cost-usd" in outcome.stopped
    assert len(outcome.records) == 1
    assert outcome.spent_micro_usd <= limit
    # Each paid call happened only with its worst case still inside the limit.
    assert len(recording.paid_asked) == len(outcome.records)
    # The run's spend is exactly what the ledger recorded for its requests (partial question included).
    all_records = load_records(out / "calls.jsonl")
    ledger_total = sum(
        answerer.ledger.answer(c.request_id)["local_cost_micro_usd"]
        + answerer.ledger.answer(c.request_id)["paid_cost_micro_usd"]
        for r in all_records
        for c in (r.local, r.paid)
        if c is not None
    )
    assert ledger_total == outcome.spent_micro_usd
    assert all_records[-1].complete is False and all_records[-1].paid is None  # the question it stopped on

    # Re-running with a higher limit continues from there and finishes.
    resumed = Recording(answerer)
    outcome = _run(questions, resumed, out, ["paid"], max_cost_micro_usd=limit * 100)
    assert outcome.complete and len(outcome.records) == len(questions)
    assert len(resumed.paid_asked) == len(questions) - len(recording.paid_asked)


def test_torn_calls_line_is_cut_off_and_the_question_asked_again(
    answerer: Any, mini: Dataset, complete_run: Any, tmp_path: Path
) -> None:
    import shutil

    out = tmp_path / "run"
    shutil.copytree(complete_run.out_dir, out)
    by_id = {q.id: q for q in mini.questions}
    questions = [by_id[r.id] for r in complete_run.records]
    calls = out / "calls.jsonl"
    lines = calls.read_text().splitlines(keepends=True)
    calls.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # crash mid-write of the last
    recording = Recording(answerer)
    outcome = _run(questions, recording, out)
    assert recording.local_asked == [questions[-1].question]
    assert [json.loads(line)["id"] for line in calls.read_text().splitlines()] == [q.id for q in questions]
    assert outcome.complete


def test_report_and_frontier_are_written(complete_run: Any) -> None:
    from eval.report import write_report

    outcome = complete_run
    out = outcome.out_dir
    report, frontier = write_report(out, outcome.records, outcome.configs, {"dataset": "squad2-mini"})
    text = report.read_text()
    for name in ("| local |", "| paid |", "| cascade |", "| cascade@0.30 |", "| cascade@0.50 |"):
        assert name in text
    assert "Savings vs `paid`" in text and "How the numbers are derived" in text
    assert "recall@2" in text  # top_k=2 in these settings
    assert frontier is not None and frontier.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert frontier.stat().st_size > 10_000


def test_paid_answers_are_reused_from_an_earlier_run_where_retrieval_matches(
    answerer: Any, complete_run: Any, tmp_path: Path
) -> None:
    """``--paid-from``: a rerun after a local-tier change asks only the local tier again, and asks the
    paid tier where a question now retrieves other passages, or where the earlier paid call failed."""
    earlier = load_records(complete_run.out_dir / "calls.jsonl")
    moved, failed = earlier[0].id, earlier[1].id
    stale = [r if r.id != moved else replace(r, retrieved_ids=["elsewhere"]) for r in earlier]
    stale = [
        r if r.id != failed or r.paid is None else replace(r, paid=replace(r.paid, degraded=True))
        for r in stale
    ]
    recording = Recording(answerer)
    questions = [q for q in load_dataset(MINI).questions if q.id in {r.id for r in earlier}]
    outcome = _run(questions, recording, tmp_path / "again", paid_from=stale)

    assert sorted(recording.local_asked) == sorted(q.question for q in questions)
    asked_again = [q.question for q in questions if q.id in (moved, failed)]
    assert sorted(recording.paid_asked) == sorted(asked_again)
    by_id = {r.id: r for r in outcome.records}
    for r in earlier:
        if r.id not in (moved, failed):
            assert by_id[r.id].paid == r.paid
