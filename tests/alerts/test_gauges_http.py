"""Budget gauges with bounded labels, and the whole path in a served app: a reservation crosses the alert
ratio, the app's deliverer POSTs it to a loopback receiver, /admin/alerts and /metrics show it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from assistant.alerts import verify_signature
from assistant.api.budget_metrics import register_budget_gauges
from assistant.ledger import Ledger
from tests.support.receiver import receiver
from tests.support.servers import running_server, wait_for

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices

ADMIN_KEY = "admin-test-key-alerts-0123"
SECRET = "whsec-http-test-secret"


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, str], float]:
    text = generate_latest(registry).decode()
    return {
        (s.labels["scope"], s.labels["name"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_gauges_show_spend_and_remaining_for_top_spenders_and_sum_the_rest(ledger: Ledger) -> None:
    for n, reservations in enumerate([4, 3, 2, 1]):
        name = f"user{n}"
        ledger.add_user(name)
        ledger.set_budget(name, 1_000_000, "month")
        principal = ledger.authenticate(ledger.create_key(name)[1])
        for r in range(reservations):  # 150 micro-USD each
            ledger.reserve(
                request_id=f"{name}-{r}",
                principal=principal,  # type: ignore[arg-type]
                model="gpt-4o-mini",
                prompt_tokens=1000,
                max_completion_tokens=0,
            )
    ledger.add_user("no-budget")  # never a label
    ledger.create_team("red")
    ledger.set_team_budget("red", 2_000_000, "total")
    registry = CollectorRegistry()
    register_budget_gauges(registry, ledger.budget_spend, top_n=2, refresh_s=0)
    spend = _samples(registry, "penny_budget_spend_usd")
    assert spend == {
        ("user", "user0"): 0.0006,
        ("user", "user1"): 0.00045,
        ("user", "_other"): 0.00045,  # user2 + user3
        ("team", "red"): 0.0,
    }
    remaining = _samples(registry, "penny_budget_remaining_usd")
    assert remaining[("user", "_other")] == pytest.approx(2.0 - 0.00045)
    assert remaining[("team", "red")] == 2.0
    assert len(remaining) == 4  # top 2 + _other for users, 1 team: bounded by top_n, not by users


@pytest.fixture
def served(settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, object, object]]:  # type: ignore[no-untyped-def]
    from assistant.api import create_app
    from assistant.service import Penny

    monkeypatch.setenv("PENNY_ADMIN_KEY", ADMIN_KEY)
    with receiver() as hook:
        alerting = settings.model_copy(
            update={
                "alerts": settings.alerts.model_copy(
                    update={
                        "webhook_url": hook.url,
                        "webhook_secret": SecretStr(SECRET),
                        "poll_interval_s": 0.1,
                        "gauge_refresh_s": 0,
                    }
                )
            }
        )
        penny = Penny(alerting)
        with running_server(create_app(alerting, penny, warm_up=False)) as base:
            yield base, penny, hook


def test_a_crossing_is_delivered_by_the_server_and_shown_to_admins(served) -> None:  # type: ignore[no-untyped-def]
    base, penny, hook = served
    ledger = penny.ledger
    ledger.add_user("ann")
    ledger.set_budget("ann", 200, "day", alert_ratio=0.5)
    ann = ledger.authenticate(ledger.create_key("ann")[1])
    ledger.reserve(
        request_id="a", principal=ann, model="gpt-4o-mini", prompt_tokens=1000, max_completion_tokens=0
    )
    wait_for(lambda: bool(hook.received), 30, "the alert webhook")
    headers, body = hook.received[0]
    assert verify_signature(SECRET, headers["x-penny-signature"], body)
    with httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/admin/alerts").status_code == 401
        wait_for(lambda: ledger.alert_events()[0].delivered_at is not None, 30, "the delivery record")
        listed = client.get("/admin/alerts", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()["data"]
        metrics = client.get("/metrics").text
    [event] = listed
    assert (event["kind"], event["subject"], event["spend_micro_usd"]) == ("alert_ratio", "ann", 150)
    assert [d["status_code"] for d in event["deliveries"]] == [200]
    assert 'penny_budget_spend_usd{name="ann",scope="user"} 0.00015' in metrics
    assert 'penny_budget_remaining_usd{name="ann",scope="user"} 5e-05' in metrics
