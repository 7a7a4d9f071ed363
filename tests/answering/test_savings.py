"""Each answer's paid-only cost, recorded by the cascade: a local answer's is what the paid tier would have
been sent for it (counted by tiktoken) plus its answer, at the paid model's price; a paid answer's is its
charge; without a paid tier it is unknown. Real parts (SmolLM2, MiniLM, the ledger on SQLite) and the
scripted paid upstream, which shows the prompt the paid tier actually gets."""

from __future__ import annotations

from pathlib import Path

from assistant.answering.cascade import Cascade
from assistant.answering.decision import Policy
from assistant.answering.judge.evaluator import Evaluator
from assistant.calibration import Calibration
from assistant.ledger import Ledger, PriceTable, Usage
from assistant.local.model import LocalModel
from assistant.paid import PaidClient
from assistant.paid.tokens import count_messages, count_text
from assistant.settings import CascadeSettings
from tests.support.answering import PASSAGES, QUESTION
from tests.support.fake_paid import FakePaid, Reply


def _cascade(tiny_model: LocalModel, embedder: object, ledger: Ledger, paid_url: str | None) -> Cascade:
    paid = PaidClient(paid_url, "gpt-4o-mini", "sk-test", max_retries=0, max_tokens=32) if paid_url else None

    def no_retrieval(collection: str | None) -> object:
        raise AssertionError("these questions come with their passages")

    return Cascade(
        retriever=no_retrieval,  # type: ignore[arg-type]
        local=tiny_model,
        evaluator=Evaluator(Calibration.load(), embedder),  # type: ignore[arg-type]
        policy=Policy.from_settings(CascadeSettings()),
        paid=paid,
        ledger=ledger,
        local_model_name="smollm2-135m",
        max_tokens=24,
    )


def test_a_local_answer_records_what_the_paid_tier_would_have_cost(
    tiny_model: LocalModel, embedder: object, paid_server: tuple[FakePaid, str], tmp_path: Path
) -> None:
    fake, url = paid_server
    fake.reset()
    fake.default = Reply(text="France [1].", prompt_tokens=250, completion_tokens=4)
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", PriceTable.load())
    try:
        cascade = _cascade(tiny_model, embedder, ledger, url)
        local = cascade.answer(QUESTION, passages=PASSAGES, mode="local", request_id="local")
        paid = cascade.answer(QUESTION, passages=PASSAGES, mode="paid", request_id="paid")
        local_row, paid_row = ledger.answer("local"), ledger.answer("paid")
    finally:
        ledger.close()
    assert local.tier == "local" and paid.tier == "paid"
    [sent] = fake.requests  # only the paid answer reached the paid tier: this is the prompt it gets
    would_send = [{"role": m["role"], "content": m["content"]} for m in sent.body["messages"]]
    usage = Usage(count_messages(would_send), count_text(local.answer))
    assert usage.prompt_tokens > 50 and usage.completion_tokens > 0
    # gpt-4o-mini: $0.15 per 1M input tokens, $0.60 per 1M output, rounded up to a whole micro-USD
    by_hand = -(-(usage.prompt_tokens * 150_000 + usage.completion_tokens * 600_000) // 1_000_000)
    assert local_row is not None and local_row["paid_only_micro_usd"] == by_hand > 0
    # a paid answer's paid-only cost is its own charge: 250 x 0.15 + 4 x 0.6 = 37.5 + 2.4 -> 40
    assert paid_row is not None and paid_row["paid_only_micro_usd"] == paid_row["paid_cost_micro_usd"] == 40


def test_without_a_paid_tier_the_paid_only_cost_is_unknown_not_zero(
    tiny_model: LocalModel, embedder: object, tmp_path: Path
) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", PriceTable.load())
    try:
        cascade = _cascade(tiny_model, embedder, ledger, None)
        cascade.answer(QUESTION, passages=PASSAGES, mode="local", request_id="alone")
        row = ledger.answer("alone")
    finally:
        ledger.close()
    assert row is not None and row["tier"] == "local" and row["paid_only_micro_usd"] is None
