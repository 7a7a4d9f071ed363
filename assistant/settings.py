"""Penny's settings: one typed object, read from ``penny.toml`` and ``PENNY_*`` environment variables.

Precedence (highest first): explicit keyword arguments, environment variables, ``penny.toml``
(path from ``PENNY_CONFIG``, default ``./penny.toml``), then the defaults below. Nested groups use
``__`` in environment variable names, e.g. ``PENNY_PAID__BASE_URL``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr
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
        default=None,
        description="Use a Chroma server (needed when `penny ingest` runs while another process serves).",
    )
    embedding_model: str = "all-MiniLM-L6-v2"
    chunk_tokens: int = 200
    chunk_overlap: int = 40
    top_k: int = Field(
        default=3, ge=1, description="Passages per answer; each one lengthens the prompt on both tiers."
    )
    retrieval_mode: Literal["hybrid", "dense", "bm25"] = Field(
        default="hybrid", description="dense (Chroma), bm25, or both fused with reciprocal-rank fusion."
    )
    dense_weight: float = Field(default=1.0, ge=0, description="RRF weight of the dense ranking.")
    bm25_weight: float = Field(default=1.0, ge=0, description="RRF weight of the BM25 ranking.")
    rrf_k: int = Field(default=60, ge=1, description="RRF constant: score = weight / (rrf_k + rank).")
    fusion_candidates: int = Field(default=50, ge=1, description="Depth of each ranking fed to fusion.")
    embed_batch_chunks: int = Field(default=1024, ge=1, description="Chunks embedded together on ingest.")
    sentence_vectors_at_ingest: bool = Field(
        default=False,
        description="Embed every chunk's sentences on ingest (slower ingest) rather than the first time "
        "retrieval returns the chunk; either way they are kept for the prompt diet and the evaluator.",
    )


class CascadeSettings(BaseModel):
    answer_style: Literal["auto", "concise", "sentence"] = Field(
        default="auto",
        description="auto: by the question's kind (a factoid gets the short phrase, 'what is' and 'why' "
        "get sentences); concise: the shortest exact phrase from the sources; sentence: 1-2 cited sentences.",
    )
    transcript_window_turns: int = Field(
        default=4,
        ge=1,
        description="Follow-up turns keep the sources of earlier turns in the local prompt, so llama.cpp "
        "reuses the previous turn's KV cache; the transcript restarts every this many turns to bound the "
        "prompt. 1: every turn carries only its own sources.",
    )
    wrong_answer_usd: float | None = Field(
        default=0.005,
        ge=0,
        description="Price of a wrong answer: escalate, abstain or serve by least expected loss. "
        "None: the threshold rule (escalate_below).",
    )
    abstain_usd: float = Field(
        default=0.01, ge=0, description="Price of abstaining on a question the sources do answer."
    )
    low_confidence_below: float = Field(
        default=0.5, ge=0, le=1, description="A local answer served below this P(correct) is marked."
    )
    never_serve_below: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="A local answer rated below this P(correct) is never served: abstain or escalate, by "
        "expected loss.",
    )
    retry_local: bool = Field(
        default=True,
        description="Ask the local model once more (the other answer style; for an abstention, the best "
        "passage alone) when its answer only echoes the question, or it abstained where the sources look "
        "like they answer.",
    )
    retry_min_answerable: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="A local abstention is retried only at this P(answerable) or above.",
    )
    retry_min_question_match: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="...and only when a passage sentence matches the question at this cosine or above.",
    )
    budget_pressure: bool = Field(
        default=True, description="Weigh the paid call's cost by the share of the user's budget left."
    )
    escalate_below: float = Field(
        default=0.5, description="Threshold rule (wrong_answer_usd None): escalate below this P(correct)."
    )
    calibration_file: Path | None = Field(default=None, description="Default: the bundled calibration.")
    calibration_dir: Path | None = Field(
        default=None,
        description="Per-collection calibrations (<collection>.json, by `penny calibrate`); "
        "default data_dir/calibrations.",
    )
    refit_min_labels: int = Field(
        default=50,
        ge=2,
        description="`penny calibrate --from-ledger` replaces a model only with at least this many labels "
        "(shadow checks, people's ratings, synthetic), both outcomes among them; below it P(local correct) "
        "is refused and nothing is written, P(answerable) is kept. --min-labels overrides.",
    )
    shadow_rate: float = Field(
        default=0.02, ge=0, le=1, description="Share of locally served answers also checked by the paid tier."
    )
    shadow_budget_usd: float = Field(
        default=1.0, ge=0, description="Daily spend cap of shadow checks (a system account, never the user)."
    )
    shadow_min_precision: float = Field(
        default=0.6, ge=0, le=1, description="Warn when shadow-estimated local precision drops below this."
    )
    shadow_window: int = Field(
        default=200, ge=1, description="Recent shadow labels and answers the live estimates cover."
    )
    retrieval_floor: float = Field(
        default=0.25, description="Top retrieval score below which nothing relevant was found."
    )
    on_empty_retrieval: Literal["abstain", "escalate"] = Field(
        default="abstain", description="Policy when retrieval is below the floor: the local model is skipped."
    )
    on_local_abstain: Literal["abstain", "escalate"] = Field(
        default="escalate",
        description="Threshold rule: the local model abstained: trust it, or ask the paid tier.",
    )
    cache_enabled: bool = False
    cache_min_similarity: float = Field(default=0.95, description="Question cosine needed for a cache hit.")
    prompt_diet: bool = Field(
        default=True,
        description="The local prompt keeps only the passage sentences that matter to the question "
        "(answering/prompt/compression.py); sources and the paid prompt stay whole. "
        "docs/eval/prompt-diet.md.",
    )
    prompt_diet_budget_tokens: int = Field(
        default=300, ge=1, description="Most passage text the local prompt keeps, in estimated tokens."
    )
    prompt_diet_keep_within: float = Field(
        default=0.5, ge=0, description="Keep sentences scoring at least the best one's score minus this."
    )
    prompt_diet_neighbours: int = Field(
        default=2, ge=0, description="Sentences kept on each side of the best hit (pronouns, next clause)."
    )


class PaidSettings(BaseModel):
    base_url: str | None = None
    model: str = "gpt-4o-mini"
    api_key_env: str = Field(default="PENNY_PAID_API_KEY", description="Name of the env var with the key.")
    timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    max_retries: int = 2
    backoff_base_s: float = Field(default=0.5, description="First retry wait; doubles per retry.")
    backoff_max_s: float = 8.0
    max_retry_after_s: float = Field(default=30.0, description="Cap on the paid tier's Retry-After.")
    breaker_failures: int = Field(default=5, description="Consecutive failed calls that open the circuit.")
    breaker_cooldown_s: float = Field(default=30.0, description="Open circuit lets a trial call after this.")
    max_tokens: int = 256
    prompt_token_margin: float = Field(
        default=0.1,
        ge=0,
        description="Share added to tiktoken's prompt count when reserving budget: the paid model's "
        "tokenizer may count more.",
    )
    prompt_token_overhead: int = Field(
        default=32, ge=0, description="Tokens added to every reservation for the paid model's chat template."
    )
    batch_poll_interval_s: float = Field(
        default=30.0, gt=0, description="--batch work: how often the paid tier's Batch API is asked for news."
    )
    batch_max_wait_s: float = Field(
        default=86_400.0,
        gt=0,
        description="--batch work: a batch not done by then is cancelled; what it finished is kept, the rest "
        "keeps its local answer.",
    )

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env)


class LedgerSettings(BaseModel):
    db_url: str | None = Field(default=None, description="Default: sqlite:///<data_dir>/ledger.db")
    prices_file: Path | None = Field(default=None, description="Default: the bundled price table.")
    local_instance_usd_per_hour: float | None = Field(
        default=None, description="Price of the machine running the local tier; default: the price table's."
    )
    reservation_ttl_s: int = Field(
        default=300, description="A paid-call reservation not settled by then is recovered (crash safety)."
    )
    over_budget_policy: Literal["local_only", "refuse"] = Field(
        default="local_only",
        description="Paid tier out of budget: still serve the local answer, or refuse with HTTP 429.",
    )
    recover_interval_s: int = Field(
        default=60, description="How often the server resolves stale reservations."
    )
    pool_size: int = Field(
        default=32,
        ge=1,
        description="Database connections kept per process (plus 10 overflow): size it to concurrent "
        "requests; on PostgreSQL, max_connections must cover it times the processes.",
    )
    sqlite_synchronous: Literal["FULL", "NORMAL"] = Field(
        default="FULL", description="FULL: commits survive power loss; NORMAL: only process crashes, faster."
    )


class IngestSettings(BaseModel):
    max_file_bytes: int = Field(
        default=20_000_000, gt=0, description="Largest file one upload may carry (HTTP 413 above)."
    )
    max_request_bytes: int = Field(
        default=100_000_000,
        gt=0,
        description="Largest upload request, all files together (HTTP 413 above); other routes keep 1 MB.",
    )


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    auth: bool = Field(default=True, description="False only for local development (penny serve --no-auth).")
    workers: int = Field(default=1, description="HTTP worker processes (each loads its own models).")
    graceful_shutdown_s: int = Field(
        default=30, description="How long in-flight requests may finish on stop."
    )
    max_queue_wait_s: float | None = Field(
        default=20.0,
        gt=0,
        description="Load shedding: a request the local tier's worker pool could not start within this "
        "many seconds gets HTTP 503 with Retry-After, at once when the expected wait (requests ahead x "
        "recent mean service time / slots) is over it, else when it has waited this long; a started answer "
        "is never cut. Keep it plus one answer's time under your clients' timeout. None: never shed (wait "
        "up to pool.request_deadline_s).",
    )


class LimitSettings(BaseModel):
    """Default rate and concurrency limits; ``penny limits set`` overrides them per user or per key.

    0 means unlimited. A request must fit both its user's and its key's limits. ``tpm`` counts paid-tier
    tokens only: reserved at admission at the paid worst case, settled to what the answer used."""

    user_rpm: int = Field(default=0, ge=0, description="Requests per minute per user.")
    user_tpm: int = Field(default=0, ge=0, description="Paid tokens per minute per user.")
    user_max_concurrent: int = Field(default=0, ge=0, description="Requests in flight per user.")
    key_rpm: int = Field(default=0, ge=0, description="Requests per minute per API key.")
    key_tpm: int = Field(default=0, ge=0, description="Paid tokens per minute per API key.")
    key_max_concurrent: int = Field(default=0, ge=0, description="Requests in flight per API key.")
    lease_ttl_s: float = Field(
        default=600.0,
        gt=0,
        description="A request's concurrency slot is freed after this even if its process died holding it.",
    )
    overrides_cache_s: float = Field(
        default=5.0, ge=0, description="How long a server reuses the per-user/per-key overrides it read."
    )
    redis_prefix: str = Field(default="penny:limits", description="Prefix of the limiter's Redis keys.")
    on_redis_error: Literal["allow", "refuse"] = Field(
        default="allow",
        description="Redis unreachable: admit uncounted (logged), or refuse with HTTP 503.",
    )


class AlertSettings(BaseModel):
    """Spend alerts: a signed webhook when a budget crosses its alert ratio or is exhausted, and the
    budget gauges on /metrics. Events are recorded whether or not a webhook is set."""

    webhook_url: str | None = Field(
        default=None, description="Where alert events are POSTed; unset: recorded only (penny alerts list)."
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key of X-Penny-Signature; required with webhook_url. Set it from the "
        "environment, never in penny.toml.",
    )
    timeout_s: float = Field(default=10.0, gt=0, description="One POST's timeout.")
    poll_interval_s: float = Field(default=5.0, gt=0, description="How often a server looks for due events.")
    batch_size: int = Field(default=20, ge=1, description="Events claimed per poll.")
    lease_s: float = Field(
        default=120.0, gt=0, description="A claimed event is left to its claimer this long (multi-process)."
    )
    backoff_base_s: float = Field(default=10.0, gt=0, description="Wait after the first failed attempt.")
    backoff_max_s: float = Field(
        default=3600.0, gt=0, description="Cap on the wait between attempts; attempts never stop."
    )
    gauge_top_n: int = Field(
        default=20,
        ge=0,
        description="Budget gauges name the top N users and teams by spend; the rest: _other.",
    )
    gauge_refresh_s: float = Field(
        default=15.0, ge=0, description="Scrapes within this reuse the last budget query."
    )
    anomaly_interval_s: float = Field(
        default=60.0,
        ge=0,
        description="How often a server looks for spend anomalies (a budget projected past its limit by the "
        "window's end, an hour's spend spike); 0: never (`penny alerts check` still does).",
    )
    spike_factor: float = Field(
        default=5.0,
        gt=1,
        description="A spike: the last hour's spend over this many times the user's or team's mean hourly "
        "spend in the baseline before it.",
    )
    spike_baseline_days: int = Field(
        default=7, ge=1, description="Days of spend a spike is measured against."
    )
    spike_min_usd: float = Field(
        default=0.10, ge=0, description="An hour's spend below this is never a spike, whatever its baseline."
    )
    projection_min_elapsed: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Share of a budget window that must have passed before its end-of-window projection "
        "can raise an alert (the first hours' rate is mostly noise).",
    )


class PoolSettings(BaseModel):
    """The local tier's worker pool and autoscaler.

    Defaults come from ``python -m assistant.local.pool.simulate`` on the bundled traces (see
    assistant/local/pool/README.md): the cheapest settings that keep p95 queue wait at or under 2 s."""

    enabled: bool | None = Field(
        default=None,
        description="Serve the local tier from worker processes. None: yes in `penny serve` (the service), "
        "no in the CLI, eval and library use of Penny(settings) (one process, no spawn); true/false: always.",
    )
    min_workers: int = Field(default=1, ge=0)
    max_workers: int | None = Field(
        default=None,
        ge=1,
        description="None: cores / threads_per_worker, and memory (the lower of memory_limit_bytes and "
        "what is available) / worker_memory_estimate_bytes, whichever is less, split among server.workers; "
        "at least 1 and min_workers. Read at start-up and logged.",
    )
    threads_per_worker: int = Field(default=1, ge=1, description="llama.cpp n_threads in each worker.")
    lone_request_threads: int | None = Field(
        default=0,
        ge=0,
        description="Threads by load: a request that starts with no other local request in flight, queued "
        "or admitted decodes with this many threads; the others with threads_per_worker. 0: off (always "
        "threads_per_worker; measured no faster on 2 cores, docs/load.md); None: all the cores this process "
        "may use (shared among server.workers); N: at most that. Spawned workers only (remote_urls get no "
        "hint).",
    )
    slots_per_worker: int = Field(default=1, ge=1, description="Concurrent sequences per worker.")
    target_utilisation: float = Field(default=1.0, gt=0, le=1)
    queue_threshold: int = Field(default=1, ge=0, description="Scale up only once this many wait.")
    scale_up_delay_s: float = Field(default=0.0, ge=0)
    scale_down_delay_s: float = Field(
        default=30.0, ge=0, description="Scale down only to the largest desired count seen in this window."
    )
    scale_down_step_s: float = Field(
        default=5.0,
        ge=0,
        description="Once the window's peak is below the pool, drain one worker every this many seconds.",
    )
    rate_window_s: float = Field(
        default=600.0,
        ge=0,
        description="Window of the arrival rate for the offered-load (Little's law) term; 0 turns it off.",
    )
    staffing_beta: float = Field(
        default=1.0,
        ge=0,
        description="Keep >= (R + beta*sqrt(R))/slots workers for offered load R = arrival rate x service.",
    )
    memory_limit_bytes: int = Field(default=4 * 1024**3, ge=0)
    worker_memory_estimate_bytes: int = Field(
        default=700 * 1024**2, ge=0, description="Projected RSS of a new worker until one is measured."
    )
    request_deadline_s: float = Field(default=120.0, gt=0)
    scale_to_zero: bool = False
    startup_timeout_s: float = Field(default=120.0, gt=0)
    health_interval_s: float = Field(default=2.0, gt=0)
    tick_s: float = Field(default=0.5, gt=0, description="How often the autoscaler looks at the pool.")
    remote_urls: list[str] = Field(
        default_factory=list,
        description="OpenAI-compatible workers to use instead of spawning any (Kubernetes: the worker "
        "Service or per-pod URLs; llama-server, vLLM). Non-empty: no processes, no autoscaling. "
        'Env: a JSON list, PENNY_POOL__REMOTE_URLS=["http://penny-worker:8080"].',
    )
    remote_slots_per_url: int = Field(
        default=1, ge=1, description="Concurrent requests per remote URL (a Service URL: its pods' slots)."
    )


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
    paid: PaidSettings = PaidSettings()
    ledger: LedgerSettings = LedgerSettings()
    server: ServerSettings = ServerSettings()
    pool: PoolSettings = PoolSettings()
    limits: LimitSettings = LimitSettings()
    alerts: AlertSettings = AlertSettings()
    ingest: IngestSettings = IngestSettings()
    redis_url: str | None = Field(
        default=None,
        description="Shared rate-limit counters (redis://host:6379/0); unset: each process counts alone.",
    )

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
    def bm25_path(self) -> Path:
        """Persisted BM25 indexes, one folder per Chroma collection id (so a recreated name starts fresh)."""
        return self.data_dir / "bm25"

    @property
    def sentence_vectors_path(self) -> Path:
        """Chunks' sentence vectors, one SQLite file per Chroma collection id (``index.sentvec``)."""
        return self.data_dir / "sentvec"

    @property
    def calibration_dir(self) -> Path:
        return self.cascade.calibration_dir or self.data_dir / "calibrations"

    @property
    def model_cache_dir(self) -> Path:
        return self.models.cache_dir or self.data_dir / "models"

    @property
    def ingest_spool_dir(self) -> Path:
        """Uploaded files wait here for the ingest worker; on the data dir's disk, not in /tmp's RAM."""
        return self.data_dir / "ingest-spool"

    @property
    def db_url(self) -> str:
        return self.ledger.db_url or f"sqlite:///{self.data_dir / 'ledger.db'}"


def redact_url(value: str) -> str:
    """A URL with its password replaced by ``***`` (``redis://:pw@host`` -> ``redis://:***@host``), so it
    can be shown or logged; anything else unchanged."""
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc or parts.password is None:
        return value
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
