"""The spend dashboard's numbers over real HTTP, on both backends: the admin key sees everyone's, a team's
admins see that team's and must name it, anyone else gets 403; the totals are `penny usage`'s."""

from __future__ import annotations

import httpx
import pytest
from litestar import Litestar
from litestar.datastructures import State

from assistant.api.dashboard_routes import DASHBOARD_ROUTES
from assistant.api.errors import EXCEPTION_HANDLERS
from assistant.api.ledger_routes import LEDGER_ROUTES
from assistant.ledger import Ledger
from tests.ledger.test_savings import small_ledger
from tests.support.servers import running_server

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices

ADMIN_KEY = "admin-test-key-0123456789"


def make_app(ledger: Ledger) -> Litestar:
    return Litestar(
        route_handlers=[*LEDGER_ROUTES, *DASHBOARD_ROUTES],
        state=State({"ledger": ledger, "auth": True}),
        exception_handlers=EXCEPTION_HANDLERS,
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_the_admin_sees_everyones_spend_as_penny_usage_counts_it(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PENNY_ADMIN_KEY", ADMIN_KEY)
    small_ledger(ledger)  # the clock stays at 2026-03-02 10:00: "today" for the dashboard
    ledger.set_budget("bob", 100_000, "month")
    with running_server(make_app(ledger)) as base, httpx.Client(base_url=base, timeout=60) as client:
        response = client.get("/v1/dashboard", params={"days": 7}, headers=bearer(ADMIN_KEY))
        assert response.status_code == 200, response.text
        body = response.json()
        page = client.get("/dashboard")
    assert page.status_code == 200 and "Penny · Spend" in page.text
    assert (body["since"], body["until"], body["team"]) == ("2026-02-24", "2026-03-02", None)
    # test_savings.py's hand computation: 5120 spent (70 + 5000 local and paid on day 1, 50 on day 2);
    # paid-only 10700 against 5070 for the known answers: 5630 saved, 52.6 %.
    totals = body["totals"]
    assert (totals["cost"], totals["paid"], totals["local"]) == ("$0.00512", "$0.005", "$0.00012")
    assert (totals["paid_only"], totals["saved"], totals["saved_percent"]) == ("$0.0107", "$0.00563", "52.6%")
    assert (totals["answers"], totals["escalated"], totals["escalation_rate"]) == (4, 1, 0.25)
    assert [d["day"] for d in body["days"]][-2:] == ["2026-03-01", "2026-03-02"] and len(body["days"]) == 7
    assert body["days"][-2] == {"day": "2026-03-01", "local": "$0.00007", "paid": "$0.005"}
    assert body["days"][0] == {"day": "2026-02-24", "local": "$0.00", "paid": "$0.00"}
    assert [(u["name"], u["cost"], u["saved"]) for u in body["top_users"]] == [
        ("bob", "$0.00508", "-$0.00003"),
        ("alice", "$0.00004", "$0.00566"),
    ]
    # Cost of ownership: the same answers' paid and local cost (their retrieval and evaluator were not
    # priced, as before migration 11), no ingest or storage recorded.
    assert totals["cost_of_ownership"] == "$0.00512"
    assert body["top_collections"] == [
        {"name": "(none)", "answers": 4, "ingest_and_storage": "$0.00", "total": "$0.00512"}
    ]
    assert [t["name"] for t in body["top_teams"]] == ["(no team)"]
    [bob] = body["budgets"]
    assert (bob["name"], bob["spend"], bob["projected"], bob["projected_over"]) == (
        "bob",
        "$0.005",
        "$0.109412",
        True,
    )
    assert body["chart_svg"].startswith("<svg") and ">USD per day<" in body["chart_svg"]


def test_only_the_admin_key_and_a_teams_admins_see_a_dashboard(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PENNY_ADMIN_KEY", ADMIN_KEY)
    small_ledger(ledger)
    alice = ledger.create_key("alice")[1]
    bob = ledger.create_key("bob")[1]
    ledger.create_team("ops")
    ledger.set_member("ops", "alice")
    ledger.set_member("ops", "bob", role="admin")
    with running_server(make_app(ledger)) as base, httpx.Client(base_url=base, timeout=60) as client:

        def status(key: str | None, **params: object) -> int:
            headers = bearer(key) if key else {}
            return client.get("/v1/dashboard", params=params, headers=headers).status_code

        assert status(None) == 401
        assert status(alice) == 403  # a user's key must name a team it admins
        assert status(alice, team="ops") == 403  # a member, not an admin
        assert status(bob, team="nope") == 403  # the same answer for a team that does not exist
        assert status(ADMIN_KEY, team="nope") == 404
        assert status(ADMIN_KEY, days=0) == 400
        mine = client.get("/v1/dashboard", params={"team": "ops"}, headers=bearer(bob))
        assert mine.status_code == 200, mine.text
        body = mine.json()
    # Nothing was charged to ops: its dashboard shows none of alice's or bob's own spend.
    assert body["team"] == "ops" and body["totals"]["cost"] == "$0.00" and body["top_users"] == []
    assert body["totals"]["answers"] == 0 and body["totals"]["escalation_rate"] is None
