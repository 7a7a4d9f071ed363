"""Spend anomalies on both backends: an hour's spend far above the subject's own baseline, and a budget
projected past its limit by the window's end, each raised once, delivered through the webhook like any
alert; and migration 12, which lets the alert table hold the two new kinds."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

import sqlalchemy as sa

from assistant.alerts.webhook import Deliverer
from assistant.ledger import Ledger, PriceTable, Principal, Usage, migrations
from assistant.ledger.anomalies import AnomalyRules
from assistant.ledger.engine import create_ledger_engine
from assistant.ledger.schema import ALERT_KIND_CHECK
from tests.alerts.test_webhook import _settings
from tests.support.receiver import receiver

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices

MODEL = "gpt-4o-mini"  # $0.15 per 1M prompt tokens: 1000 tokens cost 150 micro-USD


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _user(ledger: Ledger, name: str) -> Principal:
    ledger.add_user(name)
    principal = ledger.authenticate(ledger.create_key(name)[1])
    assert principal is not None
    return principal


def _spend(ledger: Ledger, principal: Principal, request_id: str, prompt_tokens: int) -> int:
    held = ledger.reserve(
        request_id=request_id,
        principal=principal,
        model=MODEL,
        prompt_tokens=prompt_tokens,
        max_completion_tokens=0,
        sent=True,
    )
    return ledger.settle(held, Usage(prompt_tokens, 0))


def test_an_hour_far_above_its_own_baseline_is_a_spike_once_a_day(ledger: Ledger) -> None:
    clock = Clock(datetime(2026, 3, 1, 12, 0))
    ledger.clock = clock
    sam, sid, neo = _user(ledger, "sam"), _user(ledger, "sid"), _user(ledger, "neo")
    for day in range(7):  # a week of 15,000 micro-USD a day for sam and sid: 105,000 in 168 hours
        clock.now = datetime(2026, 3, 1 + day, 12, 0)
        assert _spend(ledger, sam, f"sam-{day}", 100_000) == 15_000
        _spend(ledger, sid, f"sid-{day}", 100_000)
    clock.now = datetime(2026, 3, 8, 12, 20)
    _spend(ledger, sam, "sam-burst", 1_000_000)  # 150,000 in the last hour: 240x its 625 an hour
    _spend(ledger, sid, "sid-burst", 600_000)  # 90,000: a spike by rate, but under the $0.10 minimum
    _spend(ledger, neo, "neo-first", 1_000_000)  # 150,000 with no baseline: nothing to compare with
    clock.now = datetime(2026, 3, 8, 12, 30)
    assert ledger.check_spend_anomalies(AnomalyRules()) == 1
    [event] = ledger.alert_events()
    assert (event.kind, event.scope, event.subject, event.window) == ("spike", "user", "sam", "hour")
    assert (event.spend_micro_usd, event.limit_micro_usd, event.alert_ratio) == (150_000, 3125, 5.0)
    assert event.window_start == datetime(2026, 3, 8, 11, 30)
    clock.now = datetime(2026, 3, 8, 14, 0)  # a second burst the same day: no second event
    _spend(ledger, sam, "sam-burst-2", 1_000_000)
    assert ledger.check_spend_anomalies(AnomalyRules()) == 0
    # With a lower floor, sid's hour counts too.
    clock.now = datetime(2026, 3, 8, 12, 30)
    assert ledger.check_spend_anomalies(AnomalyRules(spike_min_micro_usd=50_000)) == 1
    assert sorted(e.subject for e in ledger.alert_events()) == ["sam", "sid"]


def test_a_budget_projected_past_its_limit_is_raised_before_it_is_hit(ledger: Ledger) -> None:
    clock = Clock(datetime(2026, 3, 1, 9, 0))
    ledger.clock = clock
    pat, ivy = _user(ledger, "pat"), _user(ledger, "ivy")
    ledger.set_budget("pat", 1_000_000, "month")
    ledger.set_budget("ivy", 150_000, "month")
    ledger.create_team("ops")
    ledger.set_member("ops", "pat")
    ledger.set_team_budget("ops", 2_000_000, "month")
    team = ledger.get_team("ops")
    _spend(ledger, dataclasses.replace(pat, team_id=team.id), "pat-1", 1_000_000)  # 150,000 on both
    _spend(ledger, ivy, "ivy-1", 1_000_000)  # 150,000 of 150,000: exhausted, its own alert
    clock.now = datetime(2026, 3, 2, 0, 0)  # 24 of 744 hours: too early to trust a projection
    assert ledger.check_spend_anomalies(AnomalyRules()) == 0
    clock.now = datetime(2026, 3, 5, 0, 0)  # 96 of 744 hours: pat heads for 1,162,500
    assert ledger.check_spend_anomalies(AnomalyRules()) == 1
    assert ledger.check_spend_anomalies(AnomalyRules()) == 0  # once per window and limit
    kinds = sorted((e.subject, e.kind) for e in ledger.alert_events())
    assert kinds == [("ivy", "alert_ratio"), ("ivy", "exhausted"), ("pat", "projection")]
    [event] = [e for e in ledger.alert_events() if e.kind == "projection"]
    assert (event.spend_micro_usd, event.limit_micro_usd, event.window) == (150_000, 1_000_000, "month")
    assert event.payload()["projected_micro_usd"] == -(-150_000 * 744 // 96) == 1_162_500
    # The team's 150,000 of 2,000,000 projects to 1,162,500: on track, no event.

    with receiver() as hook:  # delivered like every alert: signed, through the webhook
        deliverer = Deliverer(ledger, _settings(hook.url))
        deliverer.deliver_due()
        deliverer.close()
    bodies = sorted((json.loads(body) for _, body in hook.received), key=lambda b: b["kind"])
    assert [b["kind"] for b in bodies] == ["alert_ratio", "exhausted", "projection"]
    assert bodies[2]["projected_micro_usd"] == 1_162_500 and bodies[2]["subject"] == "pat"


def test_migration_12_lets_a_version_11_database_hold_the_new_kinds(
    ledger_url: str, prices: PriceTable
) -> None:
    engine = create_ledger_engine(ledger_url)
    migrations.migrate(engine, target=11)
    with engine.begin() as conn:  # as a version-11 database was made: the narrow check
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("ALTER TABLE alert_events DROP CONSTRAINT alert_kind_known"))
            conn.execute(
                sa.text(
                    "ALTER TABLE alert_events ADD CONSTRAINT alert_kind_known "
                    "CHECK (kind IN ('alert_ratio', 'exhausted'))"
                )
            )
        else:
            version = conn.execute(sa.text("PRAGMA schema_version")).scalar_one()
            conn.execute(sa.text("PRAGMA writable_schema = ON"))
            conn.execute(
                sa.text(
                    "UPDATE sqlite_master SET sql = replace(sql, :wide, :narrow) WHERE name = 'alert_events'"
                ),
                {"wide": ALERT_KIND_CHECK, "narrow": "kind IN ('alert_ratio', 'exhausted')"},
            )
            conn.execute(sa.text(f"PRAGMA schema_version = {version + 1}"))
            conn.execute(sa.text("PRAGMA writable_schema = OFF"))
    old = Ledger(engine, prices)
    old.clock = Clock(datetime(2026, 3, 5, 0, 0))
    ann = _user(old, "ann")
    old.set_budget("ann", 200, "day", alert_ratio=0.5)
    _spend(old, ann, "ann-1", 1000)  # 150 of 200: an alert_ratio event from before the migration
    assert migrations.migrate(engine) == [12]
    ledger = Ledger(engine, prices)
    ledger.clock = Clock(datetime(2026, 3, 5, 0, 0))
    ledger.set_budget("ann", 1_000_000, "month")
    _spend(ledger, ann, "ann-2", 1_000_000)
    assert ledger.check_spend_anomalies(AnomalyRules()) == 1  # a "projection" row fits the new check
    assert sorted(e.kind for e in ledger.alert_events()) == ["alert_ratio", "projection"]
    with engine.begin() as conn:
        try:
            conn.execute(sa.text("UPDATE alert_events SET kind = 'bogus' WHERE kind = 'projection'"))
            refused = False
        except sa.exc.IntegrityError:
            refused = True
    assert refused  # the check still refuses an unknown kind
    engine.dispose()
