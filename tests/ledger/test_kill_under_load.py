"""A writer process SIGKILLed while 8 threads record answers and paid calls at full speed: every answer it
reported recorded is in the database, the budget equals the SUM of the entries, nothing is settled twice,
and recovery closes what the kill left open. Answer rows are group-committed, so this is also the proof
that a returned ``record_answer`` is a committed one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import timedelta

import sqlalchemy as sa

from assistant.ledger import Ledger
from tests.conftest import REPO
from tests.support.ledger import books, committed

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices

THREADS = 8
KILL_AFTER = 120  # answers reported recorded before the kill

WRITER = textwrap.dedent(
    """
    import sys, threading
    from assistant.ledger import AnswerRecord, Ledger, PriceTable, Usage
    ledger = Ledger.open(sys.argv[1], PriceTable.load(), pool_size=12)
    principal = ledger.authenticate(sys.argv[2])
    out = threading.Lock()

    def say(line):
        with out:
            sys.stdout.write(line + "\\n")
            sys.stdout.flush()

    def client(n):
        for i in range(100_000):
            request_id = f"w{n}-{i}"
            cost = 0
            record = AnswerRecord(request_id=request_id, principal=principal, tier="local",
                                  escalated=bool(i % 2))
            if i % 2:  # the cascade's paid flow: reserved as sent, settled with its answer
                reservation = ledger.reserve(request_id=request_id, principal=principal, model="gpt-4o-mini",
                                             prompt_tokens=900, max_completion_tokens=256, sent=True)
                if i % 7 == 3:
                    ledger.release(reservation, "upstream timeout")
                else:
                    record = AnswerRecord(request_id=request_id, principal=principal, tier="paid",
                                          escalated=True)
                    cost = ledger.settle(reservation, Usage(880, 120), answer=record)
                    say(f"recorded {request_id} {cost}")
                    continue
            ledger.record_answer(record)
            say(f"recorded {request_id} {cost}")

    for n in range(int(sys.argv[3])):
        threading.Thread(target=client, args=(n,), daemon=True).start()
    threading.Event().wait()
    """
)


def run_and_kill(ledger_url: str, api_key: str) -> dict[str, int]:
    """Start the writer, SIGKILL it once it has reported KILL_AFTER answers; what it reported."""
    name = f"penny-kill-{uuid.uuid4().hex[:8]}"
    url = f"{ledger_url}&application_name={name}" if ledger_url.startswith("postgresql") else ledger_url
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, url, api_key, str(THREADS)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    reported: dict[str, int] = {}
    try:
        assert child.stdout is not None
        while len(reported) < KILL_AFTER:
            line = child.stdout.readline()
            assert line, f"writer exited early with {child.wait()}"
            _, request_id, cost = line.split()
            reported[request_id] = int(cost)
        os.kill(child.pid, signal.SIGKILL)
        # Lines written before the kill landed are reports too: the call had returned.
        for line in child.stdout:
            if line.endswith("\n"):
                _, request_id, cost = line.split()
                reported[request_id] = int(cost)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    if url != ledger_url:
        wait_for_backends(ledger_url.split("?")[0], name)
    return reported


def wait_for_backends(admin_url: str, application_name: str) -> None:
    """A COMMIT sent just before the kill still completes on the server: read the books after the dead
    writer's PostgreSQL sessions have ended, or they may change under the checks."""
    engine = sa.create_engine(admin_url, poolclass=sa.pool.NullPool)
    query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
    try:
        for _ in range(600):
            with engine.connect() as conn:
                if conn.execute(query, {"name": application_name}).scalar_one() == 0:
                    return
            time.sleep(0.05)
        raise AssertionError(f"the killed writer's sessions ({application_name}) never ended")
    finally:
        engine.dispose()


def test_kill_9_under_concurrent_writes_loses_nothing(ledger: Ledger, ledger_url: str) -> None:
    ledger.add_user("bob")
    ledger.set_budget("bob", 10**9, "month")
    _info, key = ledger.create_key("bob")
    principal = ledger.authenticate(key)
    assert principal is not None

    reported = run_and_kill(ledger_url, key)

    answered, held, total = books(ledger)
    missing = sorted(set(reported) - set(answered))
    assert missing == []  # every answer the writer saw returned is committed
    for request_id, cost in reported.items():
        assert answered[request_id] == cost
        if request_id in held:  # a reported paid or released answer's reservation is closed at that cost
            assert held[request_id][0] in ("settled", "released")
            assert held[request_id][2] == cost
    status = ledger.budget_status(principal)
    assert status is not None
    assert status.committed_micro_usd == total == committed(held)
    assert ledger.check_balances() == []

    later = ledger.clock() + timedelta(seconds=ledger.reservation_ttl_s + 1)
    report = ledger.recover_stale(later)
    opened = {request_id for request_id, (state, _, _) in held.items() if state == "open"}
    assert set(report.released) | set(report.settled_worst_case) == opened
    answered, held, total = books(ledger)
    assert all(state != "open" for state, _, _ in held.values())
    status = ledger.budget_status(principal)
    assert status is not None
    assert status.committed_micro_usd == total == committed(held)
    assert ledger.check_balances() == []
    assert set(ledger.needing_reconciliation()) == set(report.settled_worst_case)
