"""Keys and teams over real HTTP (uvicorn, no models): key options and rotation, expired keys, team admin
routes, team usage for team admins only, and a team budget shared by its members."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, post
from litestar.datastructures import State

from assistant.api.auth import authorize_collection, require_api_key
from assistant.api.errors import EXCEPTION_HANDLERS
from assistant.api.ledger_routes import LEDGER_ROUTES
from assistant.ledger import Ledger, Usage
from tests.support.servers import running_server

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices

ADMIN_KEY = "admin-test-key-0123456789"


@post("/test/paid-call", guards=[require_api_key])
async def paid_call(request: Request[Any, Any, Any], state: State) -> dict[str, Any]:
    """Stands in for an escalated answer on a collection: authorise, reserve, (paid call), settle."""
    principal, _name = await authorize_collection(request, request.query_params.get("collection"))
    ledger: Ledger = state.ledger
    reservation = ledger.reserve(
        request_id=request.headers["x-request-id"],
        principal=principal,
        model="gpt-4o-mini",
        prompt_tokens=1000,
        max_completion_tokens=500,
    )
    ledger.mark_sent(reservation)
    return {"cost_micro_usd": ledger.settle(reservation, Usage(1000, 500)), "team": principal.team_name}


def make_app(ledger: Ledger) -> Litestar:
    return Litestar(
        route_handlers=[*LEDGER_ROUTES, paid_call],
        state=State({"ledger": ledger, "auth": True, "default_collection": "default"}),
        exception_handlers=EXCEPTION_HANDLERS,
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def client(ledger: Ledger, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("PENNY_ADMIN_KEY", ADMIN_KEY)
    with running_server(make_app(ledger)) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client


def test_key_options_rotation_and_expiry(client: httpx.Client, ledger: Ledger) -> None:
    admin = bearer(ADMIN_KEY)
    assert client.post("/admin/users", json={"name": "alice"}, headers=admin).status_code == 201
    made = client.post(
        "/admin/users/alice/keys",
        json={"label": "laptop", "expires_in_s": 30 * 86400, "profiles": ["penny-local"]},
        headers=admin,
    )
    assert made.status_code == 201, made.text
    key = made.json()
    assert (key["label"], key["profiles"]) == ("laptop", ["penny-local"]) and key["expires_at"]
    assert (
        client.post("/admin/users/alice/keys", json={"profiles": ["gpt-5"]}, headers=admin).json()["error"][
            "param"
        ]
        == "profiles"
    )
    assert client.post("/admin/users/alice/keys", headers=admin).json()["profiles"] is None  # no body: all

    rotated = client.post(f"/admin/keys/{key['id']}/rotate", json={"grace_s": 3600}, headers=admin)
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["replaces"]["id"] == key["id"] and new["replaces"]["expires_at"] < key["expires_at"]
    assert (new["label"], new["profiles"], new["user"]) == ("laptop", ["penny-local"], "alice")
    for api_key in (key["key"], new["key"]):  # both work during the grace period
        assert client.get("/v1/usage", headers=bearer(api_key)).status_code == 200
    assert client.post("/admin/keys/key_nope/rotate", headers=admin).status_code == 404
    assert (
        client.post(f"/admin/keys/{key['id']}/rotate", json={"grace_s": -1}, headers=admin).status_code == 400
    )

    # Expired and revoked keys get the same 401.
    _info, expired = ledger.create_key("alice", expires_at=ledger.clock() - timedelta(seconds=1))
    client.delete(f"/admin/keys/{new['id']}", headers=admin)
    answers = [client.get("/v1/usage", headers=bearer(k)) for k in (expired, new["key"], "pny_never-issued")]
    assert {r.status_code for r in answers} == {401}
    assert len({r.text for r in answers}) == 1
    listed = client.get("/admin/users/alice/keys", headers=admin).json()["data"]
    assert {k["label"] for k in listed} >= {"laptop"} and all("key" not in k for k in listed)


def test_teams_admin_team_usage_and_shared_budget(client: httpx.Client) -> None:
    admin = bearer(ADMIN_KEY)
    keys = {}
    for name in ("alice", "bob", "carol"):
        client.post("/admin/users", json={"name": name}, headers=admin)
        keys[name] = client.post(f"/admin/users/{name}/keys", headers=admin).json()["key"]
    made = client.post(
        "/admin/teams", json={"name": "red", "budget_usd": "0.001", "window": "day"}, headers=admin
    )
    assert made.status_code == 201 and made.json()["budget"]["limit_micro_usd"] == 1000
    assert client.post("/admin/teams", json={"name": "red"}, headers=admin).status_code == 409
    assert client.post("/admin/teams", json={"name": "blue"}, headers=admin).status_code == 201
    put = client.put("/admin/teams/red/members/alice", json={"role": "admin"}, headers=admin)
    assert put.status_code == 200 and put.json()["role"] == "admin"
    assert client.put("/admin/teams/red/members/bob", headers=admin).json()["role"] == "member"
    assert client.put("/admin/teams/blue/members/carol", headers=admin).status_code == 200
    assert client.put("/admin/teams/red/members/nobody", headers=admin).status_code == 404
    assert (
        client.put("/admin/teams/red/members/bob", json={"role": "owner"}, headers=admin).status_code == 400
    )
    assert client.put("/admin/collections/red-docs", json={"team": "red"}, headers=admin).status_code == 200
    assert client.put("/admin/collections/bad..name", json={"team": "red"}, headers=admin).status_code == 400
    assert client.put("/admin/collections/x-docs", json={"team": "nope"}, headers=admin).status_code == 404
    teams = {t["name"]: t for t in client.get("/admin/teams", headers=admin).json()["data"]}
    assert teams["red"]["collections"] == ["red-docs"]
    assert teams["red"]["members"] == [{"user": "alice", "role": "admin"}, {"user": "bob", "role": "member"}]

    # The team's budget ($0.001) covers two calls of 450 micro-USD, by any members together.
    for who, request_id in (("alice", "a1"), ("bob", "b1")):
        paid = client.post(
            "/test/paid-call",
            params={"collection": "red-docs"},
            headers={**bearer(keys[who]), "x-request-id": request_id},
        )
        assert paid.status_code == 201 and paid.json() == {"cost_micro_usd": 450, "team": "red"}
    refused = client.post(
        "/test/paid-call",
        params={"collection": "red-docs"},
        headers={**bearer(keys["alice"]), "x-request-id": "a2"},
    )
    assert refused.status_code == 429 and "team red's daily budget" in refused.json()["error"]["message"]
    # carol is not in red: 403 before anything is reserved.
    assert (
        client.post(
            "/test/paid-call",
            params={"collection": "red-docs"},
            headers={**bearer(keys["carol"]), "x-request-id": "c1"},
        ).status_code
        == 403
    )

    # Team usage: the team's admin only; members, outsiders and unknown teams get one 403.
    team = client.get("/v1/usage", params={"team": "red", "by": "user"}, headers=bearer(keys["alice"]))
    assert team.status_code == 200, team.text
    body = team.json()
    assert body["team"] == "red" and {r["key"]: r["cost_micro_usd"] for r in body["data"]} == {
        "alice": 450,
        "bob": 450,
    }
    assert body["budget"]["committed_micro_usd"] == 900 and body["budget"]["remaining_micro_usd"] == 100
    denied = [
        client.get("/v1/usage", params={"team": team_name}, headers=bearer(keys[who]))
        for who, team_name in (("bob", "red"), ("carol", "red"), ("alice", "blue"), ("alice", "nope"))
    ]
    assert {r.status_code for r in denied} == {403}
    assert all("450" not in r.text and "bob" not in r.text for r in denied)
    own = client.get("/v1/usage", headers=bearer(keys["bob"])).json()
    assert own["user"] == "bob" and own["teams"] == [{"name": "red", "role": "member"}]

    # Collections a key may read: its teams' and the default one while unowned.
    listed = client.get("/v1/collections", headers=bearer(keys["carol"])).json()["data"]
    assert listed == [{"name": "default", "team": None}]
    listed = client.get("/v1/collections", headers=bearer(keys["bob"])).json()["data"]
    assert listed == [{"name": "default", "team": None}, {"name": "red-docs", "team": "red"}]

    # Admin usage by team; membership removal and unassignment.
    by_team = client.get("/admin/usage", params={"team": "red"}, headers=admin).json()["data"]
    assert sum(r["cost_micro_usd"] for r in by_team) == 900
    assert (
        client.put("/admin/teams/red/budget", json={"usd": 1, "window": "month"}, headers=admin).status_code
        == 200
    )
    assert client.delete("/admin/teams/red/members/bob", headers=admin).status_code == 200
    assert client.delete("/admin/teams/red/members/bob", headers=admin).status_code == 404
    assert client.get("/v1/collections", headers=bearer(keys["bob"])).json()["data"] == [
        {"name": "default", "team": None}
    ]
    assert client.delete("/admin/collections/red-docs", headers=admin).status_code == 200
    assert client.get("/admin/collections", headers=admin).json()["data"] == []
