"""The ledger's tables (SQLAlchemy Core), one definition for SQLite and PostgreSQL.

Money columns are BigInteger micro-USD. Timestamps are naive UTC. ``ledger_entries`` is append-only: an
entry's ``amount_micro_usd`` is its signed change to the user's committed spend (reserve +worst case,
settle actual - worst case, release -worst case, grant -credit, adjust ±correction), so a window's
committed spend is one SUM and a request's entries sum to exactly what it cost.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

ENTRY_KINDS = ("reserve", "settle", "release", "grant", "adjust")
RESERVATION_STATES = ("open", "settled", "released")

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.DateTime, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("is_system", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("key_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("display", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("revoked_at", sa.DateTime),
    # Migration 4: a key may expire (rotation sets the old key's expiry to the end of its grace period),
    # be limited to some profiles (comma-separated; NULL = all) and carry a label for operators.
    sa.Column("expires_at", sa.DateTime),
    sa.Column("profiles", sa.String(200)),
    sa.Column("label", sa.String(100)),
)

budgets = sa.Table(
    "budgets",
    metadata,
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True, autoincrement=False),
    sa.Column("limit_micro_usd", sa.BigInteger, nullable=False),
    sa.Column("window", sa.String(8), nullable=False),
    sa.Column("alert_ratio", sa.Float, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.CheckConstraint("limit_micro_usd >= 0", name="budget_limit_non_negative"),
    sa.CheckConstraint("\"window\" IN ('day', 'month', 'total')", name="budget_window_known"),
    sa.CheckConstraint("alert_ratio > 0 AND alert_ratio <= 1", name="budget_alert_ratio_range"),
)

reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("request_id", sa.String(100), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("key_id", sa.String(32)),
    sa.Column("model", sa.String(100), nullable=False),
    sa.Column("price_version", sa.String(50), nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("max_completion_tokens", sa.Integer, nullable=False),
    sa.Column("worst_case_micro_usd", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("expires_at", sa.DateTime, nullable=False),
    sa.Column("sent_at", sa.DateTime),
    sa.Column("state", sa.String(10), nullable=False),
    sa.Column("cost_micro_usd", sa.BigInteger),
    sa.Column("needs_reconciliation", sa.Boolean, nullable=False, default=False),
    sa.Column("resolved_at", sa.DateTime),
    sa.Column("note", sa.String(300)),
    sa.Column("team_id", sa.Integer),  # migration 4: the team whose budget the call also draws on
    sa.CheckConstraint("state IN ('open', 'settled', 'released')", name="reservation_state_known"),
    sa.Index("ix_reservations_open", "state", "expires_at"),
)

ledger_entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("request_id", sa.String(100), nullable=False),
    sa.Column("kind", sa.String(10), nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("key_id", sa.String(32)),
    sa.Column("model", sa.String(100)),
    sa.Column("amount_micro_usd", sa.BigInteger, nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("cached_prompt_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("completion_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("estimated", sa.Boolean, nullable=False, default=False),
    sa.Column("note", sa.String(300)),
    # The budget window an entry counts toward: the reservation's time for all of a request's entries,
    # so a call reserved at 23:59 and settled at 00:01 stays in one day.
    sa.Column("charged_at", sa.DateTime, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    # Migration 4: the team charged alongside the user (NULL: the user alone); team spend is a SUM too.
    sa.Column("team_id", sa.Integer),
    sa.UniqueConstraint("request_id", "kind", name="uq_entry_request_kind"),
    sa.CheckConstraint(
        "kind IN ('reserve', 'settle', 'release', 'grant', 'adjust')", name="entry_kind_known"
    ),
    sa.Index("ix_entries_user_charged", "user_id", "charged_at", "amount_micro_usd"),
)
ix_entries_team_charged = sa.Index(
    "ix_entries_team_charged", ledger_entries.c.team_id, ledger_entries.c.charged_at
)

answers = sa.Table(
    "answers",
    metadata,
    sa.Column("request_id", sa.String(100), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("key_id", sa.String(32)),
    sa.Column("collection", sa.String(200)),
    sa.Column("tier", sa.String(8), nullable=False),
    sa.Column("escalated", sa.Boolean, nullable=False),
    sa.Column("reason", sa.String(300)),
    sa.Column("confidence", sa.Float),
    sa.Column("local_prompt_tokens", sa.Integer, nullable=False),
    sa.Column("local_completion_tokens", sa.Integer, nullable=False),
    sa.Column("paid_prompt_tokens", sa.Integer, nullable=False),
    sa.Column("paid_cached_prompt_tokens", sa.Integer, nullable=False),
    sa.Column("paid_completion_tokens", sa.Integer, nullable=False),
    sa.Column("paid_usage_estimated", sa.Boolean, nullable=False),
    sa.Column("local_cost_micro_usd", sa.BigInteger, nullable=False),
    sa.Column("paid_cost_micro_usd", sa.BigInteger, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("local_model", sa.String(100)),
    sa.Column("paid_model", sa.String(100)),
    sa.Column("price_version", sa.String(50), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("team_id", sa.Integer),  # migration 4: the team the answer was charged to, if any
    # Migration 8: whether the answer shown said "I don't know" (any tier), and the evaluator's features
    # (NULL: none were computed, e.g. a cache hit), so that a rating of it is a label for a refit.
    sa.Column("abstained", sa.Boolean),
    sa.Column("features", sa.JSON(none_as_null=True)),
    # Migration 10: what paid-only would have cost for this answer (a paid answer: its charge; any other:
    # its paid prompt and answer counted by tiktoken at the paid model's price). NULL: unknown (no paid
    # model configured, or recorded before migration 10), never zero savings.
    sa.Column("paid_only_micro_usd", sa.BigInteger),
    # Migration 11: the answer's retrieval (with the cache lookup) and evaluator, measured wall seconds and
    # their cost at the instance price. NULL: recorded before migration 11.
    sa.Column("retrieval_seconds", sa.Float),
    sa.Column("evaluation_seconds", sa.Float),
    sa.Column("retrieval_micro_usd", sa.BigInteger),
    sa.Column("evaluation_micro_usd", sa.BigInteger),
    sa.CheckConstraint("tier IN ('local', 'cache', 'paid', 'none')", name="answer_tier_known"),
    sa.Index("ix_answers_user_created", "user_id", "created_at"),
)
# Migration 11: answers per collection, for the amortised ingest of each answer and the by-collection report.
ix_answers_collection = sa.Index("ix_answers_collection", answers.c.collection, answers.c.created_at)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True, autoincrement=False),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("body_sha256", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer),  # NULL while the first request is still running
    sa.Column("response_body", sa.Text),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("completed_at", sa.DateTime),
)

# A shadow check: a locally served answer also sent to the paid tier in the background. The label is the
# paid tier's verdict, the evaluator's features are what it judged: together a training row for a refit.
shadow_labels = sa.Table(
    "shadow_labels",
    metadata,
    sa.Column("request_id", sa.String(100), primary_key=True),  # the served answer's (answers.request_id)
    sa.Column("collection", sa.String(200)),
    sa.Column("local_answer", sa.Text, nullable=False),
    sa.Column("paid_answer", sa.Text, nullable=False),
    sa.Column("paid_model", sa.String(100), nullable=False),
    sa.Column("agreement_f1", sa.Float, nullable=False),
    sa.Column("agreed", sa.Boolean, nullable=False),
    sa.Column("paid_abstained", sa.Boolean, nullable=False),
    sa.Column("confidence", sa.Float),
    sa.Column("features", sa.JSON, nullable=False),
    sa.Column("paid_cost_micro_usd", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_shadow_labels_collection_created", "collection", "created_at"),
)

# A rate-limit override for one user or one API key (``scope`` 'user' with the user's id as ``subject``, or
# 'key' with the key id). A NULL limit inherits the default from settings; 0 means unlimited.
rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("scope", sa.String(8), primary_key=True),
    sa.Column("subject", sa.String(100), primary_key=True),
    sa.Column("rpm", sa.Integer),
    sa.Column("tpm", sa.Integer),
    sa.Column("max_concurrent", sa.Integer),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.CheckConstraint("scope IN ('user', 'key')", name="rate_limit_scope_known"),
    sa.CheckConstraint(
        "(rpm IS NULL OR rpm >= 0) AND (tpm IS NULL OR tpm >= 0) "
        "AND (max_concurrent IS NULL OR max_concurrent >= 0)",
        name="rate_limit_non_negative",
    ),
)

# Migration 4: teams. A user belongs to any number of teams (role member or admin); a team may have a
# budget its members share; a collection belongs to at most one team, whose members alone may read it.
TEAM_ROLES = ("member", "admin")

teams = sa.Table(
    "teams",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

team_members = sa.Table(
    "team_members",
    metadata,
    sa.Column("team_id", sa.Integer, sa.ForeignKey("teams.id"), primary_key=True, autoincrement=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True, autoincrement=False),
    sa.Column("role", sa.String(10), nullable=False),
    sa.Column("added_at", sa.DateTime, nullable=False),
    sa.CheckConstraint("role IN ('member', 'admin')", name="team_role_known"),
    sa.Index("ix_team_members_user", "user_id"),
)

team_budgets = sa.Table(
    "team_budgets",
    metadata,
    sa.Column("team_id", sa.Integer, sa.ForeignKey("teams.id"), primary_key=True, autoincrement=False),
    sa.Column("limit_micro_usd", sa.BigInteger, nullable=False),
    sa.Column("window", sa.String(8), nullable=False),
    sa.Column("alert_ratio", sa.Float, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.CheckConstraint("limit_micro_usd >= 0", name="team_budget_limit_non_negative"),
    sa.CheckConstraint("\"window\" IN ('day', 'month', 'total')", name="team_budget_window_known"),
    sa.CheckConstraint("alert_ratio > 0 AND alert_ratio <= 1", name="team_budget_alert_ratio_range"),
)

collections = sa.Table(
    "collections",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("team_id", sa.Integer, sa.ForeignKey("teams.id"), nullable=False, index=True),
    sa.Column("assigned_at", sa.DateTime, nullable=False),
)

# Migration 6: spend alerts. An outbox: the event is written in the transaction whose spend change (or
# refusal) crossed the threshold, so it exists exactly when the crossing does. UNIQUE(scope, subject, kind,
# window_start, limit) fires each crossing once per budget window, however many requests race to it; the
# limit is part of it so that an operator raising a budget re-arms its alerts.
# Migration 12 adds two kinds that no spend change crosses, found by a periodic check instead
# (ledger/anomalies.py): "projection" (the window's end projected past the budget) and "spike" (the last
# hour's spend far above the subject's own trailing baseline).
ALERT_KINDS = ("alert_ratio", "exhausted", "projection", "spike")
ALERT_KIND_CHECK = "kind IN (" + ", ".join(f"'{k}'" for k in ALERT_KINDS) + ")"

alert_events = sa.Table(
    "alert_events",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("kind", sa.String(12), nullable=False),
    sa.Column("scope", sa.String(8), nullable=False),
    sa.Column("subject_id", sa.Integer, nullable=False),
    sa.Column("subject_name", sa.String(100), nullable=False),
    sa.Column("window", sa.String(8), nullable=False),
    sa.Column("window_start", sa.DateTime, nullable=False),
    sa.Column("spend_micro_usd", sa.BigInteger, nullable=False),
    sa.Column("limit_micro_usd", sa.BigInteger, nullable=False),
    sa.Column("alert_ratio", sa.Float, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    # Delivery state: attempts so far, when the next may run (backoff), who holds it (a lease, so two
    # processes do not both POST it), and when a receiver acknowledged it with a 2xx.
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.DateTime, nullable=False),
    sa.Column("claimed_until", sa.DateTime),
    sa.Column("delivered_at", sa.DateTime),
    sa.UniqueConstraint(
        "scope", "subject_id", "kind", "window_start", "limit_micro_usd", name="uq_alert_crossing"
    ),
    sa.CheckConstraint(ALERT_KIND_CHECK, name="alert_kind_known"),
    sa.CheckConstraint("scope IN ('user', 'team')", name="alert_scope_known"),
    sa.Index("ix_alert_events_due", "delivered_at", "next_attempt_at"),
)

alert_deliveries = sa.Table(
    "alert_deliveries",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("event_id", sa.String(32), sa.ForeignKey("alert_events.id"), nullable=False, index=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("attempted_at", sa.DateTime, nullable=False),
    sa.Column("status_code", sa.Integer),  # NULL: no HTTP response (connection refused, timeout, ...)
    sa.Column("error", sa.String(300)),
    sa.Column("delivered", sa.Boolean, nullable=False),
)

# Migration 7: HTTP ingestion jobs. Kept here, not in memory, so ``GET /v1/jobs/{id}`` answers after a
# restart and from any API process. ``files`` is the per-file result list; ``user_id`` NULL: the admin key.
JOB_STATES = ("queued", "running", "done", "failed")

ingest_jobs = sa.Table(
    "ingest_jobs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), index=True),
    sa.Column("collection", sa.String(200), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("files", sa.JSON, nullable=False),
    sa.Column("error", sa.String(1000)),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("started_at", sa.DateTime),
    sa.Column("finished_at", sa.DateTime),
    # The ingest worker holding the job (host and data dir of its API process) and its last heartbeat, so
    # that API replicas sharing the ledger fail only jobs a dead one left (migration 8).
    sa.Column("owner", sa.String(300)),
    sa.Column("heartbeat_at", sa.DateTime),
    sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="ingest_job_status_known"),
)

# Migration 8: what people said of an answer (👍, 👎, "should have said I don't know"). One row per answer and
# giver: the answer's owner, or the operator with the admin key; a later rating replaces the earlier one.
# ``user_id`` is who gave it (NULL: the admin key). The labels it gives a refit: calibration/ledger_labels.py.
answer_feedback = sa.Table(
    "answer_feedback",
    metadata,
    sa.Column("request_id", sa.String(100), sa.ForeignKey("answers.request_id"), primary_key=True),
    sa.Column("given_by", sa.String(8), primary_key=True),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id")),
    sa.Column("rating", sa.String(16), nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.CheckConstraint("rating IN ('up', 'down', 'should_abstain')", name="feedback_rating_known"),
    sa.CheckConstraint("given_by IN ('owner', 'admin')", name="feedback_giver_known"),
    sa.Index("ix_answer_feedback_updated", "updated_at"),
)

# Migration 11: what owning a collection costs besides its answers. One row per ingest run (the CLI's or an
# HTTP job's): measured wall seconds of parsing, chunking, embedding and writing at the instance price.
# ``user_id`` NULL: the admin key; ``team_id``: the team owning the collection then (NULL: none).
ingest_costs = sa.Table(
    "ingest_costs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("collection", sa.String(200), nullable=False),
    sa.Column("team_id", sa.Integer),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id")),
    sa.Column("job_id", sa.String(40)),  # the HTTP upload's job; NULL: `penny ingest`
    sa.Column("files", sa.Integer, nullable=False),
    sa.Column("chunks", sa.Integer, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("micro_usd", sa.BigInteger, nullable=False),
    sa.Column("price_version", sa.String(50), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.CheckConstraint(
        "files >= 0 AND chunks >= 0 AND seconds >= 0 AND micro_usd >= 0", name="ingest_cost_non_negative"
    ),
    sa.Index("ix_ingest_costs_collection_created", "collection", "created_at"),
)

# A day of a collection's index on disk: its measured bytes at the storage price for that day.
# UNIQUE(collection, day): the first measurement of a day prices it, a second accrual that day is a no-op.
storage_accruals = sa.Table(
    "storage_accruals",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("collection", sa.String(200), nullable=False),
    sa.Column("team_id", sa.Integer),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("micro_usd", sa.BigInteger, nullable=False),
    sa.Column("price_version", sa.String(50), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("collection", "day", name="uq_storage_collection_day"),
    sa.CheckConstraint("bytes >= 0 AND micro_usd >= 0", name="storage_accrual_non_negative"),
    sa.Index("ix_storage_accruals_day", "day"),
)
