"""Ledger errors. Messages are user-facing and name the fix."""

from __future__ import annotations

from assistant.errors import PennyError


class LedgerError(PennyError):
    """Base for ledger errors."""


class BudgetExceeded(LedgerError):
    """The reservation would take the user past their budget. ``retry_after_s`` is the time to the window
    reset (0 for a ``total`` budget, which never resets)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class UnknownModelPrice(LedgerError):
    """A model with no price. Raised at start-up so a missing price is never a silent $0."""


class PriceTableError(LedgerError):
    """The price file is malformed."""


class NotFound(LedgerError):
    """A user, key or reservation that does not exist."""


class AlreadyExists(LedgerError):
    """A user name or request id that is already taken."""


class ReservationClosed(LedgerError):
    """The reservation was already released (e.g. expired and recovered): do not call the paid tier."""


class SchemaTooNew(LedgerError):
    """The database was migrated by a newer Penny."""


class IdempotencyConflict(LedgerError):
    """Same Idempotency-Key, different request body (HTTP 422)."""


class IdempotencyInProgress(LedgerError):
    """The first request with this Idempotency-Key is still running (HTTP 409)."""


class CollectionForbidden(LedgerError):
    """The key's user is in no team that owns the collection (HTTP 403). One message whether the collection
    exists or not, so a key cannot probe for other teams' collections."""


class TeamForbidden(LedgerError):
    """A team's usage asked for by someone who is not that team's admin (HTTP 403; same message whether
    the team exists or not)."""
