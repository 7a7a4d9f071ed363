"""Faults: upstream timeouts, a process SIGKILLed mid-call, retries. Spend is never lost nor charged twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
import sqlalchemy as sa

from assistant.ledger import (
    AnswerRecord,
    IdempotencyConflict,
    IdempotencyInProgress,
    Ledger,
    Principal,
    ReservationClosed,
    Usage,
)
from assistant.ledger.schema import ledger_entries
from tests.conftest import REPO

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices


MODEL = "gpt-4o-mini"


def entries(ledger: Ledger, request_id: str) -> list[tuple[str, int]]:
    with ledger.engine.connect() as conn:
        rows = conn.execute(
            sa.select(ledger_entries.c.kind, ledger_entries.c.amount_micro_usd)
            .where(ledger_entries.c.request_id == request_id)
            .order_by(ledger_entries.c.id)
        ).all()
    return [(kind, amount) for kind, amount in rows]


def spent(ledger: Ledger, user: str) -> int:
    return sum(row.cost_micro_usd for row in ledger.usage(user=user))


@pytest.fixture
def alice(ledger: Ledger) -> Principal:
    ledger.add_user("alice")
    ledger.set_budget("alice", 1_000_000, "month")
    principal = ledger.authenticate(ledger.create_key("alice")[1])
    assert principal is not None
    return principal


def test_upstream_timeout_after_reserve_releases_the_hold(ledger: Ledger, alice: Principal) -> None:
    reservation = ledger.reserve(
        request_id="t1", principal=alice, model=MODEL, prompt_tokens=1000, max_completion_tokens=500
    )
    ledger.mark_sent(reservation)
    # ... the upstream call times out ...
    ledger.release(reservation, "upstream timeout after 30 s")
    ledger.release(reservation, "retried release")  # idempotent: no second entry
    assert entries(ledger, "t1") == [("reserve", 450), ("release", -450)]
    assert spent(ledger, "alice") == 0
    status = ledger.budget_status(alice)
    assert status is not None and status.committed_micro_usd == 0
    with pytest.raises(ReservationClosed):
        ledger.settle(reservation, Usage(1000, 10))  # a released hold cannot be charged later
    assert ledger.check_balances() == []


CHILD = textwrap.dedent(
    """
    import sys, time
    from assistant.ledger import Ledger, PriceTable
    ledger = Ledger.open(sys.argv[1], PriceTable.load())
    principal = ledger.authenticate(sys.argv[2])
    reservation = ledger.reserve(request_id=sys.argv[3], principal=principal, model="gpt-4o-mini",
                                 prompt_tokens=2000, max_completion_tokens=256)
    if sys.argv[4] == "send":
        ledger.mark_sent(reservation)
    print("READY", flush=True)
    time.sleep(600)  # "waiting for the upstream": killed here
    """
)


def run_and_kill(ledger_url: str, api_key: str, request_id: str, send: bool) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, ledger_url, api_key, request_id, "send" if send else "hold"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "READY"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()


def test_process_killed_after_send_is_settled_at_worst_case_once(
    ledger: Ledger,
    ledger_url: str,
) -> None:
    ledger.add_user("bob")
    _info, key = ledger.create_key("bob")
    run_and_kill(ledger_url, key, "killed-after-send", send=True)
    run_and_kill(ledger_url, key, "killed-before-send", send=False)
    worst = ledger.prices.worst_case_micro_usd(MODEL, 2000, 256)

    # Before expiry nothing is touched: the call may still be running.
    assert ledger.recover_stale() == ledger.recover_stale(ledger.clock())
    assert ledger.recover_stale().settled_worst_case == []

    later = ledger.clock() + timedelta(seconds=ledger.reservation_ttl_s + 1)
    report = ledger.recover_stale(later)
    assert report.settled_worst_case == ["killed-after-send"]
    assert report.released == ["killed-before-send"]
    assert entries(ledger, "killed-after-send") == [("reserve", worst), ("settle", 0)]
    assert entries(ledger, "killed-before-send") == [("reserve", worst), ("release", -worst)]
    assert ledger.needing_reconciliation() == ["killed-after-send"]

    again = ledger.recover_stale(later + timedelta(hours=1))
    assert (again.released, again.settled_worst_case) == ([], [])
    assert spent(ledger, "bob") == worst  # charged once, at the worst case; the unsent one cost nothing
    assert ledger.check_balances() == []


def test_late_settle_after_recovery_corrects_once(ledger: Ledger, alice: Principal) -> None:
    reservation = ledger.reserve(
        request_id="slow", principal=alice, model=MODEL, prompt_tokens=1000, max_completion_tokens=500
    )
    ledger.mark_sent(reservation)
    ledger.recover_stale(reservation.expires_at + timedelta(seconds=1))  # another process recovers it
    actual = ledger.settle(reservation, Usage(1000, 100, cached_prompt_tokens=400))
    assert actual == ledger.settle(reservation, Usage(1000, 100, cached_prompt_tokens=400))
    assert actual == 180  # 600 x 0.15 + 400 x 0.075 (cached, not on top) + 100 x 0.60 = 180 micro-USD
    assert entries(ledger, "slow") == [("reserve", 450), ("settle", 0), ("adjust", actual - 450)]
    assert spent(ledger, "alice") == actual
    assert ledger.check_balances() == []


def test_expired_unsent_reservation_cannot_be_sent(ledger: Ledger, alice: Principal) -> None:
    reservation = ledger.reserve(
        request_id="stuck", principal=alice, model=MODEL, prompt_tokens=10, max_completion_tokens=10
    )
    ledger.recover_stale(reservation.expires_at)
    with pytest.raises(ReservationClosed, match="do not call the upstream"):
        ledger.mark_sent(reservation)


def answer_with_idempotency(ledger: Ledger, principal: Principal, key: str, body: dict) -> dict:
    """What the HTTP layer does for a POST with an Idempotency-Key."""
    raw = json.dumps(body, sort_keys=True).encode()
    stored = ledger.begin_idempotent(principal, key, raw)
    if stored is not None:
        return json.loads(stored.body)
    request_id = f"req-{key}"
    reservation = ledger.reserve(
        request_id=request_id, principal=principal, model=MODEL, prompt_tokens=800, max_completion_tokens=200
    )
    ledger.mark_sent(reservation)
    cost = ledger.settle(reservation, Usage(780, 120))
    ledger.record_answer(
        AnswerRecord(
            request_id=request_id,
            principal=principal,
            tier="paid",
            escalated=True,
            paid_prompt_tokens=780,
            paid_completion_tokens=120,
            paid_cost_micro_usd=cost,
            paid_model=MODEL,
        )
    )
    response = {"answer": "1066", "cost_micro_usd": cost, "request_id": request_id}
    ledger.finish_idempotent(principal, key, 200, json.dumps(response))
    return response


def test_idempotent_retry_is_charged_once(ledger: Ledger, alice: Principal) -> None:
    body = {"question": "Who conquered England in 1066?"}
    first = answer_with_idempotency(ledger, alice, "k-1", body)
    retry = answer_with_idempotency(ledger, alice, "k-1", body)
    assert retry == first
    assert spent(ledger, "alice") == first["cost_micro_usd"] == 189  # 780 x 0.15 + 120 x 0.60, rounded up
    assert [kind for kind, _ in entries(ledger, "req-k-1")] == ["reserve", "settle"]

    with pytest.raises(IdempotencyConflict):
        answer_with_idempotency(ledger, alice, "k-1", {"question": "something else"})

    # The same key from another user is a different request.
    ledger.add_user("carol")
    carol = ledger.authenticate(ledger.create_key("carol")[1])
    assert carol is not None
    assert ledger.begin_idempotent(carol, "k-1", json.dumps(body, sort_keys=True).encode()) is None

    # A first request still running: the repeat is told to wait, not run a second paid call.
    assert ledger.begin_idempotent(alice, "k-2", b"{}") is None
    with pytest.raises(IdempotencyInProgress):
        ledger.begin_idempotent(alice, "k-2", b"{}")
    ledger.abandon_idempotent(alice, "k-2")  # it failed before charging: a retry may run
    assert ledger.begin_idempotent(alice, "k-2", b"{}") is None
