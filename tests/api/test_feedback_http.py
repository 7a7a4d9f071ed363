"""POST /v1/feedback over real HTTP on both backends: the owner and the admin key rate, anyone else gets
the same 404 as for an unknown id, a new rating replaces the old, bad bodies are 400 in OpenAI's shape."""

from __future__ import annotations

import httpx
import pytest
from litestar import Litestar
from litestar.datastructures import State

from assistant.api.errors import EXCEPTION_HANDLERS
from assistant.api.feedback_routes import FEEDBACK_ROUTES
from assistant.ledger import AnswerRecord, Ledger
from tests.support.servers import running_server

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices

ADMIN_KEY = "admin-test-key-0123456789"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_feedback_is_the_owners_or_the_admins(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PENNY_ADMIN_KEY", ADMIN_KEY)
    keys = {}
    for name in ("alice", "bob"):
        ledger.add_user(name)
        keys[name] = ledger.create_key(name)[1]
    alice = ledger.authenticate(keys["alice"])
    assert alice is not None
    ledger.record_answer(AnswerRecord("a1", alice, "local", collection="docs", features={"abstained": 0.0}))
    app = Litestar(
        route_handlers=FEEDBACK_ROUTES,
        state=State({"ledger": ledger, "auth": True}),
        exception_handlers=EXCEPTION_HANDLERS,
    )
    with running_server(app) as base, httpx.Client(base_url=base, timeout=30) as client:

        def post(body: object, key: str | None) -> httpx.Response:
            return client.post("/v1/feedback", json=body, headers=bearer(key) if key else {})

        mine = post({"request_id": "a1", "rating": "down", "comment": "wrong year"}, keys["alice"])
        assert mine.status_code == 200, mine.text
        body = mine.json()
        assert {k: body[k] for k in ("object", "request_id", "rating", "comment", "given_by")} == {
            "object": "feedback",
            "request_id": "a1",
            "rating": "down",
            "comment": "wrong year",
            "given_by": "owner",
        }
        assert body["created_at"].endswith("Z") and body["updated_at"] == body["created_at"]
        assert (
            post({"request_id": "a1", "rating": "down", "comment": "wrong year"}, keys["alice"]).json()
            == body
        )

        replaced = post({"request_id": "a1", "rating": "should_abstain"}, keys["alice"])
        assert replaced.status_code == 200 and replaced.json()["rating"] == "should_abstain"
        assert replaced.json()["comment"] is None and replaced.json()["created_at"] == body["created_at"]

        others = post({"request_id": "a1", "rating": "up"}, keys["bob"])
        unknown = post({"request_id": "zzzzzzzzzz", "rating": "up"}, keys["bob"])
        assert others.status_code == unknown.status_code == 404
        assert others.json()["error"]["code"] == "not_found"
        assert others.json()["error"]["message"].replace("'a1'", "ID") == unknown.json()["error"][
            "message"
        ].replace("'zzzzzzzzzz'", "ID")  # the same answer whether it exists or is someone else's

        admin = post({"request_id": "a1", "rating": "up"}, ADMIN_KEY)
        assert admin.status_code == 200 and admin.json()["given_by"] == "admin"
        assert post({"request_id": "nope", "rating": "up"}, ADMIN_KEY).status_code == 404

        assert post({"request_id": "a1", "rating": "up"}, None).status_code == 401
        for bad, status in (
            ({"request_id": "a1", "rating": "meh"}, 400),
            ({"request_id": "a1", "rating": "up", "comment": "x" * 2001}, 400),
            ({"request_id": "a1"}, 400),
            ({"request_id": "a1", "rating": "up", "extra": 1}, 400),
            ({"request_id": 7, "rating": "up"}, 400),
            ("not an object", 400),
        ):
            refused = post(bad, keys["alice"])
            assert refused.status_code == status, (bad, refused.text)
            error = refused.json()["error"]
            assert error["type"] == "invalid_request_error" and error["message"], refused.text
        assert (
            "rating must be one of up, down, should_abstain"
            in post({"request_id": "a1", "rating": "meh"}, keys["alice"]).json()["error"]["message"]
        )

    stored = {(f.given_by, f.rating, f.user_id) for f in ledger.answer_feedback()}
    assert stored == {("owner", "should_abstain", alice.user_id), ("admin", "up", None)}
