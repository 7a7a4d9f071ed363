"""What one paid answer costs the database, counted with SQLAlchemy's cursor events so a regression shows:
the cascade's flow (reserved as sent, settled with its answer row) is two transactions of seven statements,
where reserve, mark_sent and a settle under the budget locks were three of eleven (the path a settle
above its hold, a second settle or a late one still takes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from assistant.ledger import AnswerRecord, Ledger, Principal, Reservation, Usage

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices

MODEL = "gpt-4o-mini"


class Counts:
    def __init__(self) -> None:
        self.statements: list[str] = []
        self.commits = 0


@contextmanager
def counting(engine: sa.Engine) -> Iterator[Counts]:
    """Statements sent (SQLite's explicit BEGIN left out: PostgreSQL's driver begins implicitly) and
    commits, while the block runs."""
    counts = Counts()

    def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        if not sql.startswith("BEGIN"):
            counts.statements.append(" ".join(sql.split())[:60])  # shown when a count is off

    def commit(_conn: Any) -> None:
        counts.commits += 1

    sa.event.listen(engine, "before_cursor_execute", statement)
    sa.event.listen(engine, "commit", commit)
    try:
        yield counts
    finally:
        sa.event.remove(engine, "before_cursor_execute", statement)
        sa.event.remove(engine, "commit", commit)


def budgeted_user(ledger: Ledger) -> Principal:
    ledger.add_user("ann")
    ledger.set_budget("ann", 10**9, "month")  # a budget: its lock and its SUM are part of every reserve
    principal = ledger.authenticate(ledger.create_key("ann")[1])
    assert principal is not None
    return principal


def reserve_sent(ledger: Ledger, principal: Principal) -> Reservation:
    """The cascade's reservation: made as sent, the paid call follows at once."""
    return ledger.reserve(
        request_id="p1",
        principal=principal,
        model=MODEL,
        prompt_tokens=900,
        max_completion_tokens=256,
        sent=True,
    )


def paid_record(principal: Principal, request_id: str) -> AnswerRecord:
    return AnswerRecord(request_id=request_id, principal=principal, tier="paid", escalated=True)


def test_a_paid_answer_is_two_commits_of_seven_statements(ledger: Ledger) -> None:
    ann = budgeted_user(ledger)
    with counting(ledger.engine) as counts:
        reservation = ledger.reserve(
            request_id="p1",
            principal=ann,
            model=MODEL,
            prompt_tokens=900,
            max_completion_tokens=256,
            sent=True,
        )
        cost = ledger.settle(reservation, Usage(880, 120), answer=paid_record(ann, "p1"))
    # reserve: lock the budget, SUM the spend, insert the reservation and its entry; settle: close the
    # reservation (UPDATE ... RETURNING), insert its entry and the answer row.
    assert len(counts.statements) == 7, counts.statements
    assert counts.commits == 2
    stored = ledger.answer("p1")
    assert stored is not None and stored["paid_cost_micro_usd"] == cost > 0
    assert ledger.check_balances() == []


def test_the_previous_flow_was_three_commits_of_eleven_statements(ledger: Ledger) -> None:
    """reserve + mark_sent, and a settle that cannot use the hold (cost above it) takes the budget locks
    and checks thresholds: the path a second or late settle still takes."""
    ann = budgeted_user(ledger)
    with counting(ledger.engine) as counts:
        reservation = ledger.reserve(
            request_id="p1", principal=ann, model=MODEL, prompt_tokens=10, max_completion_tokens=10
        )
        ledger.mark_sent(reservation)
        ledger.settle(reservation, Usage(880, 120), answer=paid_record(ann, "p1"))  # above the hold
    assert len(counts.statements) == 11, counts.statements
    assert counts.commits == 3
    assert ledger.check_balances() == []


def test_a_reservation_made_as_sent_is_charged_its_worst_case_if_never_settled(ledger: Ledger) -> None:
    """Crash safety of the one-commit reserve: the call may have gone out, so recovery never releases it."""
    ann = budgeted_user(ledger)
    reservation = reserve_sent(ledger, ann)
    report = ledger.recover_stale(ledger.clock() + timedelta(seconds=ledger.reservation_ttl_s + 1))
    assert report.settled_worst_case == ["p1"] and report.released == []
    assert ledger.needing_reconciliation() == ["p1"]
    status = ledger.budget_status(ann)
    assert status is not None and status.committed_micro_usd == reservation.worst_case_micro_usd
    # The process was only slow: its settle corrects the worst-case charge once, under the locks.
    cost = ledger.settle(reservation, Usage(880, 120), answer=paid_record(ann, "p1"))
    status = ledger.budget_status(ann)
    assert status is not None and status.committed_micro_usd == cost
    assert ledger.check_balances() == []


@pytest.mark.parametrize("second", ["settle", "release"])
def test_a_settled_reservation_is_closed_once(ledger: Ledger, second: str) -> None:
    ann = budgeted_user(ledger)
    reservation = reserve_sent(ledger, ann)
    cost = ledger.settle(reservation, Usage(880, 120))
    if second == "settle":
        assert ledger.settle(reservation, Usage(100, 10)) == cost  # charged once, at the first cost
    else:
        ledger.release(reservation, "late")  # ignored: already settled
    status = ledger.budget_status(ann)
    assert status is not None and status.committed_micro_usd == cost
    assert ledger.check_balances() == []
