"""The paid tier: an OpenAI-compatible model the cascade escalates to when the local answer is not good
enough. What callers need is re-exported here; see README.md for which module owns what."""

from assistant.paid.batch import BatchClient, BatchOutcome, BatchRequest
from assistant.paid.breaker import CircuitBreaker
from assistant.paid.client import PaidClient, PaidResult, PaidUsage
from assistant.paid.errors import (
    CircuitOpen,
    PaidBatchFailed,
    PaidConnectionError,
    PaidError,
    PaidHTTPError,
    PaidMalformedResponse,
    PaidRateLimited,
    PaidTimeout,
    describe,
    is_retryable,
)

__all__ = [
    "BatchClient",
    "BatchOutcome",
    "BatchRequest",
    "CircuitBreaker",
    "CircuitOpen",
    "PaidBatchFailed",
    "PaidClient",
    "PaidConnectionError",
    "PaidError",
    "PaidHTTPError",
    "PaidMalformedResponse",
    "PaidRateLimited",
    "PaidResult",
    "PaidTimeout",
    "PaidUsage",
    "describe",
    "is_retryable",
]
