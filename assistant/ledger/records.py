"""What the ledger takes and gives: token usage, who asks, a held reservation, an answer's record, a usage
report's line, and the budget windows and report groupings callers may ask for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Tier = Literal["local", "cache", "paid", "none"]
Window = Literal["day", "month", "total"]
WINDOWS: tuple[Window, ...] = ("day", "month", "total")
GroupBy = Literal["user", "day", "model", "tier"]
GROUP_BYS: tuple[GroupBy, ...] = ("user", "day", "model", "tier")
OwnershipBy = Literal["collection", "team"]  # the total cost of ownership report (ledger/ownership.py)
OWNERSHIP_BYS: tuple[OwnershipBy, ...] = ("collection", "team")
TeamRole = Literal["member", "admin"]
TEAM_ROLES: tuple[TeamRole, ...] = ("member", "admin")


@dataclass(frozen=True)
class Usage:
    """Tokens one paid call used. ``cached_prompt_tokens`` is a part of ``prompt_tokens``, billed at the
    cached rate instead of the input rate, never on top of it."""

    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0
    estimated: bool = False

    def __post_init__(self) -> None:
        for name in ("prompt_tokens", "completion_tokens", "cached_prompt_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if self.cached_prompt_tokens > self.prompt_tokens:
            raise ValueError(
                f"cached_prompt_tokens ({self.cached_prompt_tokens}) is part of prompt_tokens "
                f"({self.prompt_tokens}) and cannot exceed it"
            )


@dataclass(frozen=True)
class Principal:
    """Who a request is charged to: a user, the key they used (None for the system user / CLI), the
    profiles that key may use (None: all), and the team whose budget the request also draws on (set once
    the collection asked is known: the team owning it; None charges the user alone)."""

    user_id: int
    user_name: str
    key_id: str | None = None
    profiles: frozenset[str] | None = None
    team_id: int | None = None
    team_name: str | None = None

    def may_use(self, profile: str) -> bool:
        return self.profiles is None or profile in self.profiles


@dataclass(frozen=True)
class Reservation:
    """Worst-case spend held against a budget before a paid call; settled or released exactly once."""

    request_id: str
    user_id: int
    key_id: str | None
    model: str
    worst_case_micro_usd: int
    created_at: datetime
    expires_at: datetime
    price_version: str
    team_id: int | None = None


@dataclass(frozen=True)
class AnswerRecord:
    """One row per answer, whichever tier produced it (see docs/ARCHITECTURE.md, Ledger)."""

    request_id: str
    principal: Principal
    tier: Tier
    collection: str | None = None
    escalated: bool = False
    reason: str | None = None
    confidence: float | None = None
    local_prompt_tokens: int = 0
    local_completion_tokens: int = 0
    paid_prompt_tokens: int = 0
    paid_cached_prompt_tokens: int = 0
    paid_completion_tokens: int = 0
    paid_usage_estimated: bool = False
    local_cost_micro_usd: int = 0
    paid_cost_micro_usd: int = 0
    latency_ms: float = 0.0
    local_model: str | None = None
    paid_model: str | None = None
    abstained: bool = False  # the answer shown said "I don't know"
    features: dict[str, float] | None = None  # what the evaluator judged, for a refit from feedback
    # What paid-only would have cost for this answer, the base its savings are counted against; None:
    # unknown (no paid model configured), never zero.
    paid_only_micro_usd: int | None = None
    # Retrieval (with the cache lookup) and the evaluator: measured seconds, priced at the instance price.
    retrieval_seconds: float | None = None
    evaluation_seconds: float | None = None
    retrieval_micro_usd: int | None = None
    evaluation_micro_usd: int | None = None


Rating = Literal["up", "down", "should_abstain"]
RATINGS: tuple[Rating, ...] = ("up", "down", "should_abstain")
Giver = Literal["owner", "admin"]


@dataclass(frozen=True)
class AnswerFeedback:
    """What someone said of an answer, with what the answer was: its tier, collection, whether it said "I
    don't know", and the evaluator's features (None when none were recorded), which a refit turns into
    labels. ``given_by``: the answer's owner, or the operator with the admin key."""

    request_id: str
    rating: Rating
    comment: str | None
    given_by: Giver
    user_id: int | None  # who gave it; None: the admin key
    created_at: datetime
    updated_at: datetime
    tier: Tier
    collection: str | None
    abstained: bool | None  # the answer shown said "I don't know"; None: recorded before migration 8
    features: dict[str, float] | None


@dataclass(frozen=True)
class ShadowLabel:
    """A served local answer checked by the paid tier: its verdict, and the features the evaluator saw."""

    request_id: str
    collection: str | None
    local_answer: str
    paid_answer: str
    paid_model: str
    agreement_f1: float
    agreed: bool
    paid_abstained: bool
    confidence: float | None
    features: dict[str, float]
    paid_cost_micro_usd: int
    created_at: datetime | None = None


@dataclass(frozen=True)
class User:
    id: int
    name: str
    created_at: datetime


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown about a key after creation: never the key itself."""

    id: str
    user_name: str
    display: str
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None = None
    profiles: tuple[str, ...] | None = None  # None: every profile
    label: str | None = None

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class Budget:
    user_name: str
    limit_micro_usd: int
    window: Window
    alert_ratio: float


@dataclass(frozen=True)
class Team:
    id: int
    name: str
    created_at: datetime


@dataclass(frozen=True)
class TeamMember:
    team_name: str
    user_name: str
    role: TeamRole


@dataclass(frozen=True)
class TeamBudget:
    """A budget every member of the team draws on, next to their own."""

    team_name: str
    limit_micro_usd: int
    window: Window
    alert_ratio: float


@dataclass(frozen=True)
class BudgetStatus:
    """A budget (a user's or a team's) and where its owner stands in the current window."""

    budget: Budget | TeamBudget
    window_start: datetime
    resets_at: datetime | None
    committed_micro_usd: int  # settled spend + open reservations - grants, this window

    @property
    def remaining_micro_usd(self) -> int:
        return self.budget.limit_micro_usd - self.committed_micro_usd

    @property
    def alert(self) -> bool:
        return self.committed_micro_usd >= self.budget.alert_ratio * self.budget.limit_micro_usd


RateLimitScope = Literal["user", "key"]
RATE_LIMIT_FIELDS = ("rpm", "tpm", "max_concurrent")


@dataclass(frozen=True)
class RateLimitOverride:
    """A user's or a key's own rate limits. ``None`` inherits the default from settings; 0 is unlimited."""

    scope: RateLimitScope
    subject: str  # the user's id, or the key's id
    name: str  # what an operator knows it by: the user's name, or the key's id
    user_name: str
    rpm: int | None
    tpm: int | None
    max_concurrent: int | None
    updated_at: datetime


@dataclass(frozen=True)
class RecoveryReport:
    released: list[str]  # never sent: nothing was spent
    settled_worst_case: list[str]  # sent, never settled: charged the worst case, flagged for reconciliation


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: str  # JSON text as first sent


@dataclass(frozen=True)
class UsageRow:
    """One line of a usage report: the group's key (a user, day, model or tier) and its totals."""

    key: str
    requests: int
    prompt_tokens: int
    cached_prompt_tokens: int
    completion_tokens: int
    cost_micro_usd: int
    # Savings, from the group's answers whose paid-only cost is known: what paid-only would have cost
    # them, and what they did cost (local + paid). Answers recorded without it are counted, not guessed.
    paid_only_micro_usd: int = 0
    known_cost_micro_usd: int = 0
    known_answers: int = 0
    unknown_answers: int = 0

    @property
    def cost_usd(self) -> str:
        return f"{self.cost_micro_usd / 1_000_000:.6f}"

    @property
    def saved_micro_usd(self) -> int | None:
        """Paid-only minus actual over the answers where paid-only is known; None when none is."""
        return self.paid_only_micro_usd - self.known_cost_micro_usd if self.known_answers else None

    @property
    def saved_percent(self) -> float | None:
        """The share of paid-only saved, in percent; None when unknown or paid-only would have cost 0."""
        saved = self.saved_micro_usd
        return (
            None if saved is None or not self.paid_only_micro_usd else 100 * saved / self.paid_only_micro_usd
        )


AlertKind = Literal["alert_ratio", "exhausted", "projection", "spike"]
ALERT_KINDS: tuple[AlertKind, ...] = ("alert_ratio", "exhausted", "projection", "spike")
BudgetScope = Literal["user", "team"]


@dataclass(frozen=True)
class AlertEvent:
    """A budget crossing its alert ratio, or exhausted, once per budget window (and limit), and where its
    webhook delivery stands."""

    id: str
    kind: AlertKind
    scope: BudgetScope
    subject: str  # the user's or the team's name
    window: Window
    window_start: datetime
    spend_micro_usd: int  # committed spend (settled + held) when it crossed; at a refusal, before it
    limit_micro_usd: int
    alert_ratio: float
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None

    @property
    def projected_micro_usd(self) -> int | None:
        """A ``projection``'s spend at the window's end, at the rate when it was raised; None for others."""
        from assistant.ledger.windows import projected_spend

        if self.kind != "projection":
            return None
        return projected_spend(self.spend_micro_usd, self.window, self.created_at)

    def payload(self) -> dict[str, object]:
        """The webhook body: what a receiver needs, times in ISO 8601 UTC. A ``projection`` also carries
        the projected spend at the window's end; a ``spike`` reads as ledger/anomalies.py says (``window``
        "hour", ``limit_micro_usd`` the threshold passed, ``alert_ratio`` the factor)."""
        projected = self.projected_micro_usd
        return {
            **({} if projected is None else {"projected_micro_usd": projected}),
            "id": self.id,
            "kind": self.kind,
            "scope": self.scope,
            "subject": self.subject,
            "window": self.window,
            "window_start": self.window_start.isoformat() + "Z",
            "spend_micro_usd": self.spend_micro_usd,
            "limit_micro_usd": self.limit_micro_usd,
            "alert_ratio": self.alert_ratio,
            "created_at": self.created_at.isoformat() + "Z",
        }


@dataclass(frozen=True)
class AlertDelivery:
    """One attempt to POST an alert event: the receiver's status code, or the error when there was none."""

    event_id: str
    attempt: int
    attempted_at: datetime
    status_code: int | None
    error: str | None
    delivered: bool


@dataclass(frozen=True)
class BudgetSpend:
    """A user's or a team's budget and its committed spend in the current window (for the gauges)."""

    scope: BudgetScope
    name: str
    spend_micro_usd: int
    limit_micro_usd: int
    # None: a sum over several budgets (the gauges' "_other")
    window: Window | None = None
    subject_id: int | None = None
    alert_ratio: float | None = None

    @property
    def remaining_micro_usd(self) -> int:
        return self.limit_micro_usd - self.spend_micro_usd


@dataclass(frozen=True)
class IngestJob:
    """An HTTP upload being indexed: its state and one result per file (``name``, ``status``, ``chunks``,
    ``error``). ``user_id`` None: started with the admin key."""

    id: str
    user_id: int | None
    collection: str
    status: str
    files: list[dict[str, Any]]
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
