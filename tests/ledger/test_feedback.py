"""Feedback on answers, on both backends: owner or admin key only, one rating per answer and giver (a new
one replaces the old), read back with what the answer was; migration 8 on a version-7 database."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from assistant.answering.judge.features import FEATURES
from assistant.ledger import AnswerRecord, Ledger, LedgerError, NotFound, PriceTable, Principal, migrations
from assistant.ledger.engine import create_ledger_engine

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices

FEATURES_OF_AN_ANSWER = {name: 0.5 for name in FEATURES}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0)

    def __call__(self) -> datetime:
        return self.now


def user(ledger: Ledger, name: str) -> Principal:
    ledger.add_user(name)
    principal = ledger.authenticate(ledger.create_key(name)[1])
    assert principal is not None
    return principal


def answered(ledger: Ledger, principal: Principal, request_id: str, **fields: object) -> None:
    values: dict[str, object] = {"tier": "local", "collection": "docs", "features": FEATURES_OF_AN_ANSWER}
    ledger.record_answer(AnswerRecord(request_id=request_id, principal=principal, **{**values, **fields}))  # type: ignore[arg-type]


def test_the_owner_rates_and_a_new_rating_replaces_the_old(ledger_url: str, prices: PriceTable) -> None:
    clock = Clock()
    ledger = Ledger.open(ledger_url, prices, clock=clock, pool_size=4)
    alice = user(ledger, "alice")
    answered(ledger, alice, "a1", abstained=False)
    first = ledger.record_feedback("a1", "down", principal=alice, comment="  wrong year  ")
    assert (first.rating, first.comment, first.given_by, first.user_id) == (
        "down",
        "wrong year",
        "owner",
        alice.user_id,
    )
    assert (first.tier, first.collection, first.abstained) == ("local", "docs", False)
    assert first.features == FEATURES_OF_AN_ANSWER  # what the evaluator judged, kept with the answer
    clock.now += timedelta(minutes=5)
    again = ledger.record_feedback("a1", "down", principal=alice, comment="wrong year")
    assert again == first  # the same rating again changes nothing, not even its time
    clock.now += timedelta(minutes=5)
    changed = ledger.record_feedback("a1", "should_abstain", principal=alice)
    assert (changed.rating, changed.comment) == ("should_abstain", None)
    assert changed.created_at == first.created_at and changed.updated_at == clock.now
    [stored] = ledger.answer_feedback()
    assert stored == changed
    ledger.close()


def test_someone_elses_answer_does_not_exist_for_them_but_the_admin_key_rates_any(ledger: Ledger) -> None:
    alice, bob = user(ledger, "alice"), user(ledger, "bob")
    answered(ledger, alice, "a1")
    with pytest.raises(NotFound) as other:
        ledger.record_feedback("a1", "up", principal=bob)
    with pytest.raises(NotFound) as unknown:
        ledger.record_feedback("nope", "up", principal=bob)
    assert str(other.value).replace("'a1'", "ID") == str(unknown.value).replace("'nope'", "ID")  # no probing
    assert ledger.answer_feedback() == []
    ledger.record_feedback("a1", "up", principal=alice)
    by_admin = ledger.record_feedback("a1", "down", principal=None)
    assert (by_admin.given_by, by_admin.user_id) == ("admin", None)
    ratings = {(f.given_by, f.rating) for f in ledger.answer_feedback()}
    assert ratings == {("owner", "up"), ("admin", "down")}  # one per giver: the admin's did not replace it


def test_bad_ratings_and_comments_are_refused_and_store_nothing(ledger: Ledger) -> None:
    alice = user(ledger, "alice")
    answered(ledger, alice, "a1")
    with pytest.raises(LedgerError, match="rating must be one of up, down, should_abstain, not 'meh'"):
        ledger.record_feedback("a1", "meh", principal=alice)
    with pytest.raises(LedgerError, match="comment is 2001 characters long; at most 2000"):
        ledger.record_feedback("a1", "up", principal=alice, comment="x" * 2001)
    assert ledger.answer_feedback() == []
    assert ledger.record_feedback("a1", "up", principal=alice, comment="x" * 2000).comment == "x" * 2000


def test_ratings_are_read_by_collection_and_since(ledger_url: str, prices: PriceTable) -> None:
    clock = Clock()
    ledger = Ledger.open(ledger_url, prices, clock=clock, pool_size=4)
    alice = user(ledger, "alice")
    answered(ledger, alice, "a1")
    answered(ledger, alice, "a2", collection="other", tier="cache", features=None)
    ledger.record_feedback("a1", "up", principal=alice)
    clock.now += timedelta(days=2)
    ledger.record_feedback("a2", "down", principal=alice)
    assert [f.request_id for f in ledger.answer_feedback()] == ["a2", "a1"]  # newest first
    assert [f.request_id for f in ledger.answer_feedback(collection="docs")] == ["a1"]
    [recent] = ledger.answer_feedback(since=clock.now - timedelta(days=1))
    assert recent.request_id == "a2" and recent.features is None and recent.tier == "cache"
    ledger.close()


def test_migration_8_keeps_older_answers_and_lets_them_be_rated(ledger_url: str, prices: PriceTable) -> None:
    engine = create_ledger_engine(ledger_url)
    assert migrations.migrate(engine, target=7)[-1] == 7
    with engine.begin() as conn:  # the shape a database released at version 7 has
        for column in ("abstained", "features"):
            conn.execute(sa.text(f"ALTER TABLE answers DROP COLUMN {column}"))
        assert not sa.inspect(conn).has_table("answer_feedback")
    before = Ledger(engine, prices, group_commit=False)
    system = before.system_user()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO answers (request_id, user_id, tier, escalated, local_prompt_tokens, "
                "local_completion_tokens, paid_prompt_tokens, paid_cached_prompt_tokens, "
                "paid_completion_tokens, paid_usage_estimated, local_cost_micro_usd, paid_cost_micro_usd, "
                "latency_ms, price_version, created_at) VALUES ('old', :user, 'local', false, 1, 1, 0, 0, "
                "0, false, 0, 0, 1.0, 'v', '2026-01-01 00:00:00')"
            ),
            {"user": system.user_id},
        )
    assert 8 in migrations.migrate(engine)
    ledger = Ledger(engine, prices)
    old = ledger.record_feedback("old", "down", principal=system)
    assert (old.abstained, old.features) == (None, None)  # rated, but nothing for a refit to learn from
    answered(ledger, system, "new", abstained=True)
    assert ledger.record_feedback("new", "up", principal=system).abstained is True
    ledger.close()


def test_a_feature_json_cannot_hold_is_left_out_not_the_answer(ledger: Ledger) -> None:
    odd = {"mean_logprob": float("nan"), "min_logprob": float("-inf"), "retrieval_top": 0.4}
    answered(ledger, ledger.system_user(), "n1", features=odd)
    stored = ledger.answer("n1")
    assert stored is not None and stored["features"] == {"retrieval_top": 0.4}
