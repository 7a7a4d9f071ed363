"""Penny's settings: one typed object, read from ``penny.toml`` and ``PENNY_*`` environment variables.

Precedence (highest first): explicit keyword arguments, environment variables, ``penny.toml``
(path from ``PENNY_CONFIG``, default ``./penny.toml``), then the defaults below. Nested groups use
``__`` in environment variable names, e.g. ``PENNY_UPSTREAM__BASE_URL``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class ModelSettings(BaseModel):
    """Which GGUF model plays which role. A value is a registry name or a path to a ``.gguf`` file."""

    local: str = "qwen2.5-0.5b"
    reference: str = "qwen2.5-1.5b"
    n_ctx: int = 4096
    n_threads: int | None = Field(default=None, description="None: llama.cpp picks (all cores).")
    max_tokens: int = 256
    cache_dir: Path | None = Field(
        default=None, description="Where assembled models go; default data_dir/models."
    )


class IndexSettings(BaseModel):
    collection: str = "default"
    chroma_url: str | None = Field(
        default=None, description="Use a Chroma server (needed when ingesting while serving)."
    )
    embedding_model: str = "all-MiniLM-L6-v2"
    chunk_tokens: int = 200
    chunk_overlap: int = 40
    top_k: int = 4


class CascadeSettings(BaseModel):
    escalate_below: float = Field(default=0.5, description="Escalate when P(correct) is below this.")
    calibration_file: Path | None = Field(default=None, description="Default: the bundled calibration.")


class UpstreamSettings(BaseModel):
    base_url: str | None = None
    model: str = "gpt-4o-mini"
    api_key_env: str = Field(
        default="PENNY_UPSTREAM_API_KEY", description="Name of the env var with the key."
    )
    timeout_s: float = 30.0
    max_retries: int = 2

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env)


class LedgerSettings(BaseModel):
    db_url: str | None = Field(default=None, description="Default: sqlite:///<data_dir>/ledger.db")
    prices_file: Path | None = Field(default=None, description="Default: the bundled price table.")


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PENNY_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    data_dir: Path = Path(".penny")
    models: ModelSettings = ModelSettings()
    index: IndexSettings = IndexSettings()
    cascade: CascadeSettings = CascadeSettings()
    upstream: UpstreamSettings = UpstreamSettings()
    ledger: LedgerSettings = LedgerSettings()
    server: ServerSettings = ServerSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = Path(os.environ.get("PENNY_CONFIG", "penny.toml"))
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=toml_path))

    @property
    def chroma_path(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def model_cache_dir(self) -> Path:
        return self.models.cache_dir or self.data_dir / "models"

    @property
    def db_url(self) -> str:
        return self.ledger.db_url or f"sqlite:///{self.data_dir / 'ledger.db'}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
