"""Overload (issue #33): one replica whose local tier is one worker, flooded with several times what it can
start within ``server.max_queue_wait_s``, by a user whose paid budget runs out (so ``penny-paid`` requests
fall back to the local tier too). Every request gets its answer or a 503 with Retry-After, the 503s come
early rather than after a timeout, none waits past the bound plus an answer's time, the shed metric counts
them, and the ledger balances: every reservation settled or released, an answer row per answer."""

from __future__ import annotations

import re

import httpx
import sqlalchemy as sa

from assistant.ledger.schema import answers, reservations
from assistant.service import Penny
from tests.conftest import REPO
from tests.support.flood import QUESTIONS, Shot, flood
from tests.support.servers import running_server

BOUND_S = 2.0
SHOTS = [
    Shot(profile, stream, QUESTIONS[n % len(QUESTIONS)])
    for n, (profile, stream) in enumerate(
        [("penny-local", False), ("penny-local", True), ("penny-paid", False), ("penny", False)] * 6
    )
]


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_a_flood_gets_answers_or_early_503s_and_the_ledger_balances(
    tmp_path, model_cache, paid_server, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from assistant.api import create_app
    from assistant.settings import Settings

    fake, paid_url = paid_server
    fake.reset()
    monkeypatch.setenv("PENNY_CONFIG", str(tmp_path / "absent.toml"))
    settings = Settings(
        data_dir=tmp_path / "data",
        models={"local": "smollm2-135m", "cache_dir": model_cache, "n_ctx": 2048, "max_tokens": 16},
        paid={"base_url": paid_url, "model": "gpt-4o-mini", "max_retries": 0},
        cascade={"shadow_rate": 0.0},
        pool={"enabled": True, "min_workers": 1, "max_workers": 1, "threads_per_worker": 1},
        server={"max_queue_wait_s": BOUND_S},
    )
    penny = Penny(settings)
    assert penny.ingester().ingest([REPO / "samples" / "normans.md"]).ok
    ledger = penny.ledger
    ledger.add_user("flood")
    ledger.set_budget("flood", 1000, "day")  # a few paid worst cases: it runs out during the flood
    key = ledger.create_key("flood")[1]

    with running_server(create_app(settings, penny), startup_timeout_s=180) as base:
        # One answer first: the expected wait needs a measured service time.
        [warm] = flood(base, key, [Shot("penny-local", False, QUESTIONS[0])])
        assert warm.answered
        outcomes = flood(base, key, SHOTS)
        metrics = httpx.get(f"{base}/metrics").text

    assert not [o for o in outcomes if o.timed_out]
    shed = [o for o in outcomes if o.shed]
    answered = [o for o in outcomes if o.answered]
    assert len(shed) + len(answered) == len(SHOTS), [(o.shot, o.status, o.error) for o in outcomes]
    assert answered and shed
    for outcome in shed:
        if outcome.status == 503:  # refused before the response started
            assert outcome.error is not None and outcome.error["type"] == "server_error"
            assert outcome.retry_after is not None and int(outcome.retry_after) >= 1
        else:  # a stream admitted, then not started within the bound: an error event, no content
            assert outcome.shot.stream and outcome.status == 200
    assert min(o.seconds for o in shed) < BOUND_S  # early: at admission, not after waiting out the bound
    # No request outlives the bound plus one answer (a second local try included) and its bookkeeping.
    one_answer = max(penny.pool.timings.service_s)  # type: ignore[union-attr]
    slowest = max(o.seconds for o in outcomes)
    assert slowest < BOUND_S + 2 * one_answer + 10, (slowest, one_answer)

    estimate = _metric(metrics, 'penny_pool_shed_total{reason="estimate"}')
    waited = _metric(metrics, 'penny_pool_shed_total{reason="queue_wait"}')
    assert estimate >= 1 and estimate + waited == len(shed)

    # The ledger: nothing held, every answer recorded once, the budget equals what was charged.
    assert ledger.check_balances() == []
    with ledger.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).where(reservations.c.state == "open")).scalar() == 0
        rows = conn.execute(sa.select(answers.c.paid_cost_micro_usd)).scalars().all()
    assert len(rows) == len(answered) + 1  # and the warm-up's
    status = ledger.budget_status(ledger.authenticate(key))  # type: ignore[arg-type]
    assert status is not None and status.committed_micro_usd == sum(rows)
    assert any(o.shot.profile == "penny-paid" and o.answered for o in outcomes)
