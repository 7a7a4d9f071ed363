"""What every limiter shares: the limits of a scope, an admission, the 429 exception, the headers.

A *scope* is one thing a limit applies to (``user:3``, ``key:k_ab12``). A request is admitted only if
every scope it belongs to has room, and then it is recorded in all of them in the same step: a limiter
never admits into one scope and refuses in another.
"""

from __future__ import annotations

import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from assistant.errors import PennyError

WINDOW_S = 60.0  # rpm and tpm are per minute
Reason = Literal["requests", "tokens", "concurrent", "too_large"]


@dataclass(frozen=True)
class Limits:
    """Per-minute requests, per-minute paid tokens, requests in flight; 0 means unlimited."""

    rpm: int = 0
    tpm: int = 0
    max_concurrent: int = 0

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "max_concurrent"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int (0 = unlimited), got {value!r}")

    @property
    def unlimited(self) -> bool:
        return not (self.rpm or self.tpm or self.max_concurrent)


@dataclass(frozen=True)
class Scope:
    name: str  # "user:<id>" or "key:<key id>": never a secret
    limits: Limits


@dataclass(frozen=True)
class ScopeUsage:
    """A scope's window as the limiter saw it at admission (after recording the admitted request)."""

    scope: Scope
    requests: int  # in the window
    tokens: int  # paid tokens in the window
    in_flight: int
    oldest_s: float | None  # seconds until the oldest entry of the window expires


@dataclass(frozen=True)
class RateHeaders:
    """OpenAI's ``x-ratelimit-*`` values for the most constrained scope of each kind."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None

    @classmethod
    def of(cls, usages: Sequence[ScopeUsage]) -> RateHeaders:
        by_requests = [u for u in usages if u.scope.limits.rpm]
        by_tokens = [u for u in usages if u.scope.limits.tpm]
        values: dict[str, int | float | None] = {}
        if by_requests:
            tight = min(by_requests, key=lambda u: u.scope.limits.rpm - u.requests)
            values |= {
                "limit_requests": tight.scope.limits.rpm,
                "remaining_requests": max(0, tight.scope.limits.rpm - tight.requests),
                "reset_requests_s": tight.oldest_s or 0.0,
            }
        if by_tokens:
            tight = min(by_tokens, key=lambda u: u.scope.limits.tpm - u.tokens)
            values |= {
                "limit_tokens": tight.scope.limits.tpm,
                "remaining_tokens": max(0, tight.scope.limits.tpm - tight.tokens),
                "reset_tokens_s": tight.oldest_s or 0.0,
            }
        return cls(**values)  # type: ignore[arg-type]

    def http(self) -> dict[str, str]:
        """The headers, only for the limits that apply (as OpenAI sends them)."""
        headers: dict[str, str] = {}
        for kind, limit, remaining, reset in (
            ("requests", self.limit_requests, self.remaining_requests, self.reset_requests_s),
            ("tokens", self.limit_tokens, self.remaining_tokens, self.reset_tokens_s),
        ):
            if limit is not None:
                headers[f"x-ratelimit-limit-{kind}"] = str(limit)
                headers[f"x-ratelimit-remaining-{kind}"] = str(remaining)
                headers[f"x-ratelimit-reset-{kind}"] = duration(reset or 0.0)
        return headers


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``120ms``, ``17s``, ``1m30s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = round(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"


class RateLimited(PennyError):
    """Over a rate or concurrency limit (HTTP 429). ``retry_after_s`` is when the request would fit."""

    def __init__(self, message: str, *, reason: Reason, retry_after_s: int, headers: RateHeaders) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after_s = max(1, retry_after_s)
        self.headers = headers


class LimiterUnavailable(PennyError):
    """The shared counters (Redis) cannot be reached and ``limits.on_redis_error`` is ``refuse`` (503)."""


@dataclass
class Admission:
    """One admitted request: its entries in every scope's window and its concurrency lease.

    ``settle`` and ``release`` each take effect once, whoever calls them first (the stream's end, the
    response's completion hook, an error path): a second call is a no-op, so a lease cannot be released
    twice nor a settlement applied twice."""

    id: str
    scopes: tuple[Scope, ...]
    tokens: int  # paid tokens reserved at admission (the estimate)
    headers: RateHeaders = field(default_factory=RateHeaders)
    enforced: bool = True  # False: admitted without counting (no limits, or Redis down and failing open)
    _done: set[str] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def claim(self, step: Literal["settle", "release"]) -> bool:
        """True for the first caller of ``step`` only."""
        with self._lock:
            if step in self._done:
                return False
            self._done.add(step)
            return True


def new_admission_id() -> str:
    return uuid.uuid4().hex


Denial = tuple[Reason, Scope, float]  # which limit, in which scope, seconds until the request would fit


def refusal(denials: Sequence[Denial], headers: RateHeaders) -> RateLimited:
    """The 429 for the binding denial (a request too large ever to fit, else the longest wait), with a
    message that says which limit and what to do about it."""
    reason, scope, retry_after_s = max(denials, key=lambda d: (d[0] == "too_large", d[2]))
    limits = scope.limits
    wait = max(1, round(retry_after_s + 0.499))
    messages = {
        "requests": f"Rate limit reached for {scope.name} on requests per minute: limit {limits.rpm}.",
        "tokens": f"Rate limit reached for {scope.name} on paid tokens per minute: limit {limits.tpm}.",
        "concurrent": f"Too many requests in flight for {scope.name}: limit {limits.max_concurrent}.",
        "too_large": f"Request too large for {scope.name}: it may use more paid tokens than the limit of "
        f"{limits.tpm} per minute; lower max_tokens or shorten the conversation.",
    }
    suffix = "" if reason == "too_large" else f" Try again in {wait}s."
    return RateLimited(messages[reason] + suffix, reason=reason, retry_after_s=wait, headers=headers)


class Limiter(ABC):
    """Admit a request into every scope at once, or refuse it; settle its tokens; release its lease."""

    def __init__(self, *, window_s: float = WINDOW_S, lease_ttl_s: float = 600.0) -> None:
        self.window_s = window_s
        self.lease_ttl_s = lease_ttl_s

    def admit(self, scopes: Sequence[Scope], tokens: int = 0) -> Admission:
        """Record the request (and ``tokens`` paid tokens) in every scope, or raise ``RateLimited``."""
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens}")
        active = tuple(scope for scope in scopes if not scope.limits.unlimited)
        if not active:
            return Admission(new_admission_id(), (), tokens, enforced=False)
        return self._admit(active, tokens)

    def settle(self, admission: Admission, tokens: int) -> None:
        """Replace the admission's estimated tokens by what it used (lowers the window when less)."""
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens}")
        if admission.enforced and admission.claim("settle") and tokens != admission.tokens:
            self._settle(admission, tokens)

    def release(self, admission: Admission) -> None:
        """End the request's concurrency lease (its rpm and tpm entries stay in the window)."""
        if admission.enforced and admission.claim("release"):
            self._release(admission)

    def close(self) -> None:  # noqa: B027 (optional hook: only the Redis limiter holds connections)
        """Free connections; the default holds none."""

    @abstractmethod
    def _admit(self, scopes: tuple[Scope, ...], tokens: int) -> Admission: ...

    @abstractmethod
    def _settle(self, admission: Admission, tokens: int) -> None: ...

    @abstractmethod
    def _release(self, admission: Admission) -> None: ...
