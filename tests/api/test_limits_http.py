"""Rate limits over real HTTP: 429 with Retry-After and x-ratelimit-* headers, streams hold a concurrency
slot until they end, admin overrides; and 50 concurrent requests across two `penny serve` processes sharing
Redis and PostgreSQL admit exactly the configured requests per minute.

Nothing is ingested, so every admitted question is answered by abstaining before the local model runs:
the limiter, which runs before any answering, is what these tests measure."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest

from assistant.service import Penny
from tests.support.ledger import PgSchema
from tests.support.limits import REDIS_URL
from tests.support.servers import (
    BIN,
    free_port,
    penny_cli,
    penny_env,
    ready_or_raise,
    released_together,
    running_server,
    spawn,
    stop,
    wait_for,
)

pytest_plugins = ["tests.support.limits"]  # fixtures: redis_prefix

ADMIN_KEY = "admin-test-key-limits-0123"
RATE_HEADERS = ("limit-requests", "remaining-requests", "reset-requests")


@pytest.fixture
def served(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    """One in-process server (in-process limiter), user alice limited to 3 rpm and 1 request in flight."""
    from assistant.api import create_app

    monkeypatch.setenv("PENNY_ADMIN_KEY", ADMIN_KEY)
    limited = settings.model_copy(
        update={"limits": settings.limits.model_copy(update={"user_rpm": 3, "overrides_cache_s": 0})}
    )
    penny = Penny(limited)
    penny.ledger.add_user("alice")
    _, key = penny.ledger.create_key("alice")
    with running_server(create_app(limited, penny, warm_up=False)) as base:
        yield base, key, "alice"


def ask(client: httpx.Client, key: str, question: str = "Who founded Rome?") -> httpx.Response:
    return client.post("/v1/ask", json={"question": question}, headers={"Authorization": f"Bearer {key}"})


def test_over_the_rpm_limit_is_a_429_with_openai_headers(served: tuple[str, str, str]) -> None:
    base, key, _ = served
    with httpx.Client(base_url=base, timeout=120) as client:
        answers = [ask(client, key) for _ in range(3)]
        assert [r.status_code for r in answers] == [200, 200, 200]
        assert [r.headers["x-ratelimit-remaining-requests"] for r in answers] == ["2", "1", "0"]
        assert answers[0].headers["x-ratelimit-limit-requests"] == "3"
        refused = ask(client, key)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert all(f"x-ratelimit-{name}" in refused.headers for name in RATE_HEADERS)
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    error = refused.json()["error"]
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert "requests per minute" in error["message"]


def test_a_stream_holds_its_slot_until_it_ends(served: tuple[str, str, str]) -> None:
    base, key, user = served
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    auth = {"Authorization": f"Bearer {key}"}
    body = {"model": "penny", "stream": True, "messages": [{"role": "user", "content": "Who founded Rome?"}]}
    with httpx.Client(base_url=base, timeout=120) as client:
        changed = client.put(
            f"/admin/limits/users/{user}", json={"rpm": 100, "max_concurrent": 1}, headers=admin
        )
        assert changed.status_code == 200, changed.text
        assert (changed.json()["rpm"], changed.json()["max_concurrent"]) == (100, 1)
        listed = client.get("/admin/limits", headers=admin).json()
        assert listed["defaults"]["user"]["rpm"] == 3 and listed["data"][0]["name"] == user
        with client.stream("POST", "/v1/chat/completions", json=body, headers=auth) as stream:
            assert stream.status_code == 200
            assert stream.headers["x-ratelimit-limit-requests"] == "100"
            busy = ask(client, key)  # the stream is still open: its slot is taken
            lines = list(stream.iter_lines())
        assert "data: [DONE]" in lines
        assert busy.status_code == 429 and "in flight" in busy.json()["error"]["message"]
        assert busy.headers["Retry-After"] == "1"
        # The stream ended: its lease is released (after the response completes, hence the wait).
        wait_for(lambda: ask(client, key).status_code == 200, timeout_s=30, what="the slot to be released")
        cleared = client.delete(f"/admin/limits/users/{user}", headers=admin)
        assert cleared.json() == {"cleared": True}


def test_50_concurrent_requests_across_two_servers_admit_exactly_the_limit(
    tmp_path: Path, model_cache: Path, tiny_model_path: Path, redis_prefix: str
) -> None:
    with PgSchema() as db_url:
        env = penny_env(
            tmp_path / "data",
            model_cache,
            LEDGER__DB_URL=db_url,
            REDIS_URL=REDIS_URL,
            LIMITS__REDIS_PREFIX=redis_prefix,
        )
        penny_cli(env, "users", "add", "alice")
        penny_cli(env, "keys", "create", "alice", "--key-file", str(tmp_path / "alice.key"))
        key = (tmp_path / "alice.key").read_text().strip()
        assert "rpm 7" in penny_cli(
            env, "limits", "set", "--user", "alice", "--rpm", "7", "--concurrent", "50"
        )
        shown = penny_cli(env, "limits", "show")
        assert "alice" in shown and "Redis" in shown
        ports = [free_port(), free_port()]
        logs = [tmp_path / f"serve-{port}.log" for port in ports]
        servers = [
            spawn([str(BIN / "penny"), "serve", "--port", str(port)], log, env)
            for port, log in zip(ports, logs, strict=True)
        ]
        try:
            for port, server, log in zip(ports, servers, logs, strict=True):
                ready_or_raise(f"http://127.0.0.1:{port}/readyz", server, log)
            statuses = _concurrently(ports, key, 50)
        finally:
            for server in servers:
                stop(server)
    counted = Counter(status for status, _ in statuses)
    assert counted == {200: 7, 429: 43}, counted
    assert {port for status, port in statuses if status == 429} == set(ports)  # both servers refused


def _concurrently(ports: list[int], key: str, n: int) -> list[tuple[int, int]]:
    """``n`` requests released together, alternating between the servers: (status, port) each."""
    limits = httpx.Limits(max_connections=n)
    clients = [
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300, limits=limits) for port in ports
    ]

    def one(i: int) -> tuple[int, int]:
        question = f"Question {i} {uuid.uuid4().hex[:4]}?"
        return ask(clients[i % len(ports)], key, question).status_code, ports[i % len(ports)]

    try:
        return released_together([partial(one, i) for i in range(n)])
    finally:
        for client in clients:
            client.close()


def test_the_paid_token_estimate_holds_the_reservation_headroom(tmp_path: Path) -> None:
    from assistant.api.limiting import paid_token_estimate
    from assistant.paid import tokens
    from assistant.settings import Settings

    def estimate(margin: float, overhead: int, mode: str = "penny") -> int:
        paid = {"base_url": "http://127.0.0.1:9/v1", "max_tokens": 100}
        paid |= {"prompt_token_margin": margin, "prompt_token_overhead": overhead}
        settings = Settings(data_dir=tmp_path, paid=paid)  # type: ignore[arg-type]
        return paid_token_estimate(settings, mode, "Where is Normandy?", [], None)

    counted = estimate(0, 0) - 100  # the prompt and top_k passages, without headroom
    assert estimate(0.1, 32) == tokens.with_headroom(counted, 0.1, 32) + 100 > counted + 100
    assert estimate(0.1, 32, mode="local") == 0  # never reaches the paid tier
