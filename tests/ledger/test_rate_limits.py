"""Rate-limit overrides in the ledger (SQLite and PostgreSQL): set some limits, keep the rest, clear."""

from __future__ import annotations

import pytest

from assistant.ledger import Ledger, LedgerError, NotFound

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices


def test_overrides_set_partially_update_and_clear(ledger: Ledger) -> None:
    ledger.add_user("alice")
    key, _ = ledger.create_key("alice")
    user = ledger.set_rate_limit(user="alice", rpm=10, tpm=5000)
    assert (user.scope, user.name, user.rpm, user.tpm, user.max_concurrent) == (
        "user",
        "alice",
        10,
        5000,
        None,
    )
    assert user.subject == str(ledger.get_user("alice").id)
    updated = ledger.set_rate_limit(user="alice", max_concurrent=2)  # rpm and tpm keep their values
    assert (updated.rpm, updated.tpm, updated.max_concurrent) == (10, 5000, 2)
    assert ledger.set_rate_limit(user="alice", rpm=None).rpm is None  # back to the default
    on_key = ledger.set_rate_limit(key_id=key.id, rpm=0)  # 0: unlimited for this key
    assert (on_key.scope, on_key.name, on_key.user_name, on_key.rpm) == ("key", key.id, "alice", 0)
    assert [o.scope for o in ledger.rate_limit_overrides()] == ["user", "key"]
    assert ledger.clear_rate_limit(user="alice") and not ledger.clear_rate_limit(user="alice")
    assert [o.scope for o in ledger.rate_limit_overrides()] == ["key"]


def test_overrides_reject_bad_subjects_and_values(ledger: Ledger) -> None:
    ledger.add_user("bob")
    with pytest.raises(NotFound):
        ledger.set_rate_limit(user="nobody", rpm=1)
    with pytest.raises(NotFound, match="penny keys list"):
        ledger.set_rate_limit(key_id="k_missing", rpm=1)
    with pytest.raises(LedgerError, match="exactly one"):
        ledger.set_rate_limit(rpm=1)
    with pytest.raises(LedgerError, match=">= 0"):
        ledger.set_rate_limit(user="bob", rpm=-1)
    with pytest.raises(LedgerError, match="unknown rate limit"):
        ledger.set_rate_limit(user="bob", rph=1)
    assert ledger.rate_limit_overrides() == []
