"""50 simultaneous escalations against a budget for 10: the budget holds, and the books balance exactly."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from assistant.ledger import BudgetExceeded, Ledger, Principal, Usage

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices


MODEL = "gpt-4o-mini"
PROMPT_TOKENS = 1200
MAX_TOKENS = 300
REQUESTS = 50
BUDGET_COVERS = 10


def _run_flows(
    ledger: Ledger, fail_every: int | None, sent_at_reserve: bool = False
) -> tuple[Counter[str], int, Principal]:
    """``sent_at_reserve``: the cascade's flow (reserved as sent, then settled: two commits) instead of
    reserve, mark_sent, settle."""
    user = ledger.add_user("alice")
    _info, key = ledger.create_key(user.name)
    principal = ledger.authenticate(key)
    assert principal is not None
    worst = ledger.prices.worst_case_micro_usd(MODEL, PROMPT_TOKENS, MAX_TOKENS)
    ledger.set_budget(user.name, BUDGET_COVERS * worst, "day")
    start = threading.Barrier(REQUESTS)
    # Fail by admission order, not request number: which numbers win a reservation is up to the scheduler,
    # and all ten could be ones a "number % fail_every" rule never fails.
    admitted = itertools.count()

    def flow(number: int) -> str:
        start.wait()
        try:
            reservation = ledger.reserve(
                request_id=f"req-{number}",
                principal=principal,
                model=MODEL,
                prompt_tokens=PROMPT_TOKENS,
                max_completion_tokens=MAX_TOKENS,
                sent=sent_at_reserve,
            )
        except BudgetExceeded as exc:
            assert exc.retry_after_s > 0
            return "refused"
        if not sent_at_reserve:
            ledger.mark_sent(reservation)
        time.sleep(0.02)  # the (simulated) upstream call
        if fail_every and next(admitted) % fail_every == 0:
            ledger.release(reservation, "upstream timeout")
            return "released"
        # The worst case really happens: the answer used every allowed token.
        ledger.settle(reservation, Usage(PROMPT_TOKENS, MAX_TOKENS))
        return "settled"

    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        outcomes = Counter(pool.map(flow, range(REQUESTS)))
    return outcomes, worst, principal


@pytest.mark.parametrize("sent_at_reserve", [False, True], ids=["mark_sent", "sent_at_reserve"])
def test_fifty_concurrent_reservations_cannot_overspend(ledger: Ledger, sent_at_reserve: bool) -> None:
    outcomes, worst, principal = _run_flows(ledger, fail_every=None, sent_at_reserve=sent_at_reserve)
    # Every answer costs exactly the worst case, so exactly 10 fit and 40 are refused with a 429.
    assert outcomes == {"settled": BUDGET_COVERS, "refused": REQUESTS - BUDGET_COVERS}
    status = ledger.budget_status(principal)
    assert status is not None
    assert status.committed_micro_usd == BUDGET_COVERS * worst == status.budget.limit_micro_usd
    assert ledger.check_balances() == []
    [row] = ledger.usage(by="user", user="alice")
    assert (row.requests, row.cost_micro_usd) == (BUDGET_COVERS, BUDGET_COVERS * worst)
    assert row.prompt_tokens == BUDGET_COVERS * PROMPT_TOKENS


@pytest.mark.parametrize("fail_every", [4])
def test_concurrent_flows_with_upstream_failures_balance(ledger: Ledger, fail_every: int) -> None:
    outcomes, worst, _principal = _run_flows(ledger, fail_every=fail_every, sent_at_reserve=True)
    # Released holds may be reused by later requests, but never more than 10 paid answers fit.
    assert sum(outcomes.values()) == REQUESTS
    assert set(outcomes) <= {"settled", "released", "refused"}
    assert 1 <= outcomes["settled"] <= BUDGET_COVERS
    assert outcomes["released"] >= 1
    [row] = ledger.usage(by="user", user="alice")
    assert row.cost_micro_usd == outcomes["settled"] * worst <= BUDGET_COVERS * worst
    assert ledger.check_balances() == []
    assert ledger.needing_reconciliation() == []
