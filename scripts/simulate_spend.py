"""Simulated traffic through the real ledger, for the spend dashboard's screenshot and for looking at spend
without waiting for users.

    .venv/bin/python scripts/simulate_spend.py [--days 20] [--ledger PATH] [--screenshot FILE.png]

Four users (two in team ``research``) ask on working days, fewer at weekends, with a fixed seed. Each
answer goes the way Penny's answers go on the shared sample: most are answered locally (worker-seconds at
the price table's instance price), about one in five is escalated to the paid model (reserved, sent,
settled at the paid model's price; the local try is paid too), a few are cache hits. Each answer's
paid-only cost is its paid prompt and answer at the paid model's price, as the cascade records it. One
user's month budget is set where the rate heads past it; the last day carries one user's burst, so the
anomaly check raises a spike. Every answer is asked of the python3.11-doc collection, ingested on the
first day at its measured cost, its storage accrued daily, and carries its retrieval and evaluator compute.
Prints the totals, the full cost of the day before the last (a weekday without the burst) by part, per
answer and as shares; ``--screenshot`` renders the dashboard in headless Chromium (Debian's chromium +
chromium-driver) at that path.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from assistant.ledger import AnswerRecord, Ledger, PriceTable, Principal, Usage  # noqa: E402
from assistant.ledger.anomalies import AnomalyRules  # noqa: E402
from assistant.ledger.prices import format_usd  # noqa: E402

# Measured, not guessed: the local answer's time and Penny's own retrieval and evaluator time are medians of
# benchmarks/bench_overhead.py on 2026-12-07 (docs/load.md: raw llama.cpp 2.2 s for 48 tokens; retrieval
# 17.2 ms and evaluator 14.0 ms on passages no recent question touched); the python3.11-doc ingest and its
# footprint are the run in README.md (`penny usage --by collection`).
GENERATION_S = 2.2
RETRIEVAL_S = 0.0172
EVALUATION_S = 0.0140
COLLECTION = "pydoc"
INGEST = {"files": 582, "chunks": 19_077, "seconds": 857.1}
STORAGE_BYTES = 147_762_503
PAID_MODEL = "gpt-4o"
LOCAL_MODEL = "qwen2.5-0.5b"
ADMIN_KEY = "simulated-admin-key"
USERS = {"alice": 40, "bob": 25, "carol": 15, "dave": 8}  # mean questions per working day
TEAM = ("research", ("alice", "bob"))


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def simulate(ledger: Ledger, end: date, days: int, seed: int = 7) -> dict[date, int]:
    """Record the traffic; returns each day's amortised ingest (the sum of its answers' shares)."""
    rng = np.random.default_rng(seed)
    clock = Clock(datetime(end.year, end.month, end.day))
    ledger.clock = clock
    principals: dict[str, Principal] = {}
    for name in USERS:
        ledger.add_user(name)
        principal = ledger.authenticate(ledger.create_key(name)[1])
        assert principal is not None
        principals[name] = principal
    team = ledger.create_team(TEAM[0])
    for name in TEAM[1]:
        ledger.set_member(TEAM[0], name, role="admin" if name == "alice" else "member")
        principals[name] = dataclasses.replace(principals[name], team_id=team.id)
    ledger.set_team_budget(TEAM[0], 3_000_000, "month")
    ledger.set_budget("bob", 250_000, "month")
    price = ledger.prices.cost_micro_usd
    clock.now = datetime(end.year, end.month, end.day) - timedelta(days=days - 1)
    ledger.record_ingest(principals["alice"].user_id, COLLECTION, **INGEST)  # type: ignore[arg-type]
    serial = 0
    amortised: dict[date, int] = {}
    for offset in range(days - 1, -1, -1):
        day = end - timedelta(days=offset)
        clock.now = datetime(day.year, day.month, day.day)
        ledger.accrue_storage({COLLECTION: STORAGE_BYTES}, day)
        weekend = day.weekday() >= 5
        for name, mean in USERS.items():
            minutes = list(rng.uniform(8 * 60, 18 * 60, rng.poisson(mean * (0.2 if weekend else 1.0))))
            if name == "carol" and offset == 0:  # a script of hers loops over 300 questions in an hour
                minutes += list(rng.uniform(17 * 60, 18 * 60, 300))
            for minute in sorted(minutes):
                clock.now = datetime(day.year, day.month, day.day) + timedelta(minutes=float(minute))
                serial += 1
                answer(ledger, principals[name], f"sim-{serial}", rng, price)
                share = ledger.amortised_ingest_micro_usd(COLLECTION)  # as the answer's `penny` block has it
                amortised[day] = amortised.get(day, 0) + share
    clock.now = datetime(end.year, end.month, end.day, 18, 0)
    return amortised


def answer(ledger: Ledger, who: Principal, request_id: str, rng: np.random.Generator, price) -> None:  # type: ignore[no-untyped-def]
    prompt, completion = int(rng.integers(550, 950)), int(rng.integers(20, 90))
    paid_only = price(PAID_MODEL, Usage(prompt, completion))
    roll = rng.random()
    compute = {  # the cache lookup and retrieval, and the evaluator (none for a cache hit)
        "retrieval_seconds": RETRIEVAL_S,
        "retrieval_micro_usd": ledger.compute_cost_micro_usd(RETRIEVAL_S),
    }
    if roll < 0.07:  # a cache hit: nothing generated, nothing paid
        hit = AnswerRecord(request_id, who, "cache", COLLECTION, paid_only_micro_usd=paid_only, **compute)
        ledger.record_answer(hit)
        return
    compute |= {
        "evaluation_seconds": EVALUATION_S,
        "evaluation_micro_usd": ledger.compute_cost_micro_usd(EVALUATION_S),
    }
    seconds = float(rng.lognormal(np.log(GENERATION_S), 0.35))
    local = {
        "collection": COLLECTION,
        **compute,
        "local_model": LOCAL_MODEL,
        "local_prompt_tokens": int(prompt * 0.45),
        "local_completion_tokens": completion,
        "local_cost_micro_usd": ledger.compute_cost_micro_usd(seconds),
    }
    if roll < 0.80:
        abstained = rng.random() < 0.06
        record = AnswerRecord(
            request_id, who, "local", abstained=abstained, paid_only_micro_usd=paid_only, **local
        )
        ledger.record_answer(record)
        return
    held = ledger.reserve(
        request_id=request_id,
        principal=who,
        model=PAID_MODEL,
        prompt_tokens=prompt,
        max_completion_tokens=256,
        sent=True,
    )
    record = AnswerRecord(request_id, who, "paid", escalated=True, paid_model=PAID_MODEL, **local)
    ledger.settle(held, Usage(prompt, completion), answer=record)


def full_cost_of_a_day(ledger: Ledger, day: date, amortised: dict[date, int]) -> None:
    """What a day's answers cost in full, by part, per answer and as shares, from the ledger's rows."""
    import sqlalchemy as sa

    from assistant.ledger.schema import answers, storage_accruals

    start = datetime(day.year, day.month, day.day)
    window = (answers.c.created_at >= start, answers.c.created_at < start + timedelta(days=1))
    parts = ("paid_cost_micro_usd", "local_cost_micro_usd", "retrieval_micro_usd", "evaluation_micro_usd")
    with ledger.engine.connect() as conn:
        count, *sums = conn.execute(
            sa.select(
                sa.func.count(), *(sa.func.coalesce(sa.func.sum(answers.c[p]), 0) for p in parts)
            ).where(*window)
        ).one()
        storage = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(storage_accruals.c.micro_usd), 0)).where(
                storage_accruals.c.day == day
            )
        ).scalar_one()
    lines = dict(zip(("paid", "local generation", "retrieval", "evaluation"), map(int, sums), strict=True))
    lines |= {"ingest (amortised)": amortised.get(day, 0), "storage": int(storage)}
    total = sum(lines.values())
    each = format_usd(total // count)
    print(f"full cost of {day} ({day:%A}): {count} answers, {format_usd(total)}, {each} an answer")
    for part, micro_usd in lines.items():
        share = f"{micro_usd / count:>9.2f} micro-USD/answer  {100 * micro_usd / total:5.1f} %"
        print(f"  {part:<19} {format_usd(micro_usd):>12}  {share}")


def screenshot(ledger: Ledger, path: Path) -> None:
    import os

    from litestar import Litestar
    from litestar.datastructures import State
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    from assistant.api.dashboard_routes import DASHBOARD_ROUTES
    from assistant.api.errors import EXCEPTION_HANDLERS
    from tests.support.servers import running_server

    os.environ["PENNY_ADMIN_KEY"] = ADMIN_KEY
    app = Litestar(
        route_handlers=DASHBOARD_ROUTES,
        state=State({"ledger": ledger, "auth": True}),
        exception_handlers=EXCEPTION_HANDLERS,
    )
    options = webdriver.ChromeOptions()
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--window-size=1100,1400",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    try:
        with running_server(app) as base:
            driver.get(base + "/dashboard")
            driver.find_element(By.ID, "days").send_keys("30")
            driver.find_element(By.ID, "api-key").send_keys(ADMIN_KEY)
            driver.find_element(By.ID, "load").click()
            WebDriverWait(driver, 60).until(ec.visibility_of_element_located((By.ID, "report")))
            path.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(path))
    finally:
        driver.quit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--end", type=date.fromisoformat, default=date(2026, 11, 20), help="last day (UTC)")
    parser.add_argument("--ledger", type=Path, default=None, help="SQLite file (default: a temporary one)")
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args()
    path = args.ledger or Path(tempfile.mkdtemp(prefix="penny-sim-")) / "ledger.db"
    ledger = Ledger.open(f"sqlite:///{path}", PriceTable.load())
    amortised = simulate(ledger, args.end, args.days)
    new = ledger.check_spend_anomalies(AnomalyRules())
    rows = ledger.usage(by="day")
    answers = ledger.outcomes(since=args.end - timedelta(days=args.days - 1))
    cost = sum(r.cost_micro_usd for r in rows)
    paid_only = sum(r.paid_only_micro_usd for r in rows)
    saved = sum(r.saved_micro_usd or 0 for r in rows)
    print(f"ledger {path}: {args.days} days, {answers.answers} answers, {answers.escalated} escalated")
    print(f"spent {format_usd(cost)}; paid-only {format_usd(paid_only)}; saved {format_usd(saved)}", end="")
    print(f" ({100 * saved / paid_only:.1f}%); {new} anomaly alert(s)")
    for event in ledger.alert_events():
        print(f"  alert {event.kind}: {event.scope} {event.subject} ({event.window})")
    full_cost_of_a_day(ledger, args.end - timedelta(days=1), amortised)
    if args.screenshot:
        screenshot(ledger, args.screenshot)
        print(f"screenshot: {args.screenshot}")
    ledger.close()


if __name__ == "__main__":
    main()
