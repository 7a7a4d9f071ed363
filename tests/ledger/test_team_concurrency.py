"""Fifty simultaneous escalations by ten members of one team whose budget covers ten: the team budget holds
on both backends, no reservation deadlocks (user lock, then team lock), and the books balance."""

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
MEMBERS = 10
REQUESTS = 50
TEAM_BUDGET_COVERS = 10


def _members(ledger: Ledger, own_budgets: bool) -> tuple[list[Principal], int]:
    worst = ledger.prices.worst_case_micro_usd(MODEL, PROMPT_TOKENS, MAX_TOKENS)
    ledger.create_team("red")
    ledger.assign_collection("red-docs", "red")
    ledger.set_team_budget("red", TEAM_BUDGET_COVERS * worst, "day")
    principals = []
    for n in range(MEMBERS):
        name = f"member{n}"
        ledger.add_user(name)
        ledger.set_member("red", name)
        if own_budgets:  # each member alone could afford 3: only the shared budget can stop them
            ledger.set_budget(name, 3 * worst, "day")
        _info, key = ledger.create_key(name)
        principal = ledger.authenticate(key)
        assert principal is not None
        principals.append(ledger.authorize_collection(principal, "red-docs", open_if_unowned=False))
    return principals, worst


def _run(ledger: Ledger, principals: list[Principal], fail_every: int | None) -> Counter[str]:
    start = threading.Barrier(REQUESTS)
    admitted = itertools.count()

    def flow(number: int) -> str:
        principal = principals[number % MEMBERS]
        start.wait()
        try:
            reservation = ledger.reserve(
                request_id=f"req-{number}",
                principal=principal,
                model=MODEL,
                prompt_tokens=PROMPT_TOKENS,
                max_completion_tokens=MAX_TOKENS,
            )
        except BudgetExceeded:
            return "refused"
        ledger.mark_sent(reservation)
        time.sleep(0.02)  # the (simulated) paid call
        if fail_every and next(admitted) % fail_every == 0:
            ledger.release(reservation, "upstream timeout")
            return "released"
        ledger.settle(reservation, Usage(PROMPT_TOKENS, MAX_TOKENS))  # the worst case really happens
        return "settled"

    with ThreadPoolExecutor(max_workers=REQUESTS) as pool:
        return Counter(pool.map(flow, range(REQUESTS)))


@pytest.mark.parametrize("own_budgets", [False, True], ids=["team-budget-only", "with-user-budgets"])
def test_members_cannot_overspend_the_team_budget_together(ledger: Ledger, own_budgets: bool) -> None:
    principals, worst = _members(ledger, own_budgets)
    outcomes = _run(ledger, principals, fail_every=None)
    assert outcomes == {"settled": TEAM_BUDGET_COVERS, "refused": REQUESTS - TEAM_BUDGET_COVERS}
    status = ledger.team_budget_status("red")
    assert status is not None
    assert status.committed_micro_usd == TEAM_BUDGET_COVERS * worst == status.budget.limit_micro_usd
    team_rows = ledger.usage(team="red", by="user")
    assert sum(r.cost_micro_usd for r in team_rows) == TEAM_BUDGET_COVERS * worst
    assert sum(r.requests for r in team_rows) == TEAM_BUDGET_COVERS
    if own_budgets:
        for principal in principals:  # no member passed their own limit either
            own = ledger.budget_status(principal)
            assert own is not None and own.committed_micro_usd <= own.budget.limit_micro_usd
    assert ledger.check_balances() == []


def test_released_holds_return_to_the_team_budget(ledger: Ledger) -> None:
    principals, worst = _members(ledger, own_budgets=True)
    outcomes = _run(ledger, principals, fail_every=3)
    assert sum(outcomes.values()) == REQUESTS and outcomes["released"] >= 1
    assert 1 <= outcomes["settled"] <= TEAM_BUDGET_COVERS
    status = ledger.team_budget_status("red")
    assert status is not None and status.committed_micro_usd == outcomes["settled"] * worst
    assert ledger.check_balances() == [] and ledger.needing_reconciliation() == []
