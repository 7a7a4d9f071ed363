"""Savings on both backends: a small ledger whose savings per user and per day are worked out by hand, the
`penny usage` table that shows them, and answers recorded before migration 10 counted as unknown."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from assistant.cli import cli
from assistant.ledger import AnswerRecord, Ledger, PriceTable, Usage, migrations
from assistant.ledger.answers import answer_values
from assistant.ledger.engine import create_ledger_engine
from assistant.settings import get_settings

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices

DAY1, DAY2 = datetime(2026, 3, 1, 10, 0), datetime(2026, 3, 2, 10, 0)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def small_ledger(ledger: Ledger) -> None:
    """Four answers, gpt-4o the paid model ($2.50 per 1M input tokens, $10 per 1M output):

    - day 1, alice, local: paid-only 1000 prompt + 100 answer tokens = 2500 + 1000 = 3500; cost 40 (local)
    - day 1, bob, paid: 1200 + 200 tokens = 3000 + 2000 = 5000 charged; cost 5000 + 30 (local first)
    - day 2, alice, cache: paid-only 800 + 20 tokens = 2000 + 200 = 2200; cost 0
    - day 2, bob, local, recorded without a paid-only cost (as before migration 10): cost 50, unknown
    """
    clock = Clock(DAY1)
    ledger.clock = clock
    alice, bob = (
        ledger.authenticate(ledger.create_key(ledger.add_user(n).name)[1]) for n in ("alice", "bob")
    )
    assert alice is not None and bob is not None
    paid_only = ledger.prices.cost_micro_usd
    assert (paid_only("gpt-4o", Usage(1000, 100)), paid_only("gpt-4o", Usage(800, 20))) == (3500, 2200)
    local = {"local_model": "qwen2.5-0.5b", "local_prompt_tokens": 900, "local_completion_tokens": 100}
    ledger.record_answer(
        AnswerRecord("q1", alice, "local", local_cost_micro_usd=40, paid_only_micro_usd=3500, **local)
    )
    held = ledger.reserve(
        request_id="q2",
        principal=bob,
        model="gpt-4o",
        prompt_tokens=1200,
        max_completion_tokens=200,
        sent=True,
    )
    paid = AnswerRecord(
        "q2", bob, "paid", escalated=True, local_cost_micro_usd=30, paid_model="gpt-4o", **local
    )  # no paid-only cost given: settling records the charge as it
    assert ledger.settle(held, Usage(1200, 200), answer=paid) == 5000
    clock.now = DAY2
    ledger.record_answer(AnswerRecord("q3", alice, "cache", paid_only_micro_usd=2200))
    ledger.record_answer(AnswerRecord("q4", bob, "local", local_cost_micro_usd=50, **local))


def test_savings_per_user_and_per_day_match_the_hand_computation(ledger: Ledger) -> None:
    small_ledger(ledger)
    by_user = {row.key: row for row in ledger.usage(by="user")}
    assert set(by_user) == {"alice", "bob"}
    alice, bob = by_user["alice"], by_user["bob"]
    assert (alice.paid_only_micro_usd, alice.known_cost_micro_usd, alice.unknown_answers) == (5700, 40, 0)
    assert alice.saved_micro_usd == 5660 and alice.saved_percent == 100 * 5660 / 5700
    # bob's one known answer was paid: it saved nothing, and its local try cost 30 more than paid-only
    assert (bob.paid_only_micro_usd, bob.known_cost_micro_usd, bob.unknown_answers) == (5000, 5030, 1)
    assert bob.saved_micro_usd == -30 and bob.saved_percent == 100 * -30 / 5000
    assert bob.cost_micro_usd == 5000 + 30 + 50  # the spend column still counts every answer

    by_day = {row.key: row for row in ledger.usage(by="day")}
    assert set(by_day) == {"2026-03-01", "2026-03-02"}
    first, second = by_day["2026-03-01"], by_day["2026-03-02"]
    assert (first.paid_only_micro_usd, first.saved_micro_usd, first.unknown_answers) == (8500, 3430, 0)
    assert first.saved_percent == 100 * 3430 / 8500
    assert (second.paid_only_micro_usd, second.saved_micro_usd, second.unknown_answers) == (2200, 2200, 1)
    assert second.saved_percent == 100.0

    by_tier = {row.key: row for row in ledger.usage(by="tier")}
    # the cache hit spent nothing, so it has no spend line; its savings add one
    assert by_tier["cache"].requests == 0 and by_tier["cache"].saved_micro_usd == 2200
    assert by_tier["local"].saved_micro_usd == 3500 - 40 and by_tier["local"].unknown_answers == 1
    assert by_tier["paid"].saved_micro_usd == -30

    [only_alice] = ledger.usage(user="alice", by="day", since=DAY2.date())
    assert (only_alice.key, only_alice.saved_micro_usd, only_alice.unknown_answers) == ("2026-03-02", 2200, 0)


@pytest.fixture
def penny(ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("PENNY_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("PENNY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PENNY_LEDGER__DB_URL", ledger_url)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_penny_usage_shows_paid_only_saved_and_unknown(ledger: Ledger, penny: CliRunner) -> None:
    small_ledger(ledger)
    result = penny.invoke(cli, ["usage", "--by", "user"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    header, alice, bob, total, note = result.output.splitlines()
    assert header.split() == [
        "USER", "REQUESTS", "PROMPT", "CACHED", "COMPLETION", "COST_USD",
        "PAID_ONLY_USD", "SAVED_USD", "SAVED_%", "UNKNOWN",
    ]  # fmt: skip
    assert alice.split()[-4:] == ["$0.0057", "$0.00566", "99.3%", "0"]
    assert bob.split()[-4:] == ["$0.005", "-$0.00003", "-0.6%", "1"]
    assert total.split()[-4:] == ["$0.0107", "$0.00563", "52.6%", "1"]  # 5630 of 10700
    assert note.startswith("1 answer(s) have no paid-only cost")
    csv = penny.invoke(cli, ["usage", "--by", "day", "--csv"], catch_exceptions=False).output.splitlines()
    assert csv[1].endswith(",0.008500,0.003430,40.35,0") and csv[2].endswith(",0.002200,0.002200,100.00,1")


def test_answers_recorded_before_migration_10_are_unknown_not_zero_savings(
    ledger_url: str, prices: PriceTable
) -> None:
    engine = create_ledger_engine(ledger_url)
    migrations.migrate(engine, target=9)
    with engine.begin() as conn:  # as version 9 left it (a new database's answers have the column at once)
        conn.execute(sa.text("ALTER TABLE answers DROP COLUMN paid_only_micro_usd"))
    early = Ledger(engine, prices)
    user = early.add_user("early")
    old = AnswerRecord("old", early.system_user(), "local", local_model="m", local_cost_micro_usd=70)
    row = answer_values(old, prices.version, datetime(2026, 1, 5))
    row.update(user_id=user.id)
    del row["paid_only_micro_usd"]  # the column does not exist yet
    with engine.begin() as conn:
        conn.execute(sa.insert(sa.table("answers", *map(sa.column, row))).values(**row))
    assert migrations.migrate(engine, target=10) == [10]
    with engine.connect() as conn:
        assert "paid_only_micro_usd" in {c["name"] for c in sa.inspect(conn).get_columns("answers")}
    ledger = Ledger.open(ledger_url, prices)
    try:
        stored = ledger.answer("old")
        [line] = ledger.usage(by="user")
    finally:
        ledger.close()
        engine.dispose()
    assert stored is not None and stored["paid_only_micro_usd"] is None
    assert (line.key, line.cost_micro_usd, line.known_answers, line.unknown_answers) == ("early", 70, 0, 1)
    assert line.saved_micro_usd is None and line.saved_percent is None


def test_the_usage_api_rows_carry_the_savings(ledger: Ledger) -> None:
    from assistant.api.ledger_routes import usage_rows

    small_ledger(ledger)
    rows = {row["key"]: row for row in usage_rows(ledger.usage(by="user"))}
    assert {k: rows["alice"][k] for k in ("paid_only_micro_usd", "saved_micro_usd", "saved_percent")} == {
        "paid_only_micro_usd": 5700,
        "saved_micro_usd": 5660,
        "saved_percent": 99.3,  # 5660 / 5700, rounded to 2 places: 99.298 -> 99.3
    }
    assert (rows["bob"]["saved_micro_usd"], rows["bob"]["unknown_answers"]) == (-30, 1)
