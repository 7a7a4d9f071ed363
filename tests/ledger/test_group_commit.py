"""Answer rows: group-committed (concurrent callers share a transaction, yet each gets its own outcome),
or recorded in the transaction that settles their paid call."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import sqlalchemy as sa

from assistant.ledger import AnswerRecord, Ledger, LedgerError, Principal, ReservationClosed, Usage
from assistant.ledger.schema import answers

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices

CALLERS = 24


def recorded(ledger: Ledger) -> dict[str, str]:
    with ledger.engine.connect() as conn:
        return dict(conn.execute(sa.select(answers.c.request_id, answers.c.tier)).all())


def test_a_bad_row_fails_only_its_caller(ledger: Ledger) -> None:
    ledger.add_user("ann")
    ann = ledger.authenticate(ledger.create_key("ann")[1])
    assert ann is not None
    ghost = Principal(user_id=10**6, user_name="ghost", key_id=None)  # no such user: a foreign-key error
    start = threading.Barrier(CALLERS)

    def record(n: int) -> str:
        start.wait()
        principal = ghost if n == 7 else ann
        try:
            ledger.record_answer(AnswerRecord(request_id=f"a{n}", principal=principal, tier="local"))
        except sa.exc.IntegrityError:
            return "failed"
        return "ok"

    with ThreadPoolExecutor(CALLERS) as pool:
        outcomes = list(pool.map(record, range(CALLERS)))
    assert outcomes == ["failed" if n == 7 else "ok" for n in range(CALLERS)]
    assert set(recorded(ledger)) == {f"a{n}" for n in range(CALLERS) if n != 7}


def test_concurrent_retries_of_one_answer_record_it_once(ledger: Ledger) -> None:
    system = ledger.system_user()
    start = threading.Barrier(CALLERS)

    def record(n: int) -> None:
        start.wait()
        tier = "paid" if n == 0 else "local"
        ledger.record_answer(AnswerRecord(request_id="same", principal=system, tier=tier))

    with ThreadPoolExecutor(CALLERS) as pool:
        list(pool.map(record, range(CALLERS)))
    assert list(recorded(ledger)) == ["same"]


def test_closed_ledger_refuses_instead_of_queueing(ledger_url: str, prices: object) -> None:
    ledger = Ledger.open(ledger_url, prices)  # type: ignore[arg-type]
    system = ledger.system_user()
    ledger.record_answer(AnswerRecord(request_id="before", principal=system, tier="local"))
    ledger.close()
    with pytest.raises(LedgerError, match="closed"):
        ledger.record_answer(AnswerRecord(request_id="after", principal=system, tier="local"))


def test_settle_records_the_answer_in_its_transaction(ledger: Ledger) -> None:
    ledger.add_user("ann")
    ann = ledger.authenticate(ledger.create_key("ann")[1])
    assert ann is not None
    reservation = ledger.reserve(
        request_id="p1", principal=ann, model="gpt-4o-mini", prompt_tokens=800, max_completion_tokens=200
    )
    ledger.mark_sent(reservation)
    record = AnswerRecord(request_id="p1", principal=ann, tier="paid", escalated=True, paid_cost_micro_usd=1)
    cost = ledger.settle(reservation, Usage(780, 120), answer=record)
    assert ledger.settle(reservation, Usage(780, 120), answer=record) == cost  # a retry: charged once
    stored = ledger.answer("p1")
    assert stored is not None and stored["paid_cost_micro_usd"] == cost == 189  # the cost charged
    assert ledger.check_balances() == []

    released = ledger.reserve(
        request_id="p2", principal=ann, model="gpt-4o-mini", prompt_tokens=800, max_completion_tokens=200
    )
    ledger.release(released, "upstream timeout")
    with pytest.raises(ReservationClosed):
        ledger.settle(released, Usage(780, 120), answer=replace(record, request_id="p2"))
    assert ledger.answer("p2") is None  # no answer without its charge
