"""Spend trends on both backends, on the small ledger whose savings test_savings.py works out by hand: cost
per day and tier, how answers ended, budget burn and its projection to the window's end."""

from __future__ import annotations

from datetime import date, datetime

from assistant.ledger import Ledger
from assistant.ledger.trends import DayCost, Outcomes
from assistant.ledger.windows import projected_spend
from tests.ledger.test_savings import DAY2, small_ledger

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices


def test_cost_per_day_and_tier_and_how_answers_ended(ledger: Ledger) -> None:
    small_ledger(ledger)
    # Day 1: alice's local answer (40) and bob's local try (30) before his paid answer (5000 charged);
    # day 2: alice's cache hit (no cost, no local model) and bob's local answer (50).
    assert ledger.cost_by_day(since=date(2026, 3, 1)) == [
        DayCost("2026-03-01", "local", 70),
        DayCost("2026-03-01", "paid", 5000),
        DayCost("2026-03-02", "local", 50),
    ]
    assert ledger.cost_by_day(since=date(2026, 3, 2)) == [DayCost("2026-03-02", "local", 50)]
    outcomes = ledger.outcomes(since=date(2026, 3, 1))
    assert outcomes == Outcomes(answers=4, escalated=1, abstained=0) and outcomes.escalation_rate == 0.25
    assert ledger.outcomes(since=date(2026, 3, 3)).escalation_rate is None  # no answers: no rate, not 0


def test_a_team_sees_only_what_was_charged_to_it(ledger: Ledger) -> None:
    small_ledger(ledger)
    ledger.create_team("ops")
    ledger.set_member("ops", "alice")
    assert ledger.cost_by_day(since=date(2026, 3, 1), team="ops") == []  # nothing charged to it yet
    assert ledger.outcomes(since=date(2026, 3, 1), team="ops").answers == 0


def test_projection_is_the_rate_so_far_carried_to_the_window_end() -> None:
    march_2_10h = datetime(2026, 3, 2, 10, 0)  # 34 h into a 744 h month
    assert projected_spend(5000, "month", march_2_10h) == -(-5000 * 744 // 34) == 109412
    assert projected_spend(300, "day", datetime(2026, 3, 2, 6, 0)) == 1200  # a quarter of the day
    assert projected_spend(300, "day", datetime(2026, 3, 2, 0, 10)) == 7200  # an hour at least, not 10 min
    assert projected_spend(300, "total", march_2_10h) is None  # a total budget never ends


def test_budget_burn_puts_the_budget_heading_furthest_past_its_limit_first(ledger: Ledger) -> None:
    small_ledger(ledger)  # leaves the clock at DAY2, 2026-03-02 10:00
    assert ledger.clock() == DAY2
    ledger.set_budget("alice", 1_000_000, "month")
    ledger.set_budget("bob", 100_000, "month")
    ledger.create_team("ops")
    ledger.set_member("ops", "alice")
    ledger.set_team_budget("ops", 2_000_000, "day")
    bob, ops, alice = ledger.budget_burn()  # ties: by scope (team before user), then name
    assert (bob.name, bob.spend_micro_usd, bob.projected_micro_usd, bob.projected_over) == (
        "bob",
        5000,
        109412,
        True,
    )
    assert bob.resets_at == datetime(2026, 4, 1)
    assert (alice.name, alice.projected_micro_usd, alice.projected_over) == ("alice", 0, False)
    assert (ops.scope, ops.window, ops.spend_micro_usd) == ("team", "day", 0)
    # A team's view: its own budget and its members', never another user's.
    assert sorted((b.scope, b.name) for b in ledger.budget_burn(team="ops")) == [
        ("team", "ops"),
        ("user", "alice"),
    ]
