"""Ledger over real HTTP (uvicorn): keys, own-usage-only, revocation, admin key, 429 shape."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, post
from litestar.datastructures import State

from assistant.api.auth import principal_of, require_api_key
from assistant.api.errors import EXCEPTION_HANDLERS
from assistant.api.ledger_routes import LEDGER_ROUTES
from assistant.ledger import Ledger, Usage
from tests.support.servers import running_server

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices

ADMIN_KEY = "admin-test-key-0123456789"


@post("/test/paid-call", guards=[require_api_key], sync_to_thread=True)
def paid_call(request: Request[Any, Any, Any], state: State) -> dict[str, Any]:
    """Stands in for an escalated /v1/ask: reserve, (upstream), settle."""
    ledger: Ledger = state.ledger
    reservation = ledger.reserve(
        request_id=request.headers["x-request-id"],
        principal=principal_of(request),
        model="gpt-4o-mini",
        prompt_tokens=1000,
        max_completion_tokens=500,
    )
    ledger.mark_sent(reservation)
    return {"cost_micro_usd": ledger.settle(reservation, Usage(1000, 500))}


def make_app(ledger: Ledger) -> Litestar:
    return Litestar(
        route_handlers=[*LEDGER_ROUTES, paid_call],
        state=State({"ledger": ledger, "auth": True}),
        exception_handlers=EXCEPTION_HANDLERS,
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_usage_is_private_and_revoked_keys_get_401(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PENNY_ADMIN_KEY", ADMIN_KEY)
    admin = bearer(ADMIN_KEY)
    with running_server(make_app(ledger)) as base, httpx.Client(base_url=base, timeout=30) as client:
        # Admin: users with budgets, one key each (shown once).
        for name in ("alice", "bob"):
            made = client.post(
                "/admin/users", json={"name": name, "budget_usd": "0.001", "window": "day"}, headers=admin
            )
            assert made.status_code == 201, made.text
            assert made.json()["budget"]["limit_micro_usd"] == 1000
        alice = client.post("/admin/users/alice/keys", headers=admin).json()
        bob = client.post("/admin/users/bob/keys", headers=admin).json()
        assert alice["key"].startswith("pny_") and alice["user"] == "alice"
        listed = client.get("/admin/users/alice/keys", headers=admin).json()["data"]
        assert [k["id"] for k in listed] == [alice["id"]] and "key" not in listed[0]
        assert client.post("/admin/users", json={"name": "alice"}, headers=admin).status_code == 409

        # Spend: alice one paid call (450 micro-USD), bob two; bob's third is over budget → 429.
        for who, request_id in ((alice, "a1"), (bob, "b1"), (bob, "b2")):
            paid = client.post("/test/paid-call", headers={**bearer(who["key"]), "x-request-id": request_id})
            assert paid.status_code == 201, paid.text
        refused = client.post("/test/paid-call", headers={**bearer(bob["key"]), "x-request-id": "b3"})
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "insufficient_quota"
        assert 0 < int(refused.headers["retry-after"]) <= 86400

        # Each key sees only its own usage.
        mine = client.get("/v1/usage", params={"by": "user"}, headers=bearer(alice["key"]))
        assert mine.status_code == 200, mine.text
        body = mine.json()
        assert body["user"] == "alice"
        assert [row["key"] for row in body["data"]] == ["alice"]
        assert body["data"][0]["cost_micro_usd"] == 450
        assert body["budget"]["committed_micro_usd"] == 450 and body["budget"]["remaining_micro_usd"] == 550
        snoop = client.get("/v1/usage", params={"user": "bob"}, headers=bearer(alice["key"]))
        assert snoop.status_code == 403
        assert snoop.json()["error"]["param"] == "user" and "900" not in snoop.text
        assert client.get("/v1/usage", headers=bearer(bob["key"])).json()["data"][0]["cost_micro_usd"] == 900

        # Admin routes need the admin key: none → 401, a user key → 403.
        assert client.get("/admin/usage").status_code == 401
        assert client.get("/admin/usage", headers=bearer(alice["key"])).status_code == 403
        everyone = client.get("/admin/usage", params={"by": "user"}, headers=admin).json()["data"]
        assert {row["key"]: row["cost_micro_usd"] for row in everyone} == {"alice": 450, "bob": 900}

        # Missing and unknown keys: 401 in OpenAI's shape.
        missing = client.get("/v1/usage")
        assert missing.status_code == 401
        assert set(missing.json()["error"]) == {"message", "type", "param", "code"}
        assert missing.headers["www-authenticate"] == "Bearer"
        assert client.get("/v1/usage", headers=bearer("pny_not-a-real-key")).status_code == 401

        # Revocation takes effect on the next request.
        revoked = client.delete(f"/admin/keys/{alice['id']}", headers=admin)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        after = client.get("/v1/usage", headers=bearer(alice["key"]))
        assert after.status_code == 401
        assert after.json()["error"]["code"] == "invalid_api_key"
        assert client.get("/v1/usage", headers=bearer(bob["key"])).status_code == 200

        # Budgets can be changed by the admin; bad input is a clear 400, nothing changed.
        raised = client.put("/admin/users/bob/budget", json={"usd": 1, "window": "month"}, headers=admin)
        assert raised.status_code == 200 and raised.json()["limit_micro_usd"] == 1_000_000
        bad = client.put("/admin/users/bob/budget", json={"usd": "-1"}, headers=admin)
        assert bad.status_code == 400
        assert client.put("/admin/users/nobody/budget", json={"usd": 1}, headers=admin).status_code == 404


def test_admin_api_is_off_without_an_admin_key(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PENNY_ADMIN_KEY", raising=False)
    with running_server(make_app(ledger)) as base, httpx.Client(base_url=base, timeout=30) as client:
        response = client.get("/admin/users", headers=bearer("anything"))
        assert response.status_code == 403
        assert "PENNY_ADMIN_KEY" in response.json()["error"]["message"]


def test_cost_of_ownership_over_http_shows_each_caller_only_theirs(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """alice (admin of red, which owns `handbook`) and bob (member) each ran an ingest; storage accrued.
    bob sees his own run and no storage; alice as red's admin sees the team's, storage included; the
    admin key sees every collection; bob asking for red's is refused."""
    from datetime import date

    monkeypatch.setenv("PENNY_ADMIN_KEY", ADMIN_KEY)
    ledger.create_team("red")
    keys = {}
    for name, role in (("alice", "admin"), ("bob", "member")):
        ledger.add_user(name)
        ledger.set_member("red", name, role)  # type: ignore[arg-type]
        keys[name] = ledger.create_key(name)[1]
    ledger.assign_collection("handbook", "red")
    alice_run = ledger.record_ingest(ledger.get_user("alice").id, "handbook", files=1, chunks=1, seconds=36.0)
    bob_run = ledger.record_ingest(ledger.get_user("bob").id, "handbook", files=1, chunks=1, seconds=72.0)
    ledger.record_ingest(None, "other", files=1, chunks=1, seconds=3.6)  # the admin key's, no team
    [day] = ledger.accrue_storage({"handbook": 2**30}, date(2026, 4, 1))  # 80000 / 30 -> 2667
    assert (alice_run.micro_usd, bob_run.micro_usd, day.micro_usd) == (850, 1700, 2667)

    def data(key: str, **params: str) -> httpx.Response:
        return client.get("/v1/usage", params=params, headers=bearer(key))

    with running_server(make_app(ledger)) as base, httpx.Client(base_url=base, timeout=30) as client:
        [bob] = data(keys["bob"], by="collection").json()["data"]
        assert (bob["key"], bob["ingest_micro_usd"], bob["storage_micro_usd"], bob["total_micro_usd"]) == (
            "handbook",
            1700,
            0,
            1700,
        )
        assert data(keys["bob"], by="team", team="red").status_code == 403
        [red] = data(keys["alice"], by="team", team="red").json()["data"]
        assert (red["key"], red["ingests"], red["total_micro_usd"]) == ("red", 2, 850 + 1700 + 2667)
        every = client.get("/admin/usage", params={"by": "collection"}, headers=bearer(ADMIN_KEY)).json()
        assert {row["key"]: row["total_micro_usd"] for row in every["data"]} == {
            "handbook": 850 + 1700 + 2667,
            "other": 85,
        }
