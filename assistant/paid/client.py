"""The paid tier: a client for any OpenAI-compatible ``/chat/completions`` endpoint.

httpx does the transport (and httpx-sse the event-stream parsing) rather than the ``openai`` package because
the cascade needs control the SDK hides: one retry policy we can test (tenacity, honouring ``Retry-After``),
a circuit breaker that counts calls rather than attempts, and strict validation of what comes back, since
"OpenAI-compatible" servers differ (``llama_cpp.server`` omits ``usage`` when streaming, so we count those
tokens ourselves and flag them ``estimated``).

Every failure surfaces as an :class:`PaidError` subclass whose ``reason`` is a short code the cascade
records ("timeout", "http_500", "rate_limited", "malformed_response", "circuit_open", ...).
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from assistant.paid import tokens

if TYPE_CHECKING:
    from assistant.settings import PaidSettings


# --------------------------------------------------------------------------------------------- errors


class PaidError(Exception):
    """The paid tier could not produce an answer. ``reason`` is a short code for logs and the ledger."""

    reason = "error"


class PaidTimeout(PaidError):
    reason = "timeout"


class PaidConnectionError(PaidError):
    reason = "connect_error"


class PaidHTTPError(PaidError):
    def __init__(self, status: int, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"upstream answered HTTP {status}: {message}")
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


def is_retryable(exc: BaseException) -> bool:
    """Transient failures: timeouts, dropped connections, 429 and 5xx. A 4xx or a bad body will not heal."""
    if isinstance(exc, PaidTimeout | PaidConnectionError):
        return True
    return isinstance(exc, PaidHTTPError) and (exc.status == 429 or exc.status >= 500)


# ------------------------------------------------------------------------------------ circuit breaker


class CircuitBreaker:
    """Open after ``failure_threshold`` consecutive failed calls; after ``cooldown_s`` let one trial through
    (half-open); a success closes it, a failure re-opens it.

    Hand-written rather than pybreaker because pybreaker holds its lock for the whole guarded call, which
    would serialise every concurrent escalation behind the slowest one. Here the lock guards only state.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if self._clock() - self._opened_at >= self.cooldown_s and not self._trial_in_flight:
                return "half-open"
            return "open"

    def before_call(self) -> None:
        """Raise :class:`CircuitOpen` unless a call may go out now."""
        with self._lock:
            if self._opened_at is None:
                return
            remaining = self.cooldown_s - (self._clock() - self._opened_at)
            if remaining > 0 or self._trial_in_flight:
                raise CircuitOpen(
                    f"upstream circuit open after {self._failures} consecutive failures; "
                    f"next trial in {max(remaining, 0):.1f}s"
                )
            self._trial_in_flight = True  # half-open: exactly one trial call

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_in_flight or self._failures >= self.failure_threshold:
                self._opened_at = self._clock()
            self._trial_in_flight = False


# ---------------------------------------------------------------------------------- response shapes


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Message(_Lenient):
    content: str | None = None


class _Choice(_Lenient):
    message: _Message
    finish_reason: str | None = None


class _PromptDetails(_Lenient):
    cached_tokens: int = 0


class _Usage(_Lenient):
    prompt_tokens: int
    completion_tokens: int
    prompt_tokens_details: _PromptDetails | None = None


class _Completion(_Lenient):
    model: str | None = None
    choices: list[_Choice]
    usage: _Usage | None = None


class _Delta(_Lenient):
    content: str | None = None


class _ChunkChoice(_Lenient):
    delta: _Delta = _Delta()
    finish_reason: str | None = None


class _Chunk(_Lenient):
    model: str | None = None
    choices: list[_ChunkChoice] = []
    usage: _Usage | None = None


@dataclass(frozen=True)
class PaidUsage:
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0
    estimated: bool = False  # True when we counted with tiktoken because the upstream did not say


@dataclass
class PaidResult:
    text: str
    model: str
    usage: PaidUsage
    finish_reason: str
    seconds: float
    attempts: int  # HTTP attempts including retries


def _usage_from(raw: _Usage) -> PaidUsage:
    cached = raw.prompt_tokens_details.cached_tokens if raw.prompt_tokens_details else 0
    return PaidUsage(raw.prompt_tokens, raw.completion_tokens, cached_prompt_tokens=cached)


def _parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` is either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# ------------------------------------------------------------------------------------------- client


class PaidClient:
    """Chat completions against one OpenAI-compatible endpoint, with retries and a circuit breaker."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 2,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        max_retry_after_s: float = 30.0,
        breaker: CircuitBreaker | None = None,
        max_tokens: int = 256,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_tokens = max_tokens
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.breaker = breaker or CircuitBreaker()
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        )

    @classmethod
    def from_settings(cls, settings: PaidSettings) -> PaidClient | None:
        """A client when ``paid.base_url`` is set, else None (the cascade then never escalates)."""
        if not settings.base_url:
            return None
        return cls(
            settings.base_url,
            settings.model,
            settings.api_key(),
            timeout_s=settings.timeout_s,
            connect_timeout_s=settings.connect_timeout_s,
            max_retries=settings.max_retries,
            backoff_base_s=settings.backoff_base_s,
            backoff_max_s=settings.backoff_max_s,
            max_retry_after_s=settings.max_retry_after_s,
            breaker=CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown_s),
            max_tokens=settings.max_tokens,
        )

    def close(self) -> None:
        self._http.close()

    @staticmethod
    def estimate_prompt_tokens(messages: Sequence[dict[str, str]]) -> int:
        """Tokens to reserve before the call (tiktoken); the bill settles on the upstream's ``usage``."""
        return tokens.count_messages(messages)

    # ---------------------------------------------------------------------------------- retries

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, PaidHTTPError) and exc.retry_after_s is not None:
            return min(exc.retry_after_s, self.max_retry_after_s)
        return min(self.backoff_base_s * 2 ** (state.attempt_number - 1), self.backoff_max_s)

    def _retrying(self) -> Retrying:
        return Retrying(
            retry=retry_if_exception(is_retryable),
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
        )

    def _body(
        self, messages: Sequence[dict[str, str]], max_tokens: int | None, stream: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(messages),
            "max_tokens": max_tokens or self.max_tokens,
            "temperature": 0.0,
        }
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    @staticmethod
    def _raise_for_status(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        response.read()
        message = response.text[:300]
        retry_after = _parse_retry_after(response.headers.get("retry-after"))
        if response.status_code == 429:
            raise PaidRateLimited(429, message, retry_after)
        raise PaidHTTPError(response.status_code, message, retry_after)

    # ------------------------------------------------------------------------------- completions

    def chat(self, messages: Sequence[dict[str, str]], max_tokens: int | None = None) -> PaidResult:
        """One completion. Raises an :class:`PaidError` subclass; never returns a partial answer."""
        self.breaker.before_call()
        started = time.perf_counter()
        retrying = self._retrying()
        try:
            completion = retrying(self._post_once, self._body(messages, max_tokens, stream=False))
        except BaseException:
            self.breaker.record_failure()
            raise
        self.breaker.record_success()
        choice = completion.choices[0]
        if completion.usage is not None:
            usage = _usage_from(completion.usage)
        else:
            usage = self._estimated_usage(messages, choice.message.content or "")
        return PaidResult(
            text=(choice.message.content or "").strip(),
            model=completion.model or self.model,
            usage=usage,
            finish_reason=choice.finish_reason or "stop",
            seconds=time.perf_counter() - started,
            attempts=retrying.statistics.get("attempt_number", 1),
        )

    def _post_once(self, body: dict[str, Any]) -> _Completion:
        try:
            response = self._http.post("/chat/completions", json=body)
        except httpx.TimeoutException as exc:
            raise PaidTimeout(f"upstream timed out: {exc}") from exc
        except httpx.TransportError as exc:
            raise PaidConnectionError(f"cannot reach upstream {self.base_url}: {exc}") from exc
        self._raise_for_status(response)
        try:
            completion = _Completion.model_validate_json(response.content)
        except ValidationError as exc:
            raise PaidMalformedResponse(
                f"upstream sent a body that is not a chat completion: {response.text[:200]!r}"
            ) from exc
        if not completion.choices:
            raise PaidMalformedResponse("upstream sent a chat completion with no choices")
        return completion

    def stream_chat(
        self, messages: Sequence[dict[str, str]], max_tokens: int | None = None
    ) -> Iterator[str | PaidResult]:
        """Yield text deltas, then one :class:`PaidResult`.

        Retries apply only until the stream opens: once text has been yielded a failure is raised as is.
        """
        from httpx_sse import EventSource, SSEError

        self.breaker.before_call()
        started = time.perf_counter()
        body = self._body(messages, max_tokens, stream=True)
        retrying = self._retrying()
        try:
            response = retrying(self._open_stream, body)
        except BaseException:
            self.breaker.record_failure()
            raise
        parts: list[str] = []
        usage: PaidUsage | None = None
        model = self.model
        finish_reason = "stop"
        try:
            for event in EventSource(response).iter_sse():
                if event.data.strip() == "[DONE]":
                    break
                try:
                    chunk = _Chunk.model_validate_json(event.data)
                except ValidationError as exc:
                    raise PaidMalformedResponse(
                        f"upstream sent a stream event that is not a chunk: {event.data[:200]!r}"
                    ) from exc
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = _usage_from(chunk.usage)
                for choice in chunk.choices[:1]:
                    if choice.delta.content:
                        parts.append(choice.delta.content)
                        yield choice.delta.content
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
        except httpx.TimeoutException as exc:
            self.breaker.record_failure()
            raise PaidTimeout(f"upstream stream timed out: {exc}") from exc
        except (httpx.TransportError, SSEError) as exc:
            self.breaker.record_failure()
            raise PaidConnectionError(f"upstream stream broke: {exc}") from exc
        except PaidError:
            self.breaker.record_failure()
            raise
        except GeneratorExit:
            self.breaker.record_success()  # the caller stopped reading; the upstream was fine
            raise
        finally:
            response.close()
        self.breaker.record_success()
        text = "".join(parts)
        yield PaidResult(
            text=text.strip(),
            model=model,
            usage=usage or self._estimated_usage(messages, text),
            finish_reason=finish_reason,
            seconds=time.perf_counter() - started,
            attempts=retrying.statistics.get("attempt_number", 1),
        )

    def _open_stream(self, body: dict[str, Any]) -> httpx.Response:
        request = self._http.build_request("POST", "/chat/completions", json=body)
        try:
            response = self._http.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise PaidTimeout(f"upstream timed out: {exc}") from exc
        except httpx.TransportError as exc:
            raise PaidConnectionError(f"cannot reach upstream {self.base_url}: {exc}") from exc
        try:
            self._raise_for_status(response)
        except PaidError:
            response.close()
            raise
        content_type = response.headers.get("content-type", "")
        if "text/event-stream" not in content_type:
            response.read()
            response.close()
            raise PaidMalformedResponse(
                f"asked for a stream, upstream sent {content_type or 'no content type'}: "
                f"{response.text[:200]!r}"
            )
        return response

    @staticmethod
    def _estimated_usage(messages: Sequence[dict[str, str]], text: str) -> PaidUsage:
        return PaidUsage(
            prompt_tokens=tokens.count_messages(messages),
            completion_tokens=tokens.count_text(text),
            estimated=True,
        )


def describe(exc: PaidError) -> str:
    """``"upstream_failed: <reason>"``: the string the cascade records for a failed escalation."""
    return f"upstream_failed: {exc.reason}"


__all__ = [
    "CircuitBreaker",
    "CircuitOpen",
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
