"""The root of every exception Penny raises on purpose: ``except PennyError`` catches them all.

Each concept owns its subtree; messages are user-facing and name the fix. The API maps these to HTTP
statuses in one table (``assistant/api/errors.py``).

    PennyError
    ├── LedgerError                  assistant.ledger.errors
    │   ├── BudgetExceeded           over budget (HTTP 429, Retry-After)
    │   ├── NotFound, AlreadyExists  (404, 409)
    │   ├── CollectionForbidden      another team's (or nobody's) collection (403, one message either way)
    │   ├── TeamForbidden            a team's usage asked by someone not its admin (403)
    │   ├── IdempotencyConflict      same key, different body (422)
    │   ├── IdempotencyInProgress    same key, first request still running (409)
    │   └── ReservationClosed, UnknownModelPrice, PriceTableError, SchemaTooNew
    ├── PaidError                    assistant.paid.errors: the paid tier could not answer (never reaches a
    │                                client: the cascade serves the local answer, degraded)
    ├── RateLimited                  assistant.limits: over a rate or concurrency limit (429, Retry-After,
    │                                x-ratelimit-*)
    ├── AlertConfigError             assistant.alerts.webhook: a webhook URL without a secret (start-up)
    ├── LimiterUnavailable           assistant.limits: Redis down and limits.on_redis_error = refuse (503)
    ├── PoolError                    assistant.local.pool: PoolUnavailable (503), PoolDeadlineExceeded (504),
    │                                PoolOverloaded (503, Retry-After: shed before it started)
    ├── ModelError                   assistant.local.registry: a GGUF model that cannot be assembled
    └── CalibrationError             assistant.calibration: an unusable calibration file
"""

from __future__ import annotations


class PennyError(Exception):
    """Base of Penny's own exceptions."""
