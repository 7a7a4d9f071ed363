"""Usage ledger: users, API keys, budgets, reservations for paid calls, and one record per answer.

See docs/ARCHITECTURE.md ("Ledger") for the contract the cascade and the API build against, and README.md
here for which module owns what.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from assistant.ledger.errors import (
    AlreadyExists,
    BudgetExceeded,
    CollectionForbidden,
    IdempotencyConflict,
    IdempotencyInProgress,
    LedgerError,
    NotFound,
    PriceTableError,
    ReservationClosed,
    SchemaTooNew,
    TeamForbidden,
    UnknownModelPrice,
)
from assistant.ledger.prices import ModelPrice, PriceTable, usd_to_micro
from assistant.ledger.records import (
    ALERT_KINDS,
    GROUP_BYS,
    OWNERSHIP_BYS,
    RATINGS,
    TEAM_ROLES,
    WINDOWS,
    AlertDelivery,
    AlertEvent,
    AlertKind,
    AnswerFeedback,
    AnswerRecord,
    ApiKeyInfo,
    Budget,
    BudgetScope,
    BudgetSpend,
    BudgetStatus,
    GroupBy,
    IngestJob,
    OwnershipBy,
    Principal,
    RateLimitOverride,
    Rating,
    RecoveryReport,
    Reservation,
    ShadowLabel,
    StoredResponse,
    Team,
    TeamBudget,
    TeamMember,
    TeamRole,
    Usage,
    UsageRow,
    User,
    Window,
)

if TYPE_CHECKING:
    from assistant.ledger.ledger import Ledger
    from assistant.settings import Settings


def __getattr__(name: str) -> type[Ledger]:
    """``Ledger`` is imported on first use: it brings in SQLAlchemy, and the CLI reads ``WINDOWS`` and
    ``GROUP_BYS`` from this package at start-up, where ``penny --help`` should not pay for a database."""
    if name == "Ledger":
        from assistant.ledger.ledger import Ledger

        return Ledger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_ledger(settings: Settings, *, paid_models: tuple[str, ...] | None = None) -> Ledger:
    """The ledger from settings. Fails at start-up when a paid model has no price (never a silent $0)."""
    from assistant.ledger.ledger import Ledger

    prices = PriceTable.load(settings.ledger.prices_file)
    prices.require(*(paid_models if paid_models is not None else (settings.paid.model,)))
    per_hour = settings.ledger.local_instance_usd_per_hour
    ledger = Ledger.open(
        settings.db_url,
        prices,
        reservation_ttl_s=settings.ledger.reservation_ttl_s,
        sqlite_synchronous=settings.ledger.sqlite_synchronous,
        pool_size=settings.ledger.pool_size,
        local_micro_usd_per_hour=None
        if per_hour is None
        else usd_to_micro(per_hour, "local_instance_usd_per_hour"),
    )
    ledger.recover_stale()
    return ledger


__all__ = [
    "ALERT_KINDS",
    "GROUP_BYS",
    "OWNERSHIP_BYS",
    "RATINGS",
    "TEAM_ROLES",
    "WINDOWS",
    "AlertDelivery",
    "AlertEvent",
    "AlertKind",
    "AlreadyExists",
    "AnswerFeedback",
    "AnswerRecord",
    "ApiKeyInfo",
    "Budget",
    "BudgetExceeded",
    "BudgetScope",
    "BudgetSpend",
    "BudgetStatus",
    "CollectionForbidden",
    "GroupBy",
    "IdempotencyConflict",
    "IdempotencyInProgress",
    "IngestJob",
    "Ledger",
    "LedgerError",
    "ModelPrice",
    "NotFound",
    "OwnershipBy",
    "PriceTable",
    "PriceTableError",
    "Principal",
    "RateLimitOverride",
    "Rating",
    "RecoveryReport",
    "Reservation",
    "ReservationClosed",
    "SchemaTooNew",
    "ShadowLabel",
    "StoredResponse",
    "Team",
    "TeamBudget",
    "TeamForbidden",
    "TeamMember",
    "TeamRole",
    "UnknownModelPrice",
    "Usage",
    "UsageRow",
    "User",
    "Window",
    "open_ledger",
]
