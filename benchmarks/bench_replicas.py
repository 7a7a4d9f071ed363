"""Answers/s with 2 API replicas vs 1, in front of the same two pool workers (issue #31, item 4).

The stack of tests/deploy/test_replicas.py: `penny serve` replicas sharing one PostgreSQL ledger, one Redis,
one Chroma server and two remote workers (`python -m assistant.local.pool.worker`, one llama.cpp thread
each), the paid tier being the fake one (no network, answers at once). Both replicas run throughout; a
"1 replica" round sends every request to replica A, a "2 replicas" round alternates between A and B, so the
only difference is how many API processes share the work. Rounds of each traffic mix are interleaved
(1, 2, 1, 2, ...) so drift in the machine's load favours neither; the median answers/s is reported.

Traffic: ``local``: every request ``penny-local`` (answered by a worker); ``mixed``: one in
``--paid-every`` is ``penny-local``, the rest ``penny-paid`` (retrieval in the API, then the fake paid
tier). Each round is ``--requests`` requests from ``--clients`` concurrent clients.

Usage: python benchmarks/bench_replicas.py [--rounds 3] [--requests 16] [--clients 4] [--paid-every 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from assistant.local.registry import ModelRegistry
from tests.support.fake_paid import FakePaid
from tests.support.ledger import PgSchema
from tests.support.limits import fresh_redis_prefix
from tests.support.questions import SAMPLE_QUESTIONS
from tests.support.replicas import Stack, checked
from tests.support.servers import running_server, wait_for

REPO = Path(__file__).resolve().parent.parent
MODEL = "smollm2-135m"
QUESTIONS = SAMPLE_QUESTIONS


def upload_samples(stack: Stack, key: str) -> None:
    """samples/ into the collection ``samples`` through replica A, waited for."""
    auth = {"Authorization": f"Bearer {key}"}
    files = [
        ("files", (path.name, path.read_bytes(), "text/markdown"))
        for path in sorted(REPO.glob("samples/*.md"))
    ]
    base = stack.replicas[0].url
    job = checked(
        httpx.post(f"{base}/v1/collections/samples/documents", files=files, headers=auth, timeout=60)
    )
    done = lambda: checked(httpx.get(f"{base}/v1/jobs/{job['id']}", headers=auth))["finished_at"]  # noqa: E731
    wait_for(done, 900, "the samples to be indexed")


def one_round(stack: Stack, key: str, replicas: int, requests: int, clients: int, paid_every: int) -> float:
    """Answers/s of ``requests`` requests from ``clients`` concurrent clients over the first ``replicas``."""
    pool = [httpx.Client(base_url=r.url, timeout=900) for r in stack.replicas[:replicas]]
    auth = {"Authorization": f"Bearer {key}"}

    def ask(i: int) -> None:
        profile = "penny-local" if paid_every == 0 or i % paid_every == 0 else "penny-paid"
        question = QUESTIONS[i % len(QUESTIONS)]
        body = {
            "model": profile,
            "collection": "samples",
            "messages": [{"role": "user", "content": question}],
        }
        response = pool[i % replicas].post("/v1/chat/completions", json=body, headers=auth)
        if response.status_code != 200:
            raise RuntimeError(f"{profile}: {response.status_code} {response.text[:300]}")

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as executor:
        list(executor.map(ask, range(requests)))
    elapsed = time.perf_counter() - started
    for client in pool:
        client.close()
    return requests / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=16, help="requests per round")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--paid-every", type=int, default=4, help="mixed: 1 local in this many requests")
    args = parser.parse_args()
    cache = REPO / ".penny" / "models"
    model = ModelRegistry(cache).path(MODEL)
    fake = FakePaid()
    root = Path(tempfile.mkdtemp(prefix="penny-bench-replicas-"))
    with (
        running_server(fake.app) as paid,
        PgSchema() as db_url,
        fresh_redis_prefix() as prefix,
        Stack(
            root,
            model=model,
            model_cache=cache,
            db_url=db_url,
            redis_prefix=prefix,
            paid_url=f"{paid}/v1",
            settings={"POOL__REQUEST_DEADLINE_S": "900"},  # answers/s is measured, not latency
        ) as stack,
    ):
        key = stack.add_user("bench", team="bench")
        upload_samples(stack, key)
        mixes = {"local": 0, f"mixed 1:{args.paid_every - 1}": args.paid_every}
        one_round(stack, key, 2, 4, 4, 2)  # warm both replicas (retrievers, BM25, connections)
        rates: dict[tuple[str, int], list[float]] = {(mix, n): [] for mix in mixes for n in (1, 2)}
        for _ in range(args.rounds):
            for mix, paid_every in mixes.items():
                for replicas in (1, 2):
                    rate = one_round(stack, key, replicas, args.requests, args.clients, paid_every)
                    rates[(mix, replicas)].append(rate)
        load = os.getloadavg()
    print(
        f"{MODEL} on 2 remote workers (1 llama.cpp thread each); {os.cpu_count()} cores; load average "
        f"{load[0]:.1f} at the end; {args.rounds} rounds of {args.requests} requests from {args.clients} "
        "clients, interleaved"
    )
    print(f"{'traffic':12} {'replicas':>8} {'answers/s':>10}  rounds")
    for (mix, replicas), values in rates.items():
        rounds = " ".join(f"{v:.2f}" for v in values)
        print(f"{mix:12} {replicas:8} {statistics.median(values):10.2f}  [{rounds}]")
    for mix in mixes:
        ratio = statistics.median(rates[(mix, 2)]) / statistics.median(rates[(mix, 1)])
        print(f"{mix}: 2 replicas / 1 = {ratio:.2f}x")


if __name__ == "__main__":
    main()
