"""The isolation matrix over real HTTP with the real app (real Chroma, ledger on SQLite): every user ×
collection × answering route, team usage, collection listings and the admin routes, asserting the status
and that no body carries another team's documents. Also: profiles, and a key revoked mid-stream.

Answers go to the paid tier (the scripted fake): a retrieval floor above any score routes every question
there before the local model runs, so each allowed cell retrieves from the collection asked, and is charged
through the ledger to the team owning it, without a local generation per cell.

Revoked mid-stream (the choice): authentication happens when a request starts, so a stream whose key is
revoked while it runs finishes (its answer was authorised and its spend reserved); the next request is 401.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from assistant.service import Penny
from tests.conftest import REPO
from tests.support.fake_paid import FakePaid, Reply
from tests.support.ledger import PgSchema
from tests.support.servers import running_server, wait_for

ADMIN_KEY = "admin-isolation-key-0123456789"
SECRETS = {"red-docs": "RED-SECRET-4471", "blue-docs": "BLUE-SECRET-9902", "stray-docs": "STRAY-SECRET-1234"}
MEMBERSHIPS = {  # user: {team: role}
    "alice": {"red": "admin"},
    "bob": {"blue": "member"},
    "carol": {"red": "member", "blue": "member"},
    "dave": {},
}
OWNERS = {"red-docs": "red", "blue-docs": "blue"}  # stray-docs exists but no team owns it
COLLECTIONS = ["red-docs", "blue-docs", "default", "stray-docs", "ghost-docs"]  # ghost-docs does not exist
QUESTION = "What is the vault code?"


def may_read(user: str, collection: str) -> bool:
    return collection == "default" or OWNERS.get(collection) in MEMBERSHIPS[user]


class World:
    def __init__(self, base: str, penny: Penny, keys: dict[str, str], fake: FakePaid) -> None:
        self.base, self.penny, self.keys, self.fake = base, penny, keys, fake

    def client(self, user: str | None = None, key: str | None = None) -> httpx.Client:
        token = key or (self.keys[user] if user else None)
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, timeout=300, headers=headers)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request, tmp_path_factory, model_cache, paid_server) -> Iterator[World]:  # type: ignore[no-untyped-def]
    """The whole matrix once per ledger backend: the access checks are SQL, on both databases."""
    with contextlib.ExitStack() as stack:
        ledger = {}
        if request.param == "postgresql":
            ledger = {"db_url": stack.enter_context(PgSchema())}
        yield from _world(tmp_path_factory, model_cache, paid_server, ledger)


def _world(tmp_path_factory, model_cache, paid_server, ledger_settings) -> Iterator[World]:  # type: ignore[no-untyped-def]
    from assistant.api import create_app
    from assistant.settings import Settings

    fake, paid_url = paid_server
    fake.reset()
    root = tmp_path_factory.mktemp("isolation")
    settings = Settings(
        data_dir=root / "data",
        ledger=ledger_settings,
        models={"local": "smollm2-135m", "cache_dir": model_cache, "n_ctx": 2048, "max_tokens": 8},
        paid={"base_url": paid_url, "model": "gpt-4o-mini", "max_retries": 0},
        cascade={"shadow_rate": 0.0, "retrieval_floor": 2.0, "on_empty_retrieval": "escalate"},
    )
    penny = Penny(settings)
    assert penny.ingester().ingest([REPO / "samples" / "normans.md"]).ok
    for collection, secret in SECRETS.items():
        folder = root / collection
        folder.mkdir()
        (folder / "vault.md").write_text(
            f"# Vault\n\nThe vault code of this team is {secret}. Keep the vault code safe.\n", "utf-8"
        )
        assert penny.ingester(collection).ingest([folder]).ok
    ledger = penny.ledger
    for team in ("red", "blue", "green"):
        ledger.create_team(team)
    for collection, team in OWNERS.items():
        ledger.assign_collection(collection, team)
    keys = {}
    for user, teams in {**MEMBERSHIPS, "erin": {"green": "member"}}.items():
        ledger.add_user(user)
        for team, role in teams.items():
            ledger.set_member(team, user, role)  # type: ignore[arg-type]
        keys[user] = ledger.create_key(user)[1]
    previous = os.environ.get("PENNY_ADMIN_KEY")
    os.environ["PENNY_ADMIN_KEY"] = ADMIN_KEY
    try:
        with running_server(create_app(settings, penny)) as base:
            yield World(base, penny, keys, fake)
    finally:
        if previous is None:
            os.environ.pop("PENNY_ADMIN_KEY", None)
        else:
            os.environ["PENNY_ADMIN_KEY"] = previous


def _answer(client: httpx.Client, route: str, collection: str) -> tuple[int, str, dict[str, Any] | None]:
    """(status, raw body, the penny block of a successful answer)."""
    if route == "ask":
        response = client.post("/v1/ask", json={"question": QUESTION, "collection": collection})
        body = response.json()
        return response.status_code, response.text, body if response.status_code == 200 else None
    payload = {
        "model": "penny",
        "collection": collection,
        "messages": [{"role": "user", "content": QUESTION}],
        "stream": route == "chat-stream",
    }
    response = client.post("/v1/chat/completions", json=payload)
    if response.status_code != 200:
        return response.status_code, response.text, None
    if route == "chat":
        return 200, response.text, response.json()["penny"]
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    [final] = [json.loads(e)["penny"] for e in events[:-1] if "penny" in json.loads(e)]
    return 200, response.text, final


CELLS = [(u, c, r) for u in MEMBERSHIPS for c in COLLECTIONS for r in ("ask", "chat", "chat-stream")]


@pytest.mark.parametrize(("user", "collection", "route"), CELLS, ids=["-".join(c) for c in CELLS])
def test_answering_routes_read_only_your_teams_collections(
    world: World, user: str, collection: str, route: str
) -> None:
    with world.client(user) as client:
        status, text, penny = _answer(client, route, collection)
    others = [secret for name, secret in SECRETS.items() if name != collection]
    assert not any(secret in text for secret in others)  # never another collection's documents
    if may_read(user, collection):
        assert status == 200, text
        assert penny is not None and penny["sources"]
        if collection in SECRETS:
            assert SECRETS[collection] in " ".join(s["text"] for s in penny["sources"])
        return
    assert status == 403, text
    error = json.loads(text)["error"]
    assert (error["type"], error["code"]) == ("permission_error", "forbidden")
    # One answer whether the collection exists, is owned by another team, or is owned by nobody.
    assert error["message"].replace(collection, "NAME") == (
        "no access to collection 'NAME': ask an operator to add you to the team that owns it"
    )
    assert not any(secret in text for secret in SECRETS.values())


@pytest.mark.parametrize("user", [*MEMBERSHIPS])
def test_collection_listing_shows_only_your_teams(world: World, user: str) -> None:
    with world.client(user) as client:
        response = client.get("/v1/collections")
    assert response.status_code == 200
    expected = sorted(c for c in COLLECTIONS if may_read(user, c) and c != "ghost-docs")
    assert [c["name"] for c in response.json()["data"]] == expected
    assert "stray-docs" not in response.text


@pytest.mark.parametrize("user", [*MEMBERSHIPS])
@pytest.mark.parametrize("team", ["red", "blue", "ghost"])
def test_team_usage_is_for_the_teams_admins_only(world: World, user: str, team: str) -> None:
    with world.client(user) as client:
        response = client.get("/v1/usage", params={"team": team, "by": "user"})
    if MEMBERSHIPS[user].get(team) == "admin":
        assert response.status_code == 200, response.text
        assert response.json()["team"] == team
        assert {row["key"] for row in response.json()["data"]} <= {"alice", "carol"}  # red's members
        return
    assert response.status_code == 403
    assert response.json()["error"]["message"] == f"only an admin of team {team!r} can read its usage"


ADMIN_ROUTES = [
    ("GET", "/admin/teams", None),
    ("GET", "/admin/collections", None),
    ("GET", "/admin/usage", None),
    ("POST", "/admin/teams", {"name": "intruders"}),
    ("PUT", "/admin/teams/red/members/dave", {"role": "admin"}),
    ("DELETE", "/admin/teams/red/members/alice", None),
    ("PUT", "/admin/teams/red/budget", {"usd": 1000}),
    ("PUT", "/admin/collections/red-docs", {"team": "blue"}),
    ("DELETE", "/admin/collections/blue-docs", None),
    ("POST", "/admin/users/dave/keys", None),
    ("GET", "/v1/pool", None),
]


@pytest.mark.parametrize(
    ("method", "path", "body"), ADMIN_ROUTES, ids=[f"{m} {p}" for m, p, _ in ADMIN_ROUTES]
)
@pytest.mark.parametrize("caller", ["anonymous", "dave", "alice"])  # alice: a team admin, not a Penny admin
def test_admin_routes_need_the_admin_key(
    world: World, method: str, path: str, body: Any, caller: str
) -> None:
    with world.client(None if caller == "anonymous" else caller) as client:
        response = client.request(method, path, json=body)
    assert response.status_code == (401 if caller == "anonymous" else 403), response.text
    assert "SECRET" not in response.text and "carol" not in response.text
    # Nothing changed: the ownership and memberships the matrix relies on are intact.
    assert world.penny.ledger.collection_owners() == OWNERS
    assert {m.user_name for m in world.penny.ledger.members("red")} == {"alice", "carol"}


def test_admin_key_reads_the_admin_routes(world: World) -> None:
    with world.client(key=ADMIN_KEY) as client:
        teams = client.get("/admin/teams")
        assert teams.status_code == 200
        assert {t["name"]: t["collections"] for t in teams.json()["data"]}["red"] == ["red-docs"]
        assert client.get("/admin/collections").json()["data"] == [
            {"name": "blue-docs", "team": "blue"},
            {"name": "red-docs", "team": "red"},
        ]


def test_profiles_limit_what_a_key_may_ask(world: World) -> None:
    _info, paid_only = world.penny.ledger.create_key("carol", profiles=["penny-paid"])
    world.fake.reset()
    with world.client(key=paid_only) as client:
        chat = {"collection": "red-docs", "messages": [{"role": "user", "content": QUESTION}]}
        for model in ("penny", "penny-local"):
            refused = client.post("/v1/chat/completions", json={**chat, "model": model})
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "profile_not_allowed"
        assert client.post("/v1/ask", json={"question": QUESTION}).status_code == 403  # /v1/ask is `penny`
        assert not world.fake.requests  # refused before anything was answered
        allowed = client.post("/v1/chat/completions", json={**chat, "model": "penny-paid"})
        assert allowed.status_code == 200 and allowed.json()["penny"]["tier"] == "paid"
    assert len(world.fake.requests) == 1


def test_a_key_revoked_mid_stream_finishes_the_stream_then_gets_401(world: World) -> None:
    """erin (team green) streams a paid answer on green's collection; revoked while the paid tier is still
    answering, the stream completes and is charged to green; the key's next request is a 401."""
    ledger = world.penny.ledger
    ledger.assign_collection("default", "green")  # closes the default collection to everyone else
    ledger.set_team_budget("green", 1_000_000, "day")
    world.fake.reset()
    world.fake.queue(Reply(text="Normandy is in France [1].", delay_s=3.0))
    info = ledger.list_keys("erin")[0]
    payload = {
        "model": "penny-paid",
        "stream": True,
        "messages": [{"role": "user", "content": "In what country is Normandy located?"}],
    }
    try:
        with (
            world.client("erin") as client,
            client.stream("POST", "/v1/chat/completions", json=payload) as stream,
        ):
            assert stream.status_code == 200
            lines = stream.iter_lines()
            assert next(lines).startswith("data: ")  # the stream has started

            def paid_call_in_flight() -> bool:
                with ledger.engine.connect() as conn:
                    from assistant.ledger.schema import reservations

                    return (
                        conn.execute(
                            reservations.select().where(
                                reservations.c.state == "open", reservations.c.team_id.is_not(None)
                            )
                        ).first()
                        is not None
                    )

            wait_for(paid_call_in_flight, 60, "the paid call to be reserved")
            with world.client(key=ADMIN_KEY) as admin:
                assert admin.delete(f"/admin/keys/{info.id}").status_code == 200
            assert paid_call_in_flight()  # revoked while the paid tier was still answering
            rest = [line[6:] for line in lines if line.startswith("data: ")]
        assert rest[-1] == "[DONE]"
        [final] = [json.loads(e)["penny"] for e in rest[:-1] if "penny" in json.loads(e)]
        assert final["tier"] == "paid" and final["cost_usd"] > 0
        with world.client("erin") as client:
            after = client.get("/v1/usage")
        assert after.status_code == 401 and after.json()["error"]["code"] == "invalid_api_key"
        [row] = ledger.usage(team="green", by="tier")
        assert row.key == "paid" and row.requests == 1 and row.cost_micro_usd > 0
        assert ledger.check_balances() == []
        with world.client("dave") as client:  # default now belongs to green: closed to dave
            assert _answer(client, "ask", "default")[0] == 403
    finally:
        ledger.unassign_collection("default")
