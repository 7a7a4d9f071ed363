"""Usage ledger: users, API keys, budgets, reservations for paid calls, and one record per answer.

See docs/ARCHITECTURE.md ("Ledger") for the contract the cascade and the API build against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from assistant.ledger.errors import (
    AlreadyExists,
    BudgetExceeded,
    IdempotencyConflict,
    IdempotencyInProgress,
    LedgerError,
    NotFound,
    PriceTableError,
    ReservationClosed,
    SchemaTooNew,
    UnknownModelPrice,
)
from assistant.ledger.ledger import Ledger
from assistant.ledger.prices import ModelPrice, PriceTable, usd_to_micro
from assistant.ledger.records import (
    AnswerRecord,
    ApiKeyInfo,
    Budget,
    BudgetStatus,
    Principal,
    RecoveryReport,
    Reservation,
    StoredResponse,
    Usage,
    User,
)
from assistant.ledger.usage import UsageRow

if TYPE_CHECKING:
    from assistant.settings import Settings


def open_ledger(settings: Settings, *, paid_models: tuple[str, ...] | None = None) -> Ledger:
    """The ledger from settings. Fails at start-up when a paid model has no price (never a silent $0)."""
    prices = PriceTable.load(settings.ledger.prices_file)
    prices.require(*(paid_models if paid_models is not None else (settings.paid.model,)))
    per_hour = settings.ledger.local_instance_usd_per_hour
    ledger = Ledger.open(
        settings.db_url,
        prices,
        reservation_ttl_s=settings.ledger.reservation_ttl_s,
        sqlite_synchronous=settings.ledger.sqlite_synchronous,
        local_micro_usd_per_hour=None
        if per_hour is None
        else usd_to_micro(per_hour, "local_instance_usd_per_hour"),
    )
    ledger.recover_stale()
    return ledger


__all__ = [
    "AlreadyExists",
    "AnswerRecord",
    "ApiKeyInfo",
    "Budget",
    "BudgetExceeded",
    "BudgetStatus",
    "IdempotencyConflict",
    "IdempotencyInProgress",
    "Ledger",
    "LedgerError",
    "ModelPrice",
    "NotFound",
    "PriceTable",
    "PriceTableError",
    "Principal",
    "RecoveryReport",
    "Reservation",
    "ReservationClosed",
    "SchemaTooNew",
    "StoredResponse",
    "UnknownModelPrice",
    "Usage",
    "UsageRow",
    "User",
    "open_ledger",
]
