"""Ledger basics on both backends: prices, migrations, users and keys, budgets and windows, answers, usage."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from assistant.ledger import (
    AlreadyExists,
    AnswerRecord,
    BudgetExceeded,
    Ledger,
    NotFound,
    PriceTable,
    PriceTableError,
    SchemaTooNew,
    UnknownModelPrice,
    Usage,
    migrations,
    open_ledger,
)
from assistant.ledger.engine import create_ledger_engine
from assistant.ledger.schema import api_keys, schema_version

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices


# -- price table (no database) ----------------------------------------------------------------------


def test_bundled_prices_are_list_prices_in_micro_usd(prices: PriceTable) -> None:
    mini, big = prices.price("gpt-4o-mini"), prices.price("gpt-4o")
    assert (
        mini.input_micro_usd_per_1m,
        mini.cached_input_micro_usd_per_1m,
        mini.output_micro_usd_per_1m,
    ) == (
        150_000,
        75_000,
        600_000,
    )
    assert (big.input_micro_usd_per_1m, big.cached_input_micro_usd_per_1m, big.output_micro_usd_per_1m) == (
        2_500_000,
        1_250_000,
        10_000_000,
    )
    reference = prices.price("qwen2.5-1.5b")
    assert reference.priced_as == "gpt-4o"
    assert reference.output_micro_usd_per_1m == big.output_micro_usd_per_1m
    assert prices.price("gpt-4o-mini-2024-07-18") is mini  # provider snapshot names are aliases
    assert prices.version


def test_cost_rounds_up_per_call_and_bills_cached_tokens_once(prices: PriceTable) -> None:
    # 1 output token of gpt-4o-mini is 0.6 micro-USD: charged as 1, never 0.
    assert prices.cost_micro_usd("gpt-4o-mini", Usage(0, 1)) == 1
    assert prices.cost_micro_usd("gpt-4o-mini", Usage(0, 0)) == 0
    # Cached tokens are part of the prompt at half price, not added on top (LiteLLM #6215).
    full = prices.cost_micro_usd("gpt-4o", Usage(1000, 0))
    cached = prices.cost_micro_usd("gpt-4o", Usage(1000, 0, cached_prompt_tokens=1000))
    assert (full, cached) == (2500, 1250)
    assert prices.worst_case_micro_usd("gpt-4o", 1000, 100) == 2500 + 1000
    with pytest.raises(ValueError, match="cannot exceed"):
        Usage(10, 0, cached_prompt_tokens=11)


def test_local_tier_is_priced_by_instance_time(prices: PriceTable) -> None:
    assert prices.local_micro_usd_per_hour == 85_000  # $0.085/h
    assert prices.local_cost_micro_usd(3600) == 85_000
    assert prices.local_cost_micro_usd(1.0) == 24  # 23.6 micro-USD, rounded up
    assert prices.local_cost_micro_usd(2.0, micro_usd_per_hour=36_000) == 20
    with pytest.raises(ValueError):
        prices.local_cost_micro_usd(float("nan"))


def test_unknown_model_is_an_error_not_free(prices: PriceTable, settings) -> None:
    with pytest.raises(UnknownModelPrice, match=r"no price for model 'gpt-9'.*add it"):
        prices.require("gpt-4o-mini", "gpt-9")
    settings.paid.model = "gpt-9"
    with pytest.raises(UnknownModelPrice):
        open_ledger(settings)  # start-up fails instead of silently charging $0


def test_malformed_price_tables_are_rejected(tmp_path: Path) -> None:
    good = {
        "version": "v1",
        "local": {"usd_per_hour": 0.1},
        "storage": {"usd_per_gb_month": 0.1, "source": "s"},
    }
    entry = {"input": 1, "cached_input": 0.5, "output": 2, "source": "x"}
    cases = {
        "missing effective": {**good, "models": {"m": entry}},
        "sub-micro price": {
            **good,
            "models": {"m": {**entry, "input": 0.0000001, "effective": datetime(2024, 1, 1).date()}},
        },
        "no version": {"local": good["local"], "models": {}},
    }
    for why, data in cases.items():
        with pytest.raises(PriceTableError):
            PriceTable.from_dict(data, why)
    spot_unsourced = {
        **good,
        "local": {"usd_per_hour": 0.1, "spot_usd_per_hour": 0.04},
        "models": {"m": {**entry, "effective": datetime(2024, 1, 1).date()}},
    }
    with pytest.raises(PriceTableError, match="spot_usd_per_hour needs spot_source"):
        PriceTable.from_dict(spot_unsourced, "spot price without its source")
    bundled = PriceTable.load()  # spot is stated with where it is from, and below on demand
    assert bundled.local_spot_source and bundled.local_spot_micro_usd_per_hour is not None
    assert bundled.local_spot_micro_usd_per_hour < bundled.local_micro_usd_per_hour
    broken = tmp_path / "prices.toml"
    broken.write_text("version = [", "utf-8")
    with pytest.raises(PriceTableError, match="not valid TOML"):
        PriceTable.load(broken)


def test_a_paid_model_states_its_prior_with_its_source_and_a_stand_in_does_not_inherit_it(
    prices: PriceTable,
) -> None:
    big = prices.price("gpt-4o")
    assert big.paid_helps_prior == 0.798 and "simple-evals" in str(big.paid_helps_prior_source)
    assert prices.price("gpt-4o-mini").paid_helps_prior == 0.797
    stand_in = prices.price("qwen2.5-1.5b")  # priced as gpt-4o, but does not answer like it
    assert stand_in.paid_helps_prior != big.paid_helps_prior and stand_in.paid_helps_prior_source
    entry = {
        "input": 1,
        "cached_input": 0.5,
        "output": 2,
        "source": "x",
        "effective": datetime(2024, 1, 1).date(),
    }
    table = {
        "version": "v1",
        "local": {"usd_per_hour": 0.1},
        "storage": {"usd_per_gb_month": 0.1, "source": "s"},
    }
    assert PriceTable.from_dict({**table, "models": {"m": entry}}).price("m").paid_helps_prior is None
    bad = {
        "above 1": {"paid_helps_prior": 1.5, "paid_helps_prior_source": "s"},
        "no source": {"paid_helps_prior": 0.5},
        "source alone": {"paid_helps_prior_source": "s"},
        "not a number": {"paid_helps_prior": "high", "paid_helps_prior_source": "s"},
    }
    for why, fields in bad.items():
        with pytest.raises(PriceTableError, match="paid_helps_prior"):
            PriceTable.from_dict({**table, "models": {"m": {**entry, **fields}}}, why)


# -- schema ------------------------------------------------------------------------------------------


def test_migrations_are_versioned_and_run_once(ledger_url: str, prices: PriceTable) -> None:
    engine = create_ledger_engine(ledger_url)
    assert migrations.migrate(engine, target=1) == [1]
    # Data written at version 1 survives the upgrade.
    first = Ledger(engine, prices)
    first.add_user("early")
    later = list(range(2, migrations.LATEST + 1))
    assert migrations.migrate(engine) == later
    assert migrations.migrate(engine) == []
    with engine.connect() as conn:
        versions = conn.execute(sa.select(schema_version.c.version).order_by("version")).scalars().all()
    assert versions == [1, *later]
    reopened = Ledger.open(ledger_url, prices)
    assert reopened.get_user("early").name == "early"
    with engine.begin() as conn:
        conn.execute(schema_version.insert().values(version=99, name="future", applied_at=datetime.now()))
    with pytest.raises(SchemaTooNew, match="upgrade Penny"):
        Ledger.open(ledger_url, prices)
    reopened.close()
    engine.dispose()


# -- users and keys ----------------------------------------------------------------------------------


def test_keys_are_stored_hashed_shown_once_and_revocable(ledger: Ledger) -> None:
    ledger.add_user("alice")
    with pytest.raises(AlreadyExists):
        ledger.add_user("alice")
    info, key = ledger.create_key("alice")
    assert key.startswith("pny_") and len(key) > 40
    with ledger.engine.connect() as conn:
        stored = conn.execute(sa.select(api_keys)).one()
    assert key not in {str(value) for value in stored}  # only the hash and a short display prefix
    assert stored.key_sha256 != key and len(stored.key_sha256) == 64
    assert key not in repr(ledger.list_keys("alice"))

    principal = ledger.authenticate(key)
    assert principal is not None and (principal.user_name, principal.key_id) == ("alice", info.id)
    assert ledger.authenticate(key + "x") is None
    assert ledger.authenticate("") is None
    assert ledger.revoke_key(info.id).revoked_at is not None
    assert ledger.authenticate(key) is None
    with pytest.raises(NotFound, match="penny keys list"):
        ledger.revoke_key("key_nope")
    with pytest.raises(NotFound, match="penny users add"):
        ledger.create_key("nobody")


def test_system_user_is_stable(ledger: Ledger) -> None:
    system = ledger.system_user()
    assert system == ledger.system_user()
    assert system.key_id is None and system.user_name == "system"


# -- budgets and windows ------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_daily_budget_refuses_with_seconds_to_reset_and_resets(ledger: Ledger) -> None:
    clock = Clock(datetime(2025, 3, 14, 23, 0, 0))
    ledger.clock = clock
    ledger.add_user("dan")
    ledger.set_budget("dan", 1_000, "day", alert_ratio=0.5)
    dan = ledger.authenticate(ledger.create_key("dan")[1])
    assert dan is not None
    ok = ledger.reserve(
        request_id="a", principal=dan, model="gpt-4o-mini", prompt_tokens=1000, max_completion_tokens=1000
    )  # 750 micro-USD worst case
    with pytest.raises(BudgetExceeded) as refused:
        ledger.reserve(
            request_id="b", principal=dan, model="gpt-4o-mini", prompt_tokens=1000, max_completion_tokens=1000
        )
    assert refused.value.retry_after_s == 3600
    assert "daily budget of $0.001" in str(refused.value)
    status = ledger.budget_status(dan)
    assert status is not None and status.alert and status.remaining_micro_usd == 250

    # Settling for less frees budget at once; the next day starts from zero.
    ledger.settle(ok, Usage(1000, 10))
    status = ledger.budget_status(dan)
    assert status is not None and status.committed_micro_usd == 156
    clock.now += timedelta(hours=2)
    status = ledger.budget_status(dan)
    assert status is not None and status.committed_micro_usd == 0
    ledger.reserve(
        request_id="b", principal=dan, model="gpt-4o-mini", prompt_tokens=1000, max_completion_tokens=1000
    )

    with pytest.raises(AlreadyExists):
        ledger.reserve(
            request_id="b", principal=dan, model="gpt-4o-mini", prompt_tokens=1, max_completion_tokens=1
        )


def test_total_budget_grant_and_month_reset(ledger: Ledger) -> None:
    ledger.clock = Clock(datetime(2025, 12, 31, 12, 0, 0))
    ledger.add_user("erin")
    ledger.set_budget("erin", 100, "total")
    erin = ledger.authenticate(ledger.create_key("erin")[1])
    assert erin is not None
    with pytest.raises(BudgetExceeded, match="ask an operator") as refused:
        ledger.reserve(
            request_id="x", principal=erin, model="gpt-4o", prompt_tokens=100, max_completion_tokens=0
        )
    assert refused.value.retry_after_s == 0  # a total budget never resets
    ledger.grant("erin", 200, "pilot extension")
    ledger.reserve(request_id="x", principal=erin, model="gpt-4o", prompt_tokens=100, max_completion_tokens=0)

    ledger.set_budget("erin", 300, "month")
    with pytest.raises(BudgetExceeded) as refused:
        ledger.reserve(
            request_id="y", principal=erin, model="gpt-4o", prompt_tokens=400, max_completion_tokens=0
        )
    assert refused.value.retry_after_s == 12 * 3600  # to 2026-01-01 00:00 UTC
    with pytest.raises(Exception, match="window"):
        ledger.set_budget("erin", 1, "week")  # type: ignore[arg-type]


# -- answers and usage ---------------------------------------------------------------------------------


def test_answer_records_and_usage_reports(ledger: Ledger) -> None:
    ledger.add_user("fay")
    fay = ledger.authenticate(ledger.create_key("fay")[1])
    assert fay is not None
    system = ledger.system_user()
    local_cost = ledger.compute_cost_micro_usd(1.5)
    ledger.record_answer(
        AnswerRecord(
            request_id="q1",
            principal=fay,
            tier="local",
            collection="docs",
            confidence=0.9,
            local_prompt_tokens=300,
            local_completion_tokens=40,
            local_cost_micro_usd=local_cost,
            latency_ms=800.0,
            local_model="qwen2.5-0.5b",
        )
    )
    reservation = ledger.reserve(
        request_id="q2", principal=fay, model="gpt-4o-mini", prompt_tokens=500, max_completion_tokens=100
    )
    ledger.mark_sent(reservation)
    paid = ledger.settle(reservation, Usage(480, 60, cached_prompt_tokens=200))
    record = AnswerRecord(
        request_id="q2",
        principal=fay,
        tier="paid",
        escalated=True,
        reason="low confidence 0.31",
        confidence=0.31,
        local_prompt_tokens=300,
        local_completion_tokens=48,
        local_cost_micro_usd=local_cost,
        paid_prompt_tokens=480,
        paid_cached_prompt_tokens=200,
        paid_completion_tokens=60,
        paid_cost_micro_usd=paid,
        latency_ms=2100.0,
        local_model="qwen2.5-0.5b",
        paid_model="gpt-4o-mini",
    )
    ledger.record_answer(record)
    ledger.record_answer(record)  # a retry records nothing twice
    ledger.record_answer(AnswerRecord(request_id="q3", principal=system, tier="cache"))

    stored = ledger.answer("q2")
    assert stored is not None
    assert (stored["tier"], stored["escalated"], stored["paid_cached_prompt_tokens"]) == ("paid", True, 200)
    assert stored["price_version"] == ledger.prices.version

    by_tier = {row.key: row for row in ledger.usage(user="fay", by="tier")}
    assert by_tier["paid"].cost_micro_usd == paid == 93  # 280 x .15 + 200 x .075 + 60 x .6 = 42 + 15 + 36
    assert by_tier["paid"].cached_prompt_tokens == 200
    assert by_tier["local"].cost_micro_usd == 2 * local_cost
    assert by_tier["local"].requests == 2
    by_model = {row.key for row in ledger.usage(by="model")}
    assert by_model == {"gpt-4o-mini", "qwen2.5-0.5b"}
    assert [row.key for row in ledger.usage(by="user")] == ["fay"]  # the cache answer cost nothing
    [today] = ledger.usage(by="day", since=ledger.clock().date())
    assert today.key == ledger.clock().date().isoformat()
    assert ledger.usage(by="day", since=ledger.clock() + timedelta(days=1)) == []
