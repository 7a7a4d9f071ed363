"""``eval run --batch``: the same run's paid calls sent live and as one batch, on real parts (the Cascade, the
SQLite ledger, Chroma and the embedder); the only double is the paid tier, here its chat endpoint and its
Batch API, both answering each question with its gold answer and the same token counts.

The 200-question run asks the paid config only (no local generation: its cost is what batching changes);
the batch's failures (a failed batch, an expired one) run on a few questions, whose degraded answers are
generated locally by SmolLM2.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from assistant.answering.prompt.grounded import ABSTAIN_PHRASE
from assistant.ledger.schema import answers, reservations
from eval.configs import parse_configs
from eval.datasets import Dataset, EvalQuestion, load_dataset
from eval.records import load_records
from eval.runs import EvalRun
from tests.support.fake_batch import FakeBatchAPI, length_tokens
from tests.support.servers import running_server

MINI = Path(__file__).parents[1] / "data" / "squad2-mini.json"
# Ways of asking each of the mini set's 36 questions: 6 x 36 = 216, of which the run takes 200.
ASKED = ("", "According to the sources, ", "Briefly: ", "In a few words, ", "From the text, ", "Say: ")


def two_hundred(mini: Dataset) -> list[EvalQuestion]:
    questions = [
        replace(q, id=f"{q.id}-{n}", question=f"{prefix}{q.question}")
        for n, prefix in enumerate(ASKED)
        for q in mini.questions
    ]
    return questions[:200]


@pytest.fixture(scope="module")
def mini() -> Dataset:
    return load_dataset(MINI)


@pytest.fixture(scope="module")
def paid_api(mini: Dataset) -> Iterator[tuple[FakeBatchAPI, str]]:
    gold = {q.question: (f"{q.answers[0]} [1]" if q.answers else ABSTAIN_PHRASE) for q in two_hundred(mini)}

    def text_for(prompt: str) -> str:
        return gold.get(prompt.rsplit("Question:", 1)[-1].strip(), ABSTAIN_PHRASE)

    fake = FakeBatchAPI(length_tokens(text_for), polls_before_end=1)
    with running_server(fake.app) as url:
        yield fake, f"{url}/v1"


@pytest.fixture(scope="module")
def answerer(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, paid_api: Any, mini: Dataset):  # type: ignore[no-untyped-def]
    from assistant.settings import Settings
    from eval.answerer import build_answerer

    tmp = tmp_path_factory.mktemp("batch-eval")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PENNY_CONFIG", str(tmp / "absent.toml"))
        settings = Settings(
            data_dir=tmp / "data",
            models={"local": "smollm2-135m", "cache_dir": model_cache, "n_ctx": 2048, "max_tokens": 16},
            index={"top_k": 2},
            # The stand-in priced as gpt-4o: its batch prices come from gpt-4o's through priced_as.
            paid={
                "base_url": paid_api[1],
                "model": "qwen2.5-1.5b",
                "max_retries": 0,
                "batch_poll_interval_s": 0.01,
            },
        )
    answerer, meta = build_answerer(settings, mini, None, ["local", "paid"], batch=True)
    assert meta["paid_batch"] is True
    yield answerer
    answerer.ledger.close()


def paid_calls(out: Path) -> dict[str, Any]:
    return {r.id: r.paid for r in load_records(out / "calls.jsonl")}


def test_a_batched_run_of_200_costs_half_the_live_one_with_the_same_answers(
    answerer: Any, mini: Dataset, paid_api: Any, tmp_path: Path
) -> None:
    fake, _ = paid_api
    questions, configs = two_hundred(mini), parse_configs(["paid"])
    chats_before = fake.chat_calls
    live = EvalRun(questions, answerer, tmp_path / "live", configs, progress=False).run()
    assert fake.chat_calls - chats_before == 200
    batches_before = len(fake.batches)
    batched = EvalRun(questions, answerer, tmp_path / "batch", configs, progress=False, batch=True).run()
    assert len(fake.batches) - batches_before == 1  # one batch for the 200 paid calls
    assert fake.chat_calls - chats_before == 200  # and no live call

    live_calls, batch_calls = paid_calls(tmp_path / "live"), paid_calls(tmp_path / "batch")
    assert len(live_calls) == len(batch_calls) == 200 and live.complete and batched.complete
    assert {i: c.answer for i, c in batch_calls.items()} == {i: c.answer for i, c in live_calls.items()}
    assert all(c.tier == "paid" and not c.degraded for c in batch_calls.values())
    live_spend = sum(c.cost_micro_usd for c in live_calls.values())
    batch_spend = sum(c.cost_micro_usd for c in batch_calls.values())
    ratio = batch_spend / live_spend
    print(f"paid spend: live ${live_spend / 1e6:.6f}, batch ${batch_spend / 1e6:.6f}: {ratio:.1%}")
    assert ratio <= 0.55
    assert batched.spent_micro_usd == batch_spend

    ledger = answerer.ledger
    assert ledger.check_balances() == []
    ids = [c.request_id for c in batch_calls.values()]
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            sa.select(reservations.c.model, reservations.c.state, sa.func.count())
            .where(reservations.c.request_id.in_(ids))
            .group_by(reservations.c.model, reservations.c.state)
        ).all()
        models = conn.execute(
            sa.select(answers.c.paid_model, answers.c.reason).where(answers.c.request_id == ids[0])
        ).one()
    assert [tuple(r) for r in rows] == [("qwen2.5-1.5b:batch", "settled", 200)]
    assert models == ("qwen2.5-1.5b:batch", "batch (mode=paid)")
    by_model = {row.key: row for row in ledger.usage(by="model")}
    assert by_model["qwen2.5-1.5b:batch"].cost_micro_usd == batch_spend
    assert by_model["qwen2.5-1.5b"].cost_micro_usd == live_spend


@pytest.mark.parametrize("ending", ["failed", "expired"])
def test_a_batch_that_does_not_answer_releases_its_holds_and_keeps_the_local_answers(
    ending: str, answerer: Any, mini: Dataset, paid_api: Any, tmp_path: Path
) -> None:
    fake, _ = paid_api
    fake.ending, fake.answer_first = ending, 1
    try:
        questions = mini.sample(3, seed=5).questions
        run = EvalRun(
            questions,
            answerer,
            tmp_path / ending,
            parse_configs(["local", "paid"]),
            progress=False,
            batch=True,
        ).run()
    finally:
        fake.ending, fake.answer_first = "completed", 0
    records = {r.id: r for r in run.records}
    assert len(records) == 3 and run.complete
    paid = [records[q.id].paid for q in questions]
    answered = [c for c in paid if not c.degraded]
    want = "batch_failed" if ending == "failed" else "batch_expired"
    # failed: nothing answered; expired: the batch finished the first request only.
    assert len(answered) == (0 if ending == "failed" else 1)
    for call in paid:
        if call.degraded:
            assert call.tier in ("local", "none") and call.cost_micro_usd > 0  # generated locally instead
            assert call.reason.startswith(f"upstream_failed: {want} (escalation: batch (mode=paid))")
    ledger = answerer.ledger
    assert ledger.check_balances() == []
    with ledger.engine.connect() as conn:
        states = conn.execute(
            sa.select(reservations.c.state, reservations.c.note).where(
                reservations.c.request_id.in_([c.request_id for c in paid])
            )
        ).all()
    assert sorted(s for s, _ in states) == sorted(
        ["released"] * (3 - len(answered)) + ["settled"] * len(answered)
    )
    assert all(note.startswith(want) for state, note in states if state == "released")


def test_the_cost_limit_holds_each_batched_call_at_its_batch_worst_case_and_a_rerun_resumes(
    answerer: Any, mini: Dataset, paid_api: Any, tmp_path: Path
) -> None:
    fake, _ = paid_api
    questions = mini.sample(3, seed=3).questions
    worst = [answerer.paid_worst_case_micro_usd(q.question, answerer.retrieve(q.question)) for q in questions]
    live_worst = answerer.ledger.prices.worst_case_micro_usd(
        "qwen2.5-1.5b", answerer.paid.reserve_prompt_tokens([{"role": "user", "content": "x"}]), 256
    )
    assert worst[0] < live_worst  # priced at batch prices, not the live ones
    limit = worst[0] + worst[1]  # room for two batch worst cases held together, not three
    out, configs = tmp_path / "run", parse_configs(["paid"])
    batches_before = len(fake.batches)
    stopped = EvalRun(
        questions, answerer, out, configs, max_cost_micro_usd=limit, progress=False, batch=True
    ).run()
    assert stopped.stopped is not None and "would exceed --max-cost-usd" in stopped.stopped
    assert len(stopped.records) == 2 and stopped.spent_micro_usd <= limit
    assert len(fake.batches) - batches_before == 1
    records = load_records(out / "calls.jsonl")
    assert [r.complete for r in records] == [True, True, False] and records[-1].paid is None

    resumed = EvalRun(
        questions, answerer, out, configs, max_cost_micro_usd=limit * 10, progress=False, batch=True
    ).run()
    assert resumed.complete and resumed.asked == 1 and len(resumed.records) == 3
    assert len(fake.batches) - batches_before == 2  # the resumed question alone, in a batch of its own


def test_an_escalation_over_budget_keeps_its_local_answer_and_refuse_releases_every_hold(
    answerer: Any, mini: Dataset, paid_api: Any, tmp_path: Path
) -> None:
    from assistant.ledger import BudgetExceeded, Principal

    ledger = answerer.ledger
    user = ledger.add_user("batch-budget")
    questions = mini.sample(3, seed=7).questions
    worst = [answerer.paid_worst_case_micro_usd(q.question, answerer.retrieve(q.question)) for q in questions]
    ledger.set_budget("batch-budget", sum(sorted(worst)[:2]), "total")  # two holds fit, not three
    answerer.principal = Principal(user.id, user.name)
    try:
        run = EvalRun(
            questions, answerer, tmp_path / "over", parse_configs(["paid"]), progress=False, batch=True
        ).run()
        paid = [r.paid for r in run.records]
        assert sum(c.tier == "paid" for c in paid) == 2
        (kept,) = [c for c in paid if c.tier != "paid"]
        assert kept.degraded and kept.reason.startswith("budget_exhausted (escalation: batch (mode=paid))")

        answerer.cascade.escalation.budget_policy = "refuse"
        with pytest.raises(BudgetExceeded):
            EvalRun(
                questions, answerer, tmp_path / "refused", parse_configs(["paid"]), progress=False, batch=True
            ).run()
    finally:
        answerer.principal = None
        answerer.cascade.escalation.budget_policy = "local_only"
    assert ledger.check_balances() == []
    with ledger.engine.connect() as conn:
        held = conn.execute(
            sa.select(reservations.c.state).where(
                reservations.c.user_id == user.id, reservations.c.state == "open"
            )
        ).all()
        cancelled = conn.execute(
            sa.select(sa.func.count()).where(
                reservations.c.user_id == user.id, reservations.c.note == "cancelled (after send)"
            )
        ).scalar()
    assert held == [] and cancelled == 1  # the refused run released the hold it made before the refusal
