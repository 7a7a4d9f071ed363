"""Ledger throughput: answers recorded per second at 1 / 8 / 32 concurrent clients, SQLite and PostgreSQL.

An answer is what the cascade writes for it: a local answer is one ``record_answer``; in the ``mixed`` run
every fifth answer is paid. Each client is its own budgeted user (the usual case: concurrent requests come
from different people; one user's paid calls serialise on that user's budget lock by design).

Three modes, run in the same process, interleaved within each repeat so machine load hits them alike:

- ``baseline``: pool of 5 + 10 overflow, one transaction per answer row, SQLite writers waiting in SQLite's
  busy handler; a paid answer is ``reserve`` + ``mark_sent`` + ``settle`` + ``record_answer`` (4 commits);
- ``previous``: ``Ledger.open``'s defaults (pool of 32 + 10, group commit, in-process SQLite write queue);
  a paid answer is ``reserve`` + ``mark_sent`` + a settle under the budget locks with its answer row
  (3 commits, 11 statements: the path a settle above its hold still takes);
- ``current``: the same defaults; a paid answer is ``reserve(sent=True)`` + ``settle(answer=...)`` within the
  hold (2 commits, 7 statements), as the cascade does now.

Prints per configuration the median answers/s over ``--repeats``, the median ms per answer, statements per
answer (counted in a separate pass) and the ratio current / previous; the books are checked after each run.

    .venv/bin/python benchmarks/bench_ledger.py [--answers 320] [--clients 1,8,32] [--sqlite-sync FULL,NORMAL]
        [--mixes local,paid,mixed] [--modes baseline,previous,current] [--repeats 3]
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from assistant.ledger import AnswerRecord, Ledger, PriceTable, Principal, Usage
from assistant.ledger.answers import answer_values, insert_answer

MODEL = "gpt-4o-mini"
# Ledger.open options and paid flow of each mode (module docstring).
MODES: dict[str, tuple[dict[str, Any], str]] = {
    "baseline": ({"pool_size": 5, "group_commit": False}, "four_commits"),
    "previous": ({}, "three_commits"),
    "current": ({}, "two_commits"),
}


def _options(options: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in options.items()) or "the defaults"


PAID_SHARE = 5  # in the mixed run, every 5th answer is paid
USAGE = Usage(880, 120, cached_prompt_tokens=256)


def answer_record(ledger: Ledger, principal: Principal, request_id: str, paid_cost: int) -> AnswerRecord:
    return AnswerRecord(
        request_id=request_id,
        principal=principal,
        tier="paid" if paid_cost else "local",
        escalated=bool(paid_cost),
        reason="bench",
        confidence=0.3,
        local_prompt_tokens=700,
        local_completion_tokens=60,
        local_cost_micro_usd=ledger.compute_cost_micro_usd(1.2),
        paid_prompt_tokens=880 if paid_cost else 0,
        paid_cached_prompt_tokens=256 if paid_cost else 0,
        paid_completion_tokens=120 if paid_cost else 0,
        paid_cost_micro_usd=paid_cost,
        latency_ms=1500.0,
        local_model="qwen2.5-0.5b",
        paid_model=MODEL if paid_cost else None,
    )


def local_answer(ledger: Ledger, principal: Principal, request_id: str) -> None:
    ledger.record_answer(answer_record(ledger, principal, request_id, 0))


def reserve(ledger: Ledger, principal: Principal, request_id: str, *, sent: bool) -> Any:
    return ledger.reserve(
        request_id=request_id,
        principal=principal,
        model=MODEL,
        prompt_tokens=900,
        max_completion_tokens=256,
        sent=sent,
    )


def paid_four_commits(ledger: Ledger, principal: Principal, request_id: str) -> None:
    """Before the answer was recorded with its charge: reserve, mark_sent, settle, record_answer."""
    reservation = reserve(ledger, principal, request_id, sent=False)
    ledger.mark_sent(reservation)
    cost = ledger.settle(reservation, USAGE)
    ledger.record_answer(answer_record(ledger, principal, request_id, cost))


def paid_three_commits(ledger: Ledger, principal: Principal, request_id: str) -> None:
    """The previous statement sequence: reserve, mark_sent, then the settle under the budget locks (with
    its threshold check) and the answer row in one transaction."""
    reservation = reserve(ledger, principal, request_id, sent=False)
    ledger.mark_sent(reservation)
    cost = ledger.prices.cost_micro_usd(reservation.model, USAGE)
    now = ledger._now()
    record = answer_record(ledger, principal, request_id, 1)
    with ledger._write() as conn:
        charged = ledger._settle(conn, reservation, USAGE, cost, now)
        row = answer_values(replace(record, paid_cost_micro_usd=charged), ledger.prices.version, now)
        conn.execute(insert_answer(ledger.engine), row)


def paid_two_commits(ledger: Ledger, principal: Principal, request_id: str) -> None:
    """The cascade's flow: reserved as sent, settled within the hold with the answer row."""
    reservation = reserve(ledger, principal, request_id, sent=True)
    ledger.settle(reservation, USAGE, answer=answer_record(ledger, principal, request_id, 1))


PAID_FLOWS: dict[str, Callable[[Ledger, Principal, str], None]] = {
    "four_commits": paid_four_commits,
    "three_commits": paid_three_commits,
    "two_commits": paid_two_commits,
}


def flow_of(mix: str, paid: str) -> Callable[[Ledger, Principal, str], None]:
    paid_answer = PAID_FLOWS[paid]
    if mix == "local":
        return local_answer
    if mix == "paid":
        return paid_answer

    def mixed_answer(ledger: Ledger, principal: Principal, request_id: str) -> None:
        number = int(request_id.rsplit("-", 1)[1])
        (paid_answer if number % PAID_SHARE == 0 else local_answer)(ledger, principal, request_id)

    return mixed_answer


MIXES = ("local", "paid", "mixed")


def users(ledger: Ledger, count: int) -> list[Principal]:
    principals = []
    for n in range(count):
        name = f"bench-{n}"
        ledger.add_user(name)
        ledger.set_budget(name, 10**12, "month")
        principal = ledger.authenticate(ledger.create_key(name)[1])
        assert principal is not None
        principals.append(principal)
    return principals


def run(
    ledger: Ledger,
    principals: list[Principal],
    flow: Callable[[Ledger, Principal, str], None],
    clients: int,
    answers: int,
) -> tuple[float, float]:
    """(answers/s, median ms per answer) for ``answers`` answers spread over ``clients`` threads."""
    tag = uuid.uuid4().hex[:8]
    per_client = answers // clients
    latencies: list[float] = []
    start = threading.Barrier(clients + 1)

    def client(n: int) -> None:
        mine = []
        start.wait()
        for i in range(per_client):
            began = time.perf_counter()
            flow(ledger, principals[n], f"{tag}-{n}-{i}")
            mine.append(time.perf_counter() - began)
        latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    assert len(latencies) == per_client * clients
    assert ledger.check_balances() == []
    return len(latencies) / elapsed, statistics.median(latencies) * 1000


@contextmanager
def pg_schema(admin_url: str) -> Iterator[str]:
    schema = f"penny_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{admin_url}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def statements_per_answer(
    ledger: Ledger, principal: Principal, flow: Callable[[Ledger, Principal, str], None], answers: int = 20
) -> float:
    """Statements sent per answer, one client (SQLite's explicit BEGIN left out, as PostgreSQL has none)."""
    sent = 0

    def count(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        nonlocal sent
        sent += not sql.startswith("BEGIN")

    tag = uuid.uuid4().hex[:8]
    sa.event.listen(ledger.engine, "before_cursor_execute", count)
    try:
        for i in range(answers):
            flow(ledger, principal, f"{tag}-0-{i}")
    finally:
        sa.event.remove(ledger.engine, "before_cursor_execute", count)
    return sent / answers


def bench_backend(
    name: str,
    urls: Callable[[], AbstractContextManager[str]],
    clients: list[int],
    answers: int,
    options: dict[str, Any],
    mixes: list[str],
    modes: list[str],
    repeats: int,
) -> None:
    prices = PriceTable.load()
    for mix in mixes:
        for count in clients:
            rates: dict[str, list[float]] = {mode: [] for mode in modes}
            latencies: dict[str, list[float]] = {mode: [] for mode in modes}
            statements: dict[str, float] = {}
            for _ in range(repeats):
                for mode in modes:  # interleaved: load on the machine hits every mode alike
                    ledger_options, paid = MODES[mode]
                    flow = flow_of(mix, paid)
                    with urls() as url:
                        ledger = Ledger.open(url, prices, **ledger_options, **options)
                        if mode == "baseline":  # nor did it queue SQLite writers on an in-process lock
                            ledger._write_lock = nullcontext()
                        principals = users(ledger, count)
                        if mode not in statements:
                            statements[mode] = statements_per_answer(ledger, principals[0], flow)
                        run(ledger, principals, flow, count, min(answers, 8 * count))  # warm up
                        rate, ms = run(ledger, principals, flow, count, answers)
                        rates[mode].append(rate)
                        latencies[mode].append(ms)
                        ledger.close()
            cells = "".join(
                f" {statistics.median(rates[m]):>9.0f} {statistics.median(latencies[m]):>7.2f}"
                f" {statements[m]:>5.1f}"
                for m in modes
            )
            ratio = ""
            if "current" in modes and "previous" in modes:
                ratio = (
                    f" {statistics.median(rates['current']) / statistics.median(rates['previous']):>6.2f}x"
                )
            print(f"{name:<12} {mix:<6} {count:>7}{cells}{ratio}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=320, help="answers per run (split over the clients)")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--sqlite-sync", default="FULL,NORMAL")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--mixes", default=",".join(MIXES))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--repeats", type=int, default=1, help="runs per mode; answers/s is their median")
    args = parser.parse_args()
    clients = [int(n) for n in args.clients.split(",")]
    backends = args.backends.split(",")
    mixes, modes = args.mixes.split(","), args.modes.split(",")
    print(
        f"{args.answers} answers per run, {args.repeats} run(s) per mode (median); modes: "
        f"{', '.join(f'{m} = {_options(MODES[m][0])}, paid {MODES[m][1]}' for m in modes)}; "
        f"mixed = every {PAID_SHARE}th answer paid"
    )
    head = "".join(f" {m[:4] + ' a/s':>9} {m[:4] + ' ms':>7} {'stmt':>5}" for m in modes)
    ratio = f" {'cur/prev':>7}" if "current" in modes and "previous" in modes else ""
    print(f"{'backend':<12} {'mix':<6} {'clients':>7}{head}{ratio}", flush=True)
    shape = (mixes, modes, args.repeats)
    if "sqlite" in backends:
        for sync in args.sqlite_sync.split(","):

            @contextmanager
            def sqlite_url() -> Iterator[str]:
                with tempfile.TemporaryDirectory() as tmp:
                    yield f"sqlite:///{Path(tmp) / 'ledger.db'}"

            options = {"sqlite_synchronous": sync}
            bench_backend(f"sqlite/{sync}", sqlite_url, clients, args.answers, options, *shape)
    if "postgresql" in backends:
        bench_backend("postgresql", lambda: pg_schema(args.pg), clients, args.answers, {}, *shape)
    print(
        "a/s = answers recorded per second (all clients, median of the runs); ms = median per answer; "
        "stmt = statements per answer; cur/prev = current / previous a/s"
    )


if __name__ == "__main__":
    main()
