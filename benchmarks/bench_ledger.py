"""Ledger cost per answer: reserve + mark_sent + settle + record_answer, on SQLite and PostgreSQL.

Prints, per backend: median and p95 ms of ledger overhead per answer (one client), answers/s and ledger
write transactions/s (4 per answer) for one client and for 8 concurrent clients on one budgeted user
(the worst case: every write serialises on that user's budget lock).

    .venv/bin/python benchmarks/bench_ledger.py [--answers 300] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import sqlalchemy as sa

from assistant.ledger import AnswerRecord, Ledger, PriceTable, Principal, Usage

WRITES_PER_ANSWER = 4


def one_answer(ledger: Ledger, principal: Principal, request_id: str) -> float:
    started = time.perf_counter()
    reservation = ledger.reserve(
        request_id=request_id,
        principal=principal,
        model="gpt-4o-mini",
        prompt_tokens=900,
        max_completion_tokens=256,
    )
    ledger.mark_sent(reservation)
    cost = ledger.settle(reservation, Usage(880, 120, cached_prompt_tokens=256))
    ledger.record_answer(
        AnswerRecord(
            request_id=request_id,
            principal=principal,
            tier="paid",
            escalated=True,
            reason="bench",
            confidence=0.3,
            local_prompt_tokens=700,
            local_completion_tokens=60,
            local_cost_micro_usd=ledger.local_cost_micro_usd(1.2),
            paid_prompt_tokens=880,
            paid_cached_prompt_tokens=256,
            paid_completion_tokens=120,
            paid_cost_micro_usd=cost,
            latency_ms=1500.0,
            local_model="qwen2.5-0.5b",
            paid_model="gpt-4o-mini",
        )
    )
    return time.perf_counter() - started


def bench(name: str, url: str, answers: int, threads: int, **options: str) -> None:
    ledger = Ledger.open(url, PriceTable.load(), pool_size=threads + 2, **options)  # type: ignore[arg-type]
    ledger.add_user("bench")
    ledger.set_budget("bench", 10**12, "month")
    principal = ledger.authenticate(ledger.create_key("bench")[1])
    assert principal is not None
    for n in range(20):  # warm up connections and caches
        one_answer(ledger, principal, f"warm-{n}")

    latencies = [one_answer(ledger, principal, f"seq-{n}") for n in range(answers)]
    total = sum(latencies)
    sequential_rate = answers / total

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda n: one_answer(ledger, principal, f"par-{n}"), range(answers)))
    parallel_rate = answers / (time.perf_counter() - started)
    assert ledger.check_balances() == []
    ledger.close()

    ms = sorted(x * 1000 for x in latencies)
    p95 = ms[int(0.95 * (len(ms) - 1))]
    print(
        f"{name:<13} {statistics.median(ms):>9.2f} {p95:>8.2f} {sequential_rate:>10.0f} "
        f"{sequential_rate * WRITES_PER_ANSWER:>10.0f} {parallel_rate:>12.0f} "
        f"{parallel_rate * WRITES_PER_ANSWER:>12.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=300)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    print(f"{args.answers} answers per run; 1 client, then {args.threads} concurrent clients on one user")
    print(
        f"{'backend':<13} {'median_ms':>9} {'p95_ms':>8} {'answers/s':>10} {'writes/s':>10} "
        f"{'answers/s@' + str(args.threads):>12} {'writes/s@' + str(args.threads):>12}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for sync in ("FULL", "NORMAL"):
            url = f"sqlite:///{Path(tmp) / sync}.db"
            bench(f"sqlite/{sync}", url, args.answers, args.threads, sqlite_synchronous=sync)
    schema = f"penny_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.pg, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        bench("postgresql", f"{args.pg}?options=-csearch_path%3D{schema}", args.answers, args.threads)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    print(
        f"writes/s = answers/s x {WRITES_PER_ANSWER} write transactions (reserve, mark_sent, settle, record)"
    )


if __name__ == "__main__":
    main()
