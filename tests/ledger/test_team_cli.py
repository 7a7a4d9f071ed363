"""`penny keys` (labels, expiry, profiles, rotation) and `penny teams` / `penny collections assign`,
through click on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from assistant.cli import cli
from assistant.ledger import Ledger, PriceTable, Usage
from assistant.settings import get_settings

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices


@pytest.fixture
def penny(ledger_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv("PENNY_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("PENNY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PENNY_LEDGER__DB_URL", ledger_url)
    get_settings.cache_clear()
    runner = CliRunner()

    def run(*args: str, ok: bool = True) -> Result:
        result = runner.invoke(cli, list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    yield run
    get_settings.cache_clear()


def test_keys_with_label_expiry_profiles_and_rotation(penny, ledger_url: str, prices: PriceTable) -> None:  # type: ignore[no-untyped-def]
    penny("users", "add", "alice")
    created = penny(
        "keys", "create", "alice", "--label", "ci", "--expires-in", "30d", "--profiles", "penny,penny-local"
    ).output.splitlines()
    key_id, key = created[0].split()[1], created[-1]
    listing = penny("keys", "list").output
    assert "LABEL" in listing and "ci" in listing and "penny,penny-local" in listing and "active" in listing
    assert key not in listing
    bad = penny("keys", "create", "alice", "--profiles", "gpt-5", ok=False)
    assert bad.exit_code == 2 and "unknown profile(s) gpt-5" in bad.output
    assert "not a duration" in penny("keys", "create", "alice", "--expires-in", "soon", ok=False).output

    rotated = penny("keys", "rotate", key_id, "--grace", "1h").output.splitlines()
    assert rotated[0].startswith(f"{key_id} (") and "now expires at" in rotated[0]
    new_id, new_key = rotated[1].split()[1], rotated[-1]
    ledger = Ledger.open(ledger_url, prices)
    try:
        old, new = (ledger.authenticate(k) for k in (key, new_key))
        assert old is not None and new is not None and new.key_id == new_id
        assert new.profiles == frozenset({"penny", "penny-local"})
        [info] = [k for k in ledger.list_keys("alice") if k.id == key_id]
        assert info.expires_at is not None and info.expires_at - info.created_at <= timedelta(
            hours=1, minutes=1
        )
    finally:
        ledger.close()
    penny("keys", "revoke", new_id)
    assert "revoked" in penny("keys", "rotate", new_id, ok=False).output


def test_teams_members_budgets_and_collections(penny, ledger_url: str, prices: PriceTable) -> None:  # type: ignore[no-untyped-def]
    for user in ("alice", "bob"):
        penny("users", "add", user)
    out = penny("teams", "create", "red", "--budget-usd", "10", "--window", "month").output
    assert out.strip() == "created team red, budget $10.00 per month"
    assert "already exists" in penny("teams", "create", "red", ok=False).output
    assert (
        penny("teams", "add", "red", "alice", "--role", "admin").output.strip()
        == "alice is an admin of team red"
    )
    assert penny("teams", "add", "red", "bob").output.strip() == "bob is a member of team red"
    assert "no team 'blue'" in penny("teams", "add", "blue", "bob", ok=False).output
    assert penny("collections", "assign", "red-docs", "--team", "red").output.strip() == (
        "collection red-docs belongs to team red"
    )
    assert (
        "invalid collection name" in penny("collections", "assign", "a..b", "--team", "red", ok=False).output
    )
    out = penny("teams", "budget", "red", "--usd", "20", "--window", "day").output
    assert out.strip() == "budget for team red: $20.00 per day, alert at 80%"

    ledger = Ledger.open(ledger_url, prices)
    try:
        _info, key = ledger.create_key("bob")
        bob = ledger.authorize_collection(ledger.authenticate(key), "red-docs", open_if_unowned=False)  # type: ignore[arg-type]
        reservation = ledger.reserve(
            request_id="r1", principal=bob, model="gpt-4o-mini", prompt_tokens=1000, max_completion_tokens=500
        )
        ledger.settle(reservation, Usage(1000, 500))
    finally:
        ledger.close()
    listing = penny("teams", "list").output.splitlines()
    assert listing[0].split()[:2] == ["TEAM", "MEMBERS"]
    assert listing[1].split() == ["red", "alice*,bob", "red-docs", "$20.00/day", "$0.00045"]
    usage = penny("usage", "--team", "red").output
    assert "bob" in usage and "alice" not in usage
    penny("teams", "remove", "red", "bob")
    assert "not a member" in penny("teams", "remove", "red", "bob", ok=False).output
    assert (
        penny("collections", "unassign", "red-docs").output.strip()
        == "collection red-docs belongs to no team"
    )
    assert "belongs to no team" in penny("collections", "unassign", "red-docs", ok=False).output
