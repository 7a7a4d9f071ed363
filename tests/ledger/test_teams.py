"""Keys with expiry, profiles, labels and rotation; teams, shared team budgets and collection ownership."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa

from assistant.ledger import (
    BudgetExceeded,
    CollectionForbidden,
    Ledger,
    LedgerError,
    NotFound,
    PriceTable,
    TeamForbidden,
    Usage,
    migrations,
)
from assistant.ledger.engine import create_ledger_engine

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices

MODEL = "gpt-4o-mini"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 2, 12, 0, 0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed(ledger_url: str, prices: PriceTable, clock: Clock) -> Ledger:
    ledger = Ledger.open(ledger_url, prices, clock=clock)
    yield ledger
    ledger.close()


# -- migration 4 on a database made before it --------------------------------------------------------

NEW_COLUMNS = {
    "api_keys": {"expires_at", "profiles", "label"},
    "reservations": {"team_id"},
    "ledger_entries": {"team_id"},
    "answers": {"team_id"},
}


def test_migration_adds_columns_to_a_version_3_database(ledger_url: str, prices: PriceTable) -> None:
    engine = create_ledger_engine(ledger_url)
    assert migrations.migrate(engine, target=3) == [1, 2, 3]
    # Today's tables carry the new columns from their first migration; take them away again to get the
    # shape a database released at version 3 has.
    with engine.begin() as conn:
        conn.execute(sa.text("DROP INDEX ix_entries_team_charged"))
        for table, columns in NEW_COLUMNS.items():
            for column in sorted(columns):
                conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        conn.execute(
            sa.text(
                "INSERT INTO users (name, is_system, created_at) "
                "VALUES ('early', false, '2026-01-01 00:00:00')"
            )
        )
    assert migrations.migrate(engine) == list(range(4, migrations.LATEST + 1))
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        for table, columns in NEW_COLUMNS.items():
            assert columns <= {c["name"] for c in inspector.get_columns(table)}
        assert "ix_entries_team_charged" in {i["name"] for i in inspector.get_indexes("ledger_entries")}
    ledger = Ledger(engine, prices)
    _info, key = ledger.create_key("early", label="ci", profiles=["penny-local"])
    principal = ledger.authenticate(key)
    assert principal is not None and principal.profiles == frozenset({"penny-local"})
    engine.dispose()


# -- keys ---------------------------------------------------------------------------------------------


def test_expired_keys_fail_like_revoked_ones(timed: Ledger, clock: Clock) -> None:
    timed.add_user("alice")
    info, key = timed.create_key("alice", label="laptop", expires_at=clock.now + timedelta(days=30))
    assert info.label == "laptop" and info.expires_at == clock.now + timedelta(days=30)
    assert timed.authenticate(key) is not None
    clock.now += timedelta(days=30)
    assert timed.authenticate(key) is None  # at the instant it expires
    [listed] = timed.list_keys("alice")
    assert listed.status(clock.now) == "expired" and listed.label == "laptop"


def test_profiles_restrict_a_key(timed: Ledger) -> None:
    timed.add_user("alice")
    _info, everything = timed.create_key("alice")
    _info, local_only = timed.create_key("alice", profiles=["penny-local", "penny-local"])
    assert timed.authenticate(everything).may_use("penny-paid")  # type: ignore[union-attr]
    limited = timed.authenticate(local_only)
    assert limited is not None and limited.may_use("penny-local") and not limited.may_use("penny-paid")
    assert timed.list_keys("alice")[1].profiles == ("penny-local",)
    with pytest.raises(LedgerError, match="at least one profile"):
        timed.create_key("alice", profiles=[])


def test_rotation_keeps_the_old_key_for_the_grace_period(timed: Ledger, clock: Clock) -> None:
    timed.add_user("alice")
    old_info, old_key = timed.create_key("alice", label="ci", profiles=["penny"])
    old, new, new_key = timed.rotate_key(old_info.id, timedelta(hours=24))
    assert old.expires_at == clock.now + timedelta(hours=24)
    assert (new.user_name, new.label, new.profiles) == ("alice", "ci", ("penny",))
    assert new.id != old.id and new_key != old_key
    clock.now += timedelta(hours=23)
    assert timed.authenticate(old_key) is not None and timed.authenticate(new_key) is not None
    clock.now += timedelta(hours=1)
    assert timed.authenticate(old_key) is None
    rotated = timed.authenticate(new_key)
    assert rotated is not None and rotated.key_id == new.id and rotated.profiles == frozenset({"penny"})
    with pytest.raises(LedgerError, match="expired"):
        timed.rotate_key(old_info.id, timedelta(hours=1))
    timed.revoke_key(new.id)
    with pytest.raises(LedgerError, match="revoked"):
        timed.rotate_key(new.id, timedelta(hours=1))
    with pytest.raises(NotFound):
        timed.rotate_key("key_nope", timedelta(hours=1))


def test_rotation_never_extends_an_earlier_expiry(timed: Ledger, clock: Clock) -> None:
    timed.add_user("alice")
    info, _key = timed.create_key("alice", expires_at=clock.now + timedelta(hours=1))
    old, new, _new_key = timed.rotate_key(info.id, timedelta(days=7))
    assert old.expires_at == clock.now + timedelta(hours=1)
    assert new.expires_at == clock.now + timedelta(hours=1)  # the new key inherits the expiry


# -- teams --------------------------------------------------------------------------------------------


def _member(ledger: Ledger, user: str, team: str, role: str = "member"):  # type: ignore[no-untyped-def]
    if user not in {u.name for u in ledger.list_users()}:
        ledger.add_user(user)
    if team not in {t.name for t in ledger.list_teams()}:
        ledger.create_team(team)
    ledger.set_member(team, user, role)  # type: ignore[arg-type]
    _info, key = ledger.create_key(user)
    principal = ledger.authenticate(key)
    assert principal is not None
    return principal


def test_members_roles_and_collection_access(ledger: Ledger) -> None:
    alice = _member(ledger, "alice", "red", "admin")
    bob = _member(ledger, "bob", "blue")
    carol = _member(ledger, "carol", "red")
    ledger.set_member("blue", "carol", "member")
    ledger.assign_collection("red-docs", "red")
    ledger.assign_collection("blue-docs", "blue")
    assert [m.user_name for m in ledger.members("red")] == ["alice", "carol"]
    assert {m.team_name: m.role for m in ledger.memberships(alice)} == {"red": "admin"}

    charged = ledger.authorize_collection(alice, "red-docs", open_if_unowned=False)
    assert (charged.team_name, charged.user_name) == ("red", "alice")
    assert ledger.authorize_collection(carol, "blue-docs", open_if_unowned=False).team_name == "blue"
    assert ledger.authorize_collection(carol, "red-docs", open_if_unowned=False).team_name == "red"
    messages = set()
    for name in ("red-docs", "no-such-docs"):
        with pytest.raises(CollectionForbidden) as denied:
            ledger.authorize_collection(bob, name, open_if_unowned=False)
        messages.add(str(denied.value).replace(name, "NAME"))
    assert len(messages) == 1  # the same answer whether the collection exists or not
    assert ledger.authorize_collection(bob, "default", open_if_unowned=True).team_id is None
    assert (
        ledger.authorize_collection(ledger.system_user(), "red-docs", open_if_unowned=False).team_id is None
    )
    assert ledger.readable_collections(carol) == {"blue-docs": "blue", "red-docs": "red"}
    assert ledger.readable_collections(bob) == {"blue-docs": "blue"}

    ledger.require_team_admin(alice, "red")
    for who, team in ((carol, "red"), (bob, "red"), (alice, "blue"), (alice, "nope")):
        with pytest.raises(TeamForbidden, match="only an admin"):
            ledger.require_team_admin(who, team)

    ledger.remove_member("blue", "carol")
    with pytest.raises(CollectionForbidden):
        ledger.authorize_collection(carol, "blue-docs", open_if_unowned=False)
    with pytest.raises(NotFound):
        ledger.remove_member("blue", "carol")
    ledger.assign_collection("blue-docs", "red")  # moved
    assert ledger.collection_owners() == {"blue-docs": "red", "red-docs": "red"}
    ledger.unassign_collection("blue-docs")
    assert ledger.collection_owners() == {"red-docs": "red"}


def _reserve(ledger: Ledger, principal, request_id: str, max_tokens: int = 500):  # type: ignore[no-untyped-def]
    return ledger.reserve(
        request_id=request_id,
        principal=principal,
        model=MODEL,
        prompt_tokens=1000,
        max_completion_tokens=max_tokens,
    )


def test_a_paid_call_reserves_and_settles_against_user_and_team(ledger: Ledger) -> None:
    worst = ledger.prices.worst_case_micro_usd(MODEL, 1000, 500)  # 450
    ledger.create_team("red")
    ledger.assign_collection("red-docs", "red")
    alice = ledger.authorize_collection(_member(ledger, "alice", "red"), "red-docs", open_if_unowned=False)
    bob = ledger.authorize_collection(_member(ledger, "bob", "red"), "red-docs", open_if_unowned=False)
    ledger.set_budget("alice", 10 * worst, "day")
    ledger.set_team_budget("red", 2 * worst, "day")

    first = _reserve(ledger, alice, "a1")
    second = _reserve(ledger, bob, "b1")
    status = ledger.team_budget_status("red")
    assert status is not None and status.committed_micro_usd == 2 * worst
    with pytest.raises(BudgetExceeded, match="team red's daily budget") as refused:
        _reserve(ledger, alice, "a2")
    assert refused.value.retry_after_s > 0
    # A refused reservation leaves nothing behind (no phantom hold on either budget).
    assert ledger.budget_status(alice).committed_micro_usd == worst  # type: ignore[union-attr]

    assert ledger.settle(first, Usage(1000, 100)) == 210
    ledger.mark_sent(second)
    ledger.release(second, "upstream timeout")
    assert ledger.team_budget_status("red").committed_micro_usd == 210  # type: ignore[union-attr]
    assert ledger.budget_status(alice).committed_micro_usd == 210  # type: ignore[union-attr]
    assert ledger.budget_status(bob) is None  # bob has no budget of his own; the team's still binds him
    third = _reserve(ledger, bob, "b2")
    assert ledger.settle(third, Usage(1000, 100)) == 210
    by_user = {r.key: (r.requests, r.cost_micro_usd) for r in ledger.usage(team="red", by="user")}
    assert by_user == {"alice": (1, 210), "bob": (1, 210)}  # bob's released call cost nothing
    assert ledger.check_balances() == []


def test_the_user_budget_still_binds_inside_a_team(ledger: Ledger) -> None:
    worst = ledger.prices.worst_case_micro_usd(MODEL, 1000, 500)
    ledger.create_team("red")
    ledger.assign_collection("red-docs", "red")
    alice = ledger.authorize_collection(_member(ledger, "alice", "red"), "red-docs", open_if_unowned=False)
    ledger.set_budget("alice", worst, "day")
    ledger.set_team_budget("red", 100 * worst, "day")
    _reserve(ledger, alice, "a1")
    with pytest.raises(BudgetExceeded, match="your daily budget"):
        _reserve(ledger, alice, "a2")
    assert ledger.team_budget_status("red").committed_micro_usd == worst  # type: ignore[union-attr]


def test_charged_team_follows_the_collection(ledger: Ledger) -> None:
    """A user in two teams is charged by the team that owns the collection asked."""
    carol = _member(ledger, "carol", "red")
    ledger.create_team("blue")
    ledger.set_member("blue", "carol")
    ledger.assign_collection("red-docs", "red")
    ledger.assign_collection("blue-docs", "blue")
    for collection, request_id in (("red-docs", "r1"), ("blue-docs", "b1"), ("blue-docs", "b2")):
        charged = ledger.authorize_collection(carol, collection, open_if_unowned=False)
        ledger.settle(_reserve(ledger, charged, request_id), Usage(1000, 100))
    assert {r.key: r.requests for r in ledger.usage(team="red", by="user")} == {"carol": 1}
    assert {r.key: r.requests for r in ledger.usage(team="blue", by="user")} == {"carol": 2}
    assert ledger.team_budget_status("red") is None


def test_recovery_releases_a_stale_team_reservation(ledger: Ledger) -> None:
    worst = ledger.prices.worst_case_micro_usd(MODEL, 1000, 500)
    ledger.create_team("red")
    ledger.assign_collection("red-docs", "red")
    alice = ledger.authorize_collection(_member(ledger, "alice", "red"), "red-docs", open_if_unowned=False)
    ledger.set_team_budget("red", worst, "day")
    stale = _reserve(ledger, alice, "a1")
    report = ledger.recover_stale(now=stale.expires_at + timedelta(seconds=1))
    assert report.released == ["a1"]
    assert ledger.team_budget_status("red").committed_micro_usd == 0  # type: ignore[union-attr]
    _reserve(ledger, alice, "a2")  # the hold came back: no phantom 429
    assert ledger.check_balances() == []


def test_team_rules(ledger: Ledger) -> None:
    ledger.create_team("red")
    ledger.add_user("alice")
    with pytest.raises(LedgerError, match="already exists"):
        ledger.create_team("red")
    with pytest.raises(LedgerError, match="unknown team role"):
        ledger.set_member("red", "alice", "owner")  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="penny teams create"):
        ledger.set_member("blue", "alice")
    with pytest.raises(LedgerError, match="non-negative"):
        ledger.set_team_budget("red", -1, "day")
    assert ledger.set_member("red", "alice", "admin").role == "admin"
    assert ledger.set_member("red", "alice", "member").role == "member"  # a role change, not a second row
    assert [m.role for m in ledger.members("red")] == ["member"]
