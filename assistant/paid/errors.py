"""How a call to the paid tier fails. Every failure is a :class:`PaidError`; its ``reason`` is the short code
the cascade records and the ledger stores, so the codes never change.

PaidError                    "error"
├── PaidTimeout              "timeout"
├── PaidConnectionError      "connect_error"
├── PaidHTTPError            "http_<status>"
│   └── PaidRateLimited      "rate_limited" (HTTP 429)
├── PaidMalformedResponse    "malformed_response"
├── CircuitOpen              "circuit_open"
└── PaidBatchFailed          "batch_failed" (the Batch API failed or refused a whole batch)
"""

from __future__ import annotations

from assistant.errors import PennyError


class PaidError(PennyError):
    """The paid tier could not produce an answer. ``reason`` is a short code for logs and the ledger."""

    reason = "error"


class PaidTimeout(PaidError):
    reason = "timeout"


class PaidConnectionError(PaidError):
    reason = "connect_error"


class PaidHTTPError(PaidError):
    def __init__(self, status: int, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"the paid tier answered HTTP {status}: {message}")
        self.status = status
        self.retry_after_s = retry_after_s

    @property
    def reason(self) -> str:  # type: ignore[override]
        return f"http_{self.status}"


class PaidRateLimited(PaidHTTPError):
    @property
    def reason(self) -> str:  # type: ignore[override]
        return "rate_limited"


class PaidMalformedResponse(PaidError):
    reason = "malformed_response"


class CircuitOpen(PaidError):
    reason = "circuit_open"


class PaidBatchFailed(PaidError):
    """A whole batch came back without results (status ``failed``: its input file was refused, say)."""

    reason = "batch_failed"


def is_retryable(exc: BaseException) -> bool:
    """Transient failures: timeouts, dropped connections, 429 and 5xx. A 4xx or a bad body will not heal."""
    if isinstance(exc, PaidTimeout | PaidConnectionError):
        return True
    return isinstance(exc, PaidHTTPError) and (exc.status == 429 or exc.status >= 500)


def describe(exc: PaidError) -> str:
    """``"upstream_failed: <reason>"``: the string the cascade records for a failed escalation.

    The ``upstream_failed`` prefix is a stored code like the reasons themselves, so it keeps its name.
    """
    return f"upstream_failed: {exc.reason}"
