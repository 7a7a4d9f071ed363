"""Alert events: written in the transaction that crosses a budget's alert ratio or exhausts it, once per
crossing per window (also when many reservations race to it), for users and teams, on both backends."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from assistant.ledger import BudgetExceeded, Ledger, PriceTable, Principal, Usage, migrations
from assistant.ledger.engine import create_ledger_engine

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices

MODEL = "gpt-4o-mini"  # 1000 prompt tokens: 150 micro-USD; 1000 completion tokens: 600


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _user(ledger: Ledger, name: str, limit: int, ratio: float = 0.5) -> Principal:
    ledger.add_user(name)
    ledger.set_budget(name, limit, "day", alert_ratio=ratio)
    principal = ledger.authenticate(ledger.create_key(name)[1])
    assert principal is not None
    return principal


def _reserve(ledger: Ledger, principal: Principal, request_id: str, completion: int = 0):  # type: ignore[no-untyped-def]
    return ledger.reserve(
        request_id=request_id,
        principal=principal,
        model=MODEL,
        prompt_tokens=1000,
        max_completion_tokens=completion,
    )


def _kinds(ledger: Ledger) -> list[tuple[str, str, str]]:
    return sorted((e.scope, e.subject, e.kind) for e in ledger.alert_events())


def test_crossing_the_alert_ratio_fires_once_per_window(ledger: Ledger) -> None:
    clock = Clock(datetime(2025, 3, 14, 9, 0))
    ledger.clock = clock
    ann = _user(ledger, "ann", 1000, ratio=0.5)
    _reserve(ledger, ann, "a")  # 150 of 1000: below the ratio
    assert ledger.alert_events() == []
    for n in range(3):  # 300, 450: still below; 600 crosses 50%
        _reserve(ledger, ann, f"b{n}")
    _reserve(ledger, ann, "c")  # 750: above, but already alerted this window
    [event] = ledger.alert_events()
    assert (event.kind, event.scope, event.subject, event.window) == ("alert_ratio", "user", "ann", "day")
    assert (event.spend_micro_usd, event.limit_micro_usd, event.alert_ratio) == (600, 1000, 0.5)
    assert event.window_start == datetime(2025, 3, 14) and event.delivered_at is None

    clock.now += timedelta(days=1)  # a new window: the next crossing fires again
    for n in range(4):
        _reserve(ledger, ann, f"d{n}")
    assert [e.kind for e in ledger.alert_events()] == ["alert_ratio", "alert_ratio"]


def test_a_refused_reservation_records_exhausted_once_and_still_refuses(ledger: Ledger) -> None:
    bob = _user(ledger, "bob", 1000, ratio=1.0)
    _reserve(ledger, bob, "a", completion=1000)  # 750
    for n in range(3):
        with pytest.raises(BudgetExceeded, match="daily budget"):
            _reserve(ledger, bob, f"refused{n}", completion=1000)
    [event] = ledger.alert_events()
    assert (event.kind, event.spend_micro_usd) == ("exhausted", 750)  # spend before the refused request
    assert ledger.budget_status(bob).committed_micro_usd == 750  # type: ignore[union-attr]


def test_spend_reaching_the_limit_is_exhausted_and_raising_the_limit_rearms(ledger: Ledger) -> None:
    cat = _user(ledger, "cat", 750, ratio=0.9)
    _reserve(ledger, cat, "a", completion=1000)  # exactly 750 of 750: ratio crossed and exhausted
    assert _kinds(ledger) == [("user", "cat", "alert_ratio"), ("user", "cat", "exhausted")]
    ledger.set_budget("cat", 1500, "day", alert_ratio=0.9)
    _reserve(ledger, cat, "b", completion=1000)  # 1500 of the new 1500
    assert len(ledger.alert_events()) == 4


def test_settling_above_the_worst_case_can_cross(ledger: Ledger) -> None:
    dee = _user(ledger, "dee", 1000, ratio=0.5)
    reservation = _reserve(ledger, dee, "a")  # 150 held
    assert ledger.alert_events() == []
    ledger.settle(reservation, Usage(1000, 1000))  # actually 750: the prompt estimate was low
    [event] = ledger.alert_events()
    assert (event.kind, event.spend_micro_usd) == ("alert_ratio", 750)


def test_team_budget_alerts_name_the_team(ledger: Ledger) -> None:
    ledger.create_team("red")
    ledger.assign_collection("red-docs", "red")
    ledger.set_team_budget("red", 300, "day", alert_ratio=0.5)
    ledger.add_user("eve")
    eve = ledger.authenticate(ledger.create_key("eve")[1])
    assert eve is not None
    ledger.set_member("red", "eve")
    charged = ledger.authorize_collection(eve, "red-docs", open_if_unowned=False)
    _reserve(ledger, charged, "a")  # 150 of 300
    _reserve(ledger, charged, "b")  # 300 of 300
    with pytest.raises(BudgetExceeded, match="team red"):
        _reserve(ledger, charged, "c")
    assert _kinds(ledger) == [("team", "red", "alert_ratio"), ("team", "red", "exhausted")]


def test_concurrent_reservations_crossing_together_fire_one_event(ledger: Ledger) -> None:
    fay = _user(ledger, "fay", 150 * 20, ratio=0.25)  # crossed by the 5th of 30 reservations
    start = threading.Barrier(30)

    def flow(n: int) -> str:
        start.wait()
        try:
            _reserve(ledger, fay, f"r{n}")
        except BudgetExceeded:
            return "refused"
        return "held"

    with ThreadPoolExecutor(max_workers=30) as pool:
        outcomes = list(pool.map(flow, range(30)))
    assert outcomes.count("held") == 20
    assert _kinds(ledger) == [("user", "fay", "alert_ratio"), ("user", "fay", "exhausted")]


def test_migration_6_adds_the_alert_tables_to_a_version_5_database(
    ledger_url: str, prices: PriceTable
) -> None:
    engine = create_ledger_engine(ledger_url)
    assert migrations.migrate(engine, target=5)[-1] == 5
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table("alert_events")
    assert 6 in migrations.migrate(engine)
    with engine.connect() as conn:
        assert {"alert_events", "alert_deliveries"} <= set(sa.inspect(conn).get_table_names())
    engine.dispose()
