"""Batch prices: the price table's Batch API prices, and a batch call reserved, settled and released at them
on both backends like any other paid call, under its own model name."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from assistant.ledger import AnswerRecord, Ledger, PriceTable, PriceTableError, UnknownModelPrice, Usage

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices

TABLE = {
    "version": "v1",
    "local": {"usd_per_hour": 0.1},
    "storage": {"usd_per_gb_month": 0.08, "source": "x"},
}
ENTRY = {"input": 1, "cached_input": 0.5, "output": 2, "source": "x", "effective": date(2024, 1, 1)}


def test_bundled_batch_prices_are_half_the_list_prices_and_the_stand_in_inherits_gpt_4os(
    prices: PriceTable,
) -> None:
    big, mini = prices.price(prices.batch_model("gpt-4o")), prices.price(prices.batch_model("gpt-4o-mini"))
    assert (big.model, big.input_micro_usd_per_1m, big.output_micro_usd_per_1m) == (
        "gpt-4o:batch",
        1_250_000,
        5_000_000,
    )
    assert (mini.input_micro_usd_per_1m, mini.output_micro_usd_per_1m) == (75_000, 300_000)
    assert big.cached_input_micro_usd_per_1m == big.input_micro_usd_per_1m  # no discount assumed on top
    stand_in = prices.price(prices.batch_model("qwen2.5-1.5b"))
    assert stand_in.model == "qwen2.5-1.5b:batch" and stand_in.priced_as == "gpt-4o"
    assert (stand_in.input_micro_usd_per_1m, stand_in.output_micro_usd_per_1m) == (1_250_000, 5_000_000)
    assert "not a real charge" in stand_in.source
    assert prices.batch_model("gpt-4o-2024-08-06") == "gpt-4o:batch"  # an alias batches as its model
    usage = Usage(10_000, 500)
    assert prices.cost_micro_usd("gpt-4o:batch", usage) == 15_000  # 12_500 + 2_500
    assert prices.cost_micro_usd("gpt-4o", usage) == 30_000


def test_batch_prices_go_together_and_a_model_without_them_cannot_be_batched() -> None:
    with pytest.raises(PriceTableError, match="batch_input and batch_output go together"):
        PriceTable.from_dict({**TABLE, "models": {"m": {**ENTRY, "batch_input": 0.5}}})
    table = PriceTable.from_dict({**TABLE, "models": {"m": ENTRY}})
    with pytest.raises(UnknownModelPrice, match=r"no batch price for model 'm'.*without --batch"):
        table.batch_model("m")
    with pytest.raises(UnknownModelPrice, match="no price for model 'n'"):
        table.price("n:batch")
    batched = PriceTable.from_dict(
        {**TABLE, "models": {"m": {**ENTRY, "batch_input": 0.5, "batch_output": 1}}}
    )
    assert batched.cost_micro_usd(batched.batch_model("m"), Usage(1_000_000, 1_000_000)) == 1_500_000


def test_a_batch_call_is_reserved_settled_and_released_at_batch_prices(ledger: Ledger) -> None:
    user = ledger.system_user()
    model = ledger.prices.batch_model("gpt-4o")
    answered = ledger.reserve(
        request_id="b1", principal=user, model=model, prompt_tokens=1000, max_completion_tokens=100, sent=True
    )
    expired = ledger.reserve(
        request_id="b2", principal=user, model=model, prompt_tokens=1000, max_completion_tokens=100, sent=True
    )
    assert answered.worst_case_micro_usd == 1250 + 500  # half gpt-4o's 2500 + 1000
    assert ledger.settle(answered, Usage(900, 40)) == 1125 + 200
    ledger.release(expired, "batch_expired")
    assert ledger.check_balances() == []
    by_model = {row.key: row for row in ledger.usage(by="model")}
    assert by_model["gpt-4o:batch"].cost_micro_usd == 1325


def test_a_batch_answer_saves_the_batch_discount_against_paid_only(ledger: Ledger) -> None:
    user = ledger.system_user()
    live = ledger.reserve(
        request_id="l1",
        principal=user,
        model="gpt-4o",
        prompt_tokens=900,
        max_completion_tokens=40,
        sent=True,
    )
    batch = ledger.reserve(
        request_id="b1",
        principal=user,
        model=ledger.prices.batch_model("gpt-4o"),
        prompt_tokens=900,
        max_completion_tokens=40,
        sent=True,
    )
    for held in (live, batch):
        answer = AnswerRecord(held.request_id, user, "paid", escalated=True, paid_model=held.model)
        ledger.settle(held, Usage(900, 40), answer=answer)
    # gpt-4o live: 900 x 2.50 + 40 x 10.00 = 2250 + 400 = 2650 micro-USD; batch: half, 1325.
    assert ledger.answer("l1")["paid_only_micro_usd"] == 2650  # a live paid answer saves nothing
    assert ledger.answer("b1")["paid_only_micro_usd"] == 2650  # the same answer live: paid-only
    by_model = {row.key: row for row in ledger.usage(by="model")}
    assert by_model["gpt-4o"].saved_micro_usd == 0
    assert by_model["gpt-4o:batch"].saved_micro_usd == 2650 - 1325  # the batch discount, counted


def test_a_batch_kept_open_outlives_the_ttl_and_is_recovered_once_its_process_stops(ledger: Ledger) -> None:
    class Clock:
        now = datetime(2026, 3, 1, 12, 0)

        def __call__(self) -> datetime:
            return self.now

    clock = Clock()
    ledger.clock = clock
    user = ledger.system_user()
    model = ledger.prices.batch_model("gpt-4o")
    held = [
        ledger.reserve(
            request_id=f"b{i}",
            principal=user,
            model=model,
            prompt_tokens=1000,
            max_completion_tokens=100,
            sent=True,
        )
        for i in range(2)
    ]
    for minutes in (4, 8, 12):  # the batch runs 12 minutes, its waiter polling: past the 5-minute TTL
        clock.now = datetime(2026, 3, 1, 12, minutes)
        assert ledger.keep_open([h.request_id for h in held]) == 2
        assert ledger.recover_stale().settled_worst_case == []
    assert ledger.settle(held[0], Usage(900, 40)) == 1125 + 200  # its result came: the actual batch cost
    clock.now = datetime(2026, 3, 1, 12, 18)  # the waiter died after its last poll at 12:12
    report = ledger.recover_stale()
    assert report.settled_worst_case == ["b1"]  # sent: charged its worst case, flagged
    assert ledger.keep_open(["b0", "b1"]) == 0  # closed ones stay closed
    assert ledger.check_balances() == []
