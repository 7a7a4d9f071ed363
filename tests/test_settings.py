"""Settings: defaults < penny.toml < PENNY_* env vars, nested with __; `penny settings` shows the result."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.settings import Settings, get_settings


def test_toml_then_env_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "penny.toml"
    config.write_text(
        'data_dir = "/srv/penny"\n[paid]\nmodel = "gpt-4o"\ntimeout_s = 12.5\n[index]\ntop_k = 7\n'
    )
    monkeypatch.setenv("PENNY_CONFIG", str(config))
    monkeypatch.setenv("PENNY_INDEX__TOP_K", "3")
    settings = Settings()
    assert settings.data_dir == Path("/srv/penny")
    assert settings.paid.model == "gpt-4o" and settings.paid.timeout_s == 12.5
    assert settings.index.top_k == 3  # env beats the file
    assert settings.db_url == "sqlite:////srv/penny/ledger.db"


def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PENNY_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("PENNY_INDEX__RETRIEVAL_MODE", "telepathy")
    with pytest.raises(ValueError, match="retrieval_mode"):
        Settings()


def test_penny_settings_lists_env_names_and_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from assistant.cli import cli

    monkeypatch.setenv("PENNY_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("PENNY_PAID__MODEL", "gpt-4o")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["settings", "--markdown"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "| `paid.model` | `PENNY_PAID__MODEL` | `gpt-4o` |" in result.output
    assert "`PENNY_POOL__MAX_WORKERS`" in result.output


def test_redis_url_is_read_from_env_and_its_password_never_shown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from assistant.cli import cli

    monkeypatch.setenv("PENNY_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("PENNY_REDIS_URL", "redis://:hunter2@cache.internal:6379/0")
    monkeypatch.setenv("PENNY_LIMITS__USER_RPM", "30")
    get_settings.cache_clear()
    try:
        assert get_settings().limits.user_rpm == 30
        output = CliRunner().invoke(cli, ["settings"]).output
    finally:
        get_settings.cache_clear()
    assert "redis://:***@cache.internal:6379/0" in output and "hunter2" not in output
