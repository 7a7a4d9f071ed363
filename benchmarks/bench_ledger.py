"""Ledger throughput: answers recorded per second at 1 / 8 / 32 concurrent clients, SQLite and PostgreSQL.

An answer is what the cascade writes for it: a local answer is one ``record_answer``; a paid answer is
``reserve`` + ``mark_sent`` + ``settle`` + ``record_answer`` (baseline) or ``reserve`` + ``mark_sent`` +
``settle(answer=...)`` (current: the answer is recorded in the settle's transaction); in the ``mixed`` run
every fifth answer is paid. Each client is its own budgeted user (the usual case: concurrent requests come
from different people; one user's paid calls serialise on that user's budget lock by design).

Every configuration runs twice in the same process, back to back: ``baseline`` rebuilds the previous
behaviour (pool of 5 + 10 overflow, one transaction per answer row, SQLite writers waiting in SQLite's busy
handler), ``current`` is ``Ledger.open``'s defaults (pool of 32 + 10, group commit, in-process SQLite write
queue). Prints answers/s, median ms per answer and the ratio current / baseline; the books are checked
after each run.

    .venv/bin/python benchmarks/bench_ledger.py [--answers 320] [--clients 1,8,32] [--sqlite-sync FULL,NORMAL]
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
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from assistant.ledger import AnswerRecord, Ledger, PriceTable, Principal, Usage

MODEL = "gpt-4o-mini"
BASELINE: dict[str, Any] = {"pool_size": 5, "group_commit": False}


CURRENT: dict[str, Any] = {}  # Ledger.open's defaults
PAID_SHARE = 5  # in the mixed run, every 5th answer is paid


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
        local_cost_micro_usd=ledger.local_cost_micro_usd(1.2),
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


def paid_answer(ledger: Ledger, principal: Principal, request_id: str) -> None:
    reservation = ledger.reserve(
        request_id=request_id, principal=principal, model=MODEL, prompt_tokens=900, max_completion_tokens=256
    )
    ledger.mark_sent(reservation)
    usage = Usage(880, 120, cached_prompt_tokens=256)
    if ledger.group_commit:  # the cascade now: the answer is recorded in the settle's transaction
        ledger.settle(reservation, usage, answer=answer_record(ledger, principal, request_id, 1))
        return
    cost = ledger.settle(reservation, usage)  # before: settle, then record the answer
    ledger.record_answer(answer_record(ledger, principal, request_id, cost))


def mixed_answer(ledger: Ledger, principal: Principal, request_id: str) -> None:
    number = int(request_id.rsplit("-", 1)[1])
    (paid_answer if number % PAID_SHARE == 0 else local_answer)(ledger, principal, request_id)


MIXES: dict[str, Callable[[Ledger, Principal, str], None]] = {
    "local": local_answer,
    "paid": paid_answer,
    "mixed": mixed_answer,
}


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
    ledger: Ledger, principals: list[Principal], mix: str, clients: int, answers: int
) -> tuple[float, float]:
    """(answers/s, median ms per answer) for ``answers`` answers spread over ``clients`` threads."""
    flow = MIXES[mix]
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


def bench_backend(
    name: str,
    urls: Callable[[], AbstractContextManager[str]],
    clients: list[int],
    answers: int,
    options: dict[str, Any],
) -> None:
    prices = PriceTable.load()
    for mix in MIXES:
        for count in clients:
            results = []
            for mode in (BASELINE, CURRENT):
                with urls() as url:
                    ledger = Ledger.open(url, prices, **mode, **options)
                    if mode is BASELINE:  # nor did it queue SQLite writers on an in-process lock
                        ledger._write_lock = nullcontext()
                    principals = users(ledger, count)
                    run(ledger, principals, mix, count, min(answers, 8 * count))  # warm up
                    results.append(run(ledger, principals, mix, count, answers))
                    ledger.close()
            (base_rate, base_ms), (rate, ms) = results
            print(
                f"{name:<12} {mix:<6} {count:>7} {base_rate:>10.0f} {base_ms:>8.2f} "
                f"{rate:>10.0f} {ms:>8.2f} {rate / base_rate:>6.2f}x",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=320, help="answers per run (split over the clients)")
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--sqlite-sync", default="FULL,NORMAL")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    clients = [int(n) for n in args.clients.split(",")]
    backends = args.backends.split(",")
    print(
        f"{args.answers} answers per run; baseline = {BASELINE}; "
        "current = Ledger.open defaults (pool of 32 + 10 overflow, group commit); "
        f"mixed = every {PAID_SHARE}th answer paid"
    )
    print(
        f"{'backend':<12} {'mix':<6} {'clients':>7} {'base a/s':>10} {'base ms':>8} "
        f"{'now a/s':>10} {'now ms':>8} {'ratio':>7}",
        flush=True,
    )
    if "sqlite" in backends:
        for sync in args.sqlite_sync.split(","):

            @contextmanager
            def sqlite_url() -> Iterator[str]:
                with tempfile.TemporaryDirectory() as tmp:
                    yield f"sqlite:///{Path(tmp) / 'ledger.db'}"

            bench_backend(f"sqlite/{sync}", sqlite_url, clients, args.answers, {"sqlite_synchronous": sync})
    if "postgresql" in backends:
        bench_backend("postgresql", lambda: pg_schema(args.pg), clients, args.answers, {})
    print("a/s = answers recorded per second (all clients); ms = median per answer; ratio = now / base a/s")


if __name__ == "__main__":
    main()
