"""Alert delivery over real loopback HTTP: a correctly signed body, retries with backoff on the ledger's
clock (no sleeping), every attempt recorded, leases between claimers, and the secret never logged."""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from assistant.alerts import sign, verify_signature
from assistant.alerts.webhook import AlertConfigError, Deliverer
from assistant.ledger import Ledger, Principal
from assistant.settings import AlertSettings
from tests.support.receiver import receiver

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices

SECRET = "whsec-test-5f1c0e9a-never-log-me"
T0 = datetime(2025, 3, 14, 9, 0)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _alerting_user(ledger: Ledger, name: str = "ann") -> Principal:
    """A user whose first reservation (150 of 200 micro-USD) crosses the 50% alert ratio."""
    ledger.add_user(name)
    ledger.set_budget(name, 200, "day", alert_ratio=0.5)
    principal = ledger.authenticate(ledger.create_key(name)[1])
    assert principal is not None
    ledger.reserve(
        request_id=f"{name}-1",
        principal=principal,
        model="gpt-4o-mini",
        prompt_tokens=1000,
        max_completion_tokens=0,
    )
    return principal


def _settings(url: str, secret: str | None = SECRET) -> AlertSettings:
    return AlertSettings(
        webhook_url=url,
        webhook_secret=SecretStr(secret) if secret else None,
        backoff_base_s=10,
        backoff_max_s=15,
    )


def test_the_receiver_gets_a_correctly_signed_body(ledger: Ledger) -> None:
    ledger.clock = Clock(T0)
    _alerting_user(ledger)
    [event] = ledger.alert_events()
    with receiver() as hook:
        deliverer = Deliverer(ledger, _settings(hook.url), wall_clock=lambda: 1_700_000_000)
        [attempt] = deliverer.deliver_due()
        deliverer.close()
    [(headers, body)] = hook.received
    assert headers["x-penny-event-id"] == event.id
    assert headers["x-penny-signature"] == sign(SECRET, body, 1_700_000_000)
    assert verify_signature(SECRET, headers["x-penny-signature"], body, now=1_700_000_100)
    payload = json.loads(body)
    assert payload == {
        "id": event.id,
        "kind": "alert_ratio",
        "scope": "user",
        "subject": "ann",
        "window": "day",
        "window_start": "2025-03-14T00:00:00Z",
        "spend_micro_usd": 150,
        "limit_micro_usd": 200,
        "alert_ratio": 0.5,
        "created_at": "2025-03-14T09:00:00Z",
    }
    assert (attempt.attempt, attempt.status_code, attempt.delivered) == (1, 200, True)
    [stored] = ledger.alert_events()
    assert stored.delivered_at == T0 and stored.attempts == 1
    assert Deliverer(ledger, _settings(hook.url)).deliver_due() == []  # delivered: never sent again


def test_500_twice_then_200_is_retried_with_backoff_and_every_attempt_recorded(ledger: Ledger) -> None:
    clock = Clock(T0)
    ledger.clock = clock
    _alerting_user(ledger)
    with receiver([500, 500]) as hook:
        deliverer = Deliverer(ledger, _settings(hook.url), jitter=lambda: 1.0)  # no jitter: exact waits
        assert [a.status_code for a in deliverer.deliver_due()] == [500]
        assert deliverer.deliver_due() == []  # waiting out the backoff: nothing due
        clock.now += timedelta(seconds=10)  # 10 s after the first failure
        assert [a.status_code for a in deliverer.deliver_due()] == [500]
        clock.now += timedelta(seconds=15)  # 20 s after the second, capped at backoff_max_s = 15
        assert [a.status_code for a in deliverer.deliver_due()] == [200]
        deliverer.close()
    assert len(hook.received) == 3
    assert len({headers["x-penny-event-id"] for headers, _ in hook.received}) == 1
    [event] = ledger.alert_events()
    attempts = ledger.alert_deliveries(event.id)
    assert [(a.attempt, a.status_code, a.error, a.delivered) for a in attempts] == [
        (1, 500, "HTTP 500", False),
        (2, 500, "HTTP 500", False),
        (3, 200, None, True),
    ]
    assert [a.attempted_at for a in attempts] == [T0, T0 + timedelta(seconds=10), T0 + timedelta(seconds=25)]
    assert event.attempts == 3 and event.delivered_at == T0 + timedelta(seconds=25)


def test_jitter_spreads_the_backoff_between_half_and_all_of_it(ledger: Ledger) -> None:
    settings = AlertSettings(webhook_url="http://127.0.0.1:9/x", webhook_secret=SecretStr(SECRET))
    low = Deliverer(ledger, settings, jitter=lambda: 0.0)
    high = Deliverer(ledger, settings, jitter=lambda: 1.0)
    assert [low.backoff_s(n) for n in (1, 2, 3)] == [5.0, 10.0, 20.0]
    assert [high.backoff_s(n) for n in (1, 2, 3)] == [10.0, 20.0, 40.0]
    assert high.backoff_s(30) == settings.backoff_max_s


def test_an_unreachable_receiver_is_recorded_and_the_secret_never_logged(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ledger.clock = Clock(T0)
    _alerting_user(ledger)
    with receiver() as hook:
        url = hook.url
    deliverer = Deliverer(ledger, _settings(url))  # the receiver is gone: connection refused
    [attempt] = deliverer.deliver_due()
    deliverer.close()
    assert attempt.status_code is None and not attempt.delivered and "ConnectError" in (attempt.error or "")
    assert "alert" in caplog.text and "failed" in caplog.text
    with pytest.raises(AlertConfigError, match="PENNY_ALERTS__WEBHOOK_SECRET"):
        Deliverer(ledger, _settings(url, secret=None))
    assert SECRET not in caplog.text
    assert SECRET not in repr(_settings(url))


def test_penny_settings_does_not_show_the_secret(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from assistant.cli import cli
    from assistant.settings import get_settings

    monkeypatch.setenv("PENNY_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("PENNY_ALERTS__WEBHOOK_SECRET", SECRET)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["settings"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "alerts.webhook_secret" in result.output and SECRET not in result.output


def test_a_claimed_event_is_not_claimed_again_until_its_lease_runs_out(ledger: Ledger) -> None:
    clock = Clock(T0)
    ledger.clock = clock
    for name in ("u1", "u2", "u3", "u4"):
        _alerting_user(ledger, name)
    results: list[list[str]] = []
    start = threading.Barrier(2)

    def claim() -> None:
        start.wait()
        results.append([e.id for e in ledger.claim_alerts(limit=3, lease_s=60)])

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [event_id for batch in results for event_id in batch]
    assert len(claimed) == 4 and len(set(claimed)) == 4  # between them all four, none twice
    assert ledger.claim_alerts(limit=10, lease_s=60) == []
    clock.now += timedelta(seconds=61)  # the claimers died without recording anything
    assert len(ledger.claim_alerts(limit=10, lease_s=60)) == 4


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda h, b, t: (sign("wrong-secret", b, t), b, t), id="wrong-secret"),
        pytest.param(lambda h, b, t: (h, b.replace(b"150", b"15"), t), id="tampered-body"),
        pytest.param(lambda h, b, t: (h, b, t + 301), id="old-timestamp"),
        pytest.param(
            lambda h, b, t: (h.replace("t=1700000000", "t=1700000300"), b, t + 300), id="re-stamped"
        ),
        pytest.param(lambda h, b, t: ("", b, t), id="missing"),
        pytest.param(lambda h, b, t: ("v1=" + h.partition("v1=")[2], b, t), id="no-timestamp"),
        pytest.param(lambda h, b, t: ("t=1700000000,v1=zz", b, t), id="garbage"),
    ],
)
def test_signature_verification_refuses(mangle) -> None:  # type: ignore[no-untyped-def]
    body = b'{"id":"e1","spend_micro_usd":150}'
    header = sign(SECRET, body, 1_700_000_000)
    assert verify_signature(SECRET, header, body, now=1_700_000_000)
    bad_header, bad_body, now = mangle(header, body, 1_700_000_000)
    assert not verify_signature(SECRET, bad_header, bad_body, now=now)


def test_a_rotated_secret_can_be_verified_with_either_signature() -> None:
    body = b"{}"
    old, new = sign("old", body, 100), sign("new", body, 100)
    header = f"{old},v1={new.partition('v1=')[2]}"
    assert verify_signature("old", header, body, now=100) and verify_signature("new", header, body, now=100)
