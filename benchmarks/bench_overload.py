"""Overload: one replica flooded with several times what it can serve (issue #33, load shedding).

A real server (uvicorn + Litestar, auth on, ledger on SQLite or PostgreSQL) with its local tier in a worker
pool sized for this host, the paid tier a scripted fake (tests/support/fake_paid.py). A user whose budget
covers a few paid answers sends, all at once, ``--factor`` times what the pool can serve within
``server.max_queue_wait_s`` plus one answer's time: penny-local (half streamed), penny-paid (the budget runs
out: they fall back to the local tier) and penny. The service time is measured first, with a few answers
one at a time.

Prints what each request got (an answer, a 503 at admission, a 503 after waiting out the bound, a client
timeout), their times, the slowest against the bound plus one answer, the shed metric, and whether the
ledger balances (no reservation left open, an answer row per answer).

    .venv/bin/python benchmarks/bench_overload.py [--model smollm2-135m] [--bound 10] [--factor 3]
        [--requests N] [--max-tokens 48] [--postgresql]

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from assistant.api import create_app
from assistant.ledger.schema import answers, reservations
from assistant.service import Penny
from assistant.settings import Settings
from tests.support.fake_paid import FakePaid
from tests.support.flood import QUESTIONS, Outcome, Shot, flood
from tests.support.ledger import PgSchema
from tests.support.servers import running_server

REPO = Path(__file__).resolve().parent.parent
MIX = [("penny-local", False), ("penny-local", True), ("penny-paid", False), ("penny", False)]


def seconds(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"p50 {statistics.median(ordered):6.2f} s  p95 {p95:6.2f} s  max {ordered[-1]:6.2f} s"


def main() -> None:
    logging.disable(logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--bound", type=float, default=10.0, help="server.max_queue_wait_s")
    parser.add_argument("--factor", type=float, default=3.0, help="the flood, in multiples of capacity")
    parser.add_argument("--requests", type=int, default=None, help="flood size (default: from --factor)")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--warm-answers", type=int, default=3)
    parser.add_argument(
        "--postgresql", action="store_true", help="ledger in a throwaway schema on 127.0.0.1:5432/test"
    )
    args = parser.parse_args()

    fake = FakePaid()
    with contextlib.ExitStack() as stack:
        paid_base = stack.enter_context(running_server(fake.app))
        ledger = {"db_url": stack.enter_context(PgSchema())} if args.postgresql else {}
        settings = Settings(
            data_dir=Path(tempfile.mkdtemp(prefix="penny-bench-overload-")),
            ledger=ledger,
            models={
                "local": args.model,
                "cache_dir": REPO / ".penny" / "models",
                "n_ctx": 2048,
                "max_tokens": args.max_tokens,
            },
            paid={"base_url": f"{paid_base}/v1", "model": "gpt-4o-mini", "max_retries": 0},
            cascade={"shadow_rate": 0.0},
            pool={"enabled": True},
            server={"max_queue_wait_s": args.bound},
        )
        penny = Penny(settings)
        penny.ingester().ingest([REPO / "samples"])
        penny.ledger.add_user("flood")
        penny.ledger.set_budget("flood", 600, "day")  # two paid worst cases at a time
        key = penny.ledger.create_key("flood")[1]
        base = stack.enter_context(running_server(create_app(settings, penny), startup_timeout_s=300))
        pool = penny.pool
        assert pool is not None

        for n in range(args.warm_answers):  # one at a time: the service time, and the estimate's input
            flood(base, key, [Shot("penny-local", False, QUESTIONS[n % len(QUESTIONS)])], timeout_s=300)
        service_s = statistics.median(pool.timings.service_s)
        slots = pool.dispatcher.slots_total
        capacity = slots * (args.bound + service_s) / service_s
        size = args.requests or max(len(MIX), math.ceil(args.factor * capacity))
        shots = [
            Shot(*MIX[n % len(MIX)], QUESTIONS[n % len(QUESTIONS)])  # type: ignore[misc]
            for n in range(size)
        ]
        print(
            f"model {args.model}, {slots} slot(s), service p50 {service_s:.2f} s, bound {args.bound:g} s: "
            f"capacity ~{capacity:.0f} requests per bound + answer; flood {size} at once "
            f"({size / capacity:.1f}x)"
        )
        began = time.perf_counter()
        outcomes = flood(base, key, shots)
        wall = time.perf_counter() - began
        metrics = httpx.get(f"{base}/metrics").text
        one_answer = max(pool.timings.service_s)
        report(outcomes, args.bound, one_answer, wall, metrics)
        books(penny, outcomes, args.warm_answers)


def report(outcomes: list[Outcome], bound: float, one_answer: float, wall: float, metrics: str) -> None:
    answered = [o.seconds for o in outcomes if o.answered]
    early = [o.seconds for o in outcomes if o.shed and o.seconds < bound]
    late = [o.seconds for o in outcomes if o.shed and o.seconds >= bound]
    timed_out = [o for o in outcomes if o.timed_out]
    other = [o for o in outcomes if not (o.answered or o.shed or o.timed_out)]
    print(f"flood done in {wall:.1f} s")
    print(f"  answered          {len(answered):4d}  {seconds(answered)}")
    print(f"  503 at once       {len(early):4d}  {seconds(early)}")
    print(f"  503 after waiting {len(late):4d}  {seconds(late)}")
    print(f"  client timeout    {len(timed_out):4d}")
    print(f"  other errors      {len(other):4d}  {[(o.status, o.error) for o in other][:3]}")
    for profile, stream in MIX:
        mine = [o for o in outcomes if (o.shot.profile, o.shot.stream) == (profile, stream)]
        late_ones = [round(o.seconds, 1) for o in mine if o.timed_out or o.seconds >= bound]
        print(
            f"    {profile + (' stream' if stream else ''):<18} {len(mine):3d}: answered "
            f"{sum(o.answered for o in mine):3d}, 503 {sum(o.shed for o in mine):3d}, timed out "
            f"{sum(o.timed_out for o in mine):2d}; past the bound: {late_ones}"
        )
    slowest = max(o.seconds for o in outcomes)
    print(
        f"  slowest {slowest:.2f} s vs bound + one answer {bound + one_answer:.2f} s "
        f"(slowest service {one_answer:.2f} s)"
    )
    for reason in ("estimate", "queue_wait"):
        match = re.search(rf'^penny_pool_shed_total{{reason="{reason}"}} (\S+)$', metrics, re.MULTILINE)
        print(f"  penny_pool_shed_total{{reason={reason}}} {match.group(1) if match else 0}")


def books(penny: Penny, outcomes: list[Outcome], warm: int) -> None:
    ledger = penny.ledger
    with ledger.engine.connect() as conn:
        still_open = conn.execute(
            sa.select(sa.func.count()).where(reservations.c.state == "open")
        ).scalar_one()
        rows = conn.execute(sa.select(sa.func.count()).select_from(answers)).scalar_one()
    answered = sum(o.answered for o in outcomes) + warm
    print(
        f"ledger: balances {ledger.check_balances() == []}, open reservations {still_open}, "
        f"answer rows {rows} for {answered} answers"
    )


if __name__ == "__main__":
    main()
