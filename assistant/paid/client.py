"""The paid tier's client: chat completions against any OpenAI-compatible ``/chat/completions`` endpoint.

httpx does the transport (and ``assistant.openai_wire`` the wire format) rather than the ``openai`` package
because the cascade needs control the SDK hides: one retry policy we can test (tenacity, honouring
``Retry-After``), a circuit breaker that counts calls rather than attempts, and strict validation of what
comes back, since "OpenAI-compatible" servers differ (``llama_cpp.server`` omits ``usage`` when streaming,
so we count those tokens ourselves and flag them ``estimated``).

Every failure surfaces as a :class:`~assistant.paid.errors.PaidError` subclass whose ``reason`` is a short
code the cascade records ("timeout", "http_500", "rate_limited", "malformed_response", "circuit_open", ...).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import msgspec
from httpx_sse import SSEError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from assistant.openai_wire import (
    ChatCompletion,
    ChatCompletionRequest,
    StreamOptions,
    Usage,
    WireFormatError,
    chat_messages,
    decode_completion,
    iter_chunks,
)
from assistant.paid import tokens
from assistant.paid.breaker import CircuitBreaker
from assistant.paid.errors import (
    PaidConnectionError,
    PaidError,
    PaidHTTPError,
    PaidMalformedResponse,
    PaidRateLimited,
    PaidTimeout,
    is_retryable,
)

if TYPE_CHECKING:
    from assistant.settings import PaidSettings


@dataclass(frozen=True)
class PaidUsage:
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0
    estimated: bool = False  # True when we counted with tiktoken because the paid tier did not say


@dataclass
class PaidResult:
    text: str
    model: str
    usage: PaidUsage
    finish_reason: str
    seconds: float
    attempts: int  # HTTP attempts including retries


def _usage_from(reported: Usage) -> PaidUsage:
    return PaidUsage(
        reported.prompt_tokens, reported.completion_tokens, cached_prompt_tokens=reported.cached_prompt_tokens
    )


def result_of(
    completion: ChatCompletion,
    messages: Sequence[dict[str, str]],
    model: str,
    *,
    seconds: float,
    attempts: int = 1,
) -> PaidResult:
    """A chat completion (with choices) as a :class:`PaidResult`: its first choice, and its usage as
    reported, else counted with tiktoken and marked estimated. A live call's, or a batch result line's."""
    choice = completion.choices[0]
    text = choice.message.content or ""
    usage = _usage_from(completion.usage) if completion.usage else _estimated_usage(messages, text)
    return PaidResult(
        text=text.strip(),
        model=completion.model or model,
        usage=usage,
        finish_reason=choice.finish_reason or "stop",
        seconds=seconds,
        attempts=attempts,
    )


def _estimated_usage(messages: Sequence[dict[str, str]], text: str) -> PaidUsage:
    """The tokens of a call the paid tier did not report, counted with tiktoken."""
    return PaidUsage(tokens.count_messages(messages), tokens.count_text(text), estimated=True)


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
        prompt_token_margin: float = 0.1,
        prompt_token_overhead: int = 32,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.max_tokens = max_tokens
        self.prompt_token_margin = prompt_token_margin
        self.prompt_token_overhead = prompt_token_overhead
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
            prompt_token_margin=settings.prompt_token_margin,
            prompt_token_overhead=settings.prompt_token_overhead,
        )

    def close(self) -> None:
        self._http.close()

    @staticmethod
    def estimate_prompt_tokens(messages: Sequence[dict[str, str]]) -> int:
        """The prompt's tokens as tiktoken counts them: the expected cost of a call is priced on this."""
        return tokens.count_messages(messages)

    def reserve_prompt_tokens(self, messages: Sequence[dict[str, str]]) -> int:
        """The prompt tokens to reserve before the call: the estimate with headroom, so the bill, which
        settles on the paid tier's ``usage``, stays within the hold."""
        return tokens.with_headroom(
            tokens.count_messages(messages), self.prompt_token_margin, self.prompt_token_overhead
        )

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

    def _request(
        self, messages: Sequence[dict[str, str]], max_tokens: int | None, stream: bool
    ) -> ChatCompletionRequest:
        return ChatCompletionRequest(
            model=self.model,
            messages=chat_messages(messages),
            max_tokens=max_tokens or self.max_tokens,
            temperature=0.0,
            stream=stream,
            stream_options=StreamOptions(include_usage=True) if stream else None,
        )

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

    def chat(self, messages: Sequence[dict[str, str]], max_tokens: int | None = None) -> PaidResult:
        """One completion. Raises a :class:`PaidError` subclass; never returns a partial answer."""
        request = self._request(messages, max_tokens, stream=False)
        self.breaker.before_call()
        started = time.perf_counter()
        retrying = self._retrying()
        try:
            completion = retrying(self._post_once, request)
        except BaseException:
            self.breaker.record_failure()
            raise
        self.breaker.record_success()
        return result_of(
            completion,
            messages,
            self.model,
            seconds=time.perf_counter() - started,
            attempts=retrying.statistics.get("attempt_number", 1),
        )

    def chat_body(self, messages: Sequence[dict[str, str]], max_tokens: int | None = None) -> dict[str, Any]:
        """The JSON body :meth:`chat` would POST: a batch sends exactly what a live call would."""
        return msgspec.to_builtins(self._request(messages, max_tokens, stream=False))

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request to another endpoint of the paid tier's API (the Batch API's files and batches), with
        the key, timeouts and retry policy of :meth:`chat`. Raises a :class:`PaidError` subclass."""
        return self._retrying()(self._call_once, method, path, kwargs)

    def _call_once(self, method: str, path: str, kwargs: dict[str, Any]) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise PaidTimeout(f"the paid tier timed out: {exc}") from exc
        except httpx.TransportError as exc:
            raise PaidConnectionError(f"cannot reach the paid tier at {self.base_url}: {exc}") from exc
        self._raise_for_status(response)
        return response

    def _post_once(self, request: ChatCompletionRequest) -> ChatCompletion:
        try:
            response = self._http.post("/chat/completions", json=msgspec.to_builtins(request))
        except httpx.TimeoutException as exc:
            raise PaidTimeout(f"the paid tier timed out: {exc}") from exc
        except httpx.TransportError as exc:
            raise PaidConnectionError(f"cannot reach the paid tier at {self.base_url}: {exc}") from exc
        self._raise_for_status(response)
        try:
            completion = decode_completion(response.content)
        except WireFormatError as exc:
            raise PaidMalformedResponse(
                f"the paid tier sent a body that is not a chat completion: {response.text[:200]!r}"
            ) from exc
        if not completion.choices:
            raise PaidMalformedResponse("the paid tier sent a chat completion with no choices")
        return completion

    def stream_chat(
        self, messages: Sequence[dict[str, str]], max_tokens: int | None = None
    ) -> Iterator[str | PaidResult]:
        """Yield text deltas, then one :class:`PaidResult`.

        Retries apply only until the stream opens: once text has been yielded a failure is raised as is.
        """
        request = self._request(messages, max_tokens, stream=True)
        self.breaker.before_call()
        started = time.perf_counter()
        retrying = self._retrying()
        try:
            response = retrying(self._open_stream, request)
        except BaseException:
            self.breaker.record_failure()
            raise
        parts: list[str] = []
        usage: PaidUsage | None = None
        model = self.model
        finish_reason = "stop"
        try:
            for chunk in iter_chunks(response):
                model = chunk.model or model
                if chunk.usage:
                    usage = _usage_from(chunk.usage)
                for choice in chunk.choices[:1]:
                    if choice.delta.text:
                        parts.append(choice.delta.text)
                        yield choice.delta.text
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
        except WireFormatError as exc:
            self.breaker.record_failure()
            raise PaidMalformedResponse(
                f"the paid tier sent a stream event that is not a chunk: {exc.data[:200]!r}"
            ) from exc
        except httpx.TimeoutException as exc:
            self.breaker.record_failure()
            raise PaidTimeout(f"the paid tier's stream timed out: {exc}") from exc
        except (httpx.TransportError, SSEError) as exc:
            self.breaker.record_failure()
            raise PaidConnectionError(f"the paid tier's stream broke: {exc}") from exc
        except GeneratorExit:
            self.breaker.record_success()  # the caller stopped reading; the paid tier was fine
            raise
        finally:
            response.close()
        self.breaker.record_success()
        text = "".join(parts)
        yield PaidResult(
            text=text.strip(),
            model=model,
            usage=usage or _estimated_usage(messages, text),
            finish_reason=finish_reason,
            seconds=time.perf_counter() - started,
            attempts=retrying.statistics.get("attempt_number", 1),
        )

    def _open_stream(self, request: ChatCompletionRequest) -> httpx.Response:
        sent = self._http.build_request("POST", "/chat/completions", json=msgspec.to_builtins(request))
        try:
            response = self._http.send(sent, stream=True)
        except httpx.TimeoutException as exc:
            raise PaidTimeout(f"the paid tier timed out: {exc}") from exc
        except httpx.TransportError as exc:
            raise PaidConnectionError(f"cannot reach the paid tier at {self.base_url}: {exc}") from exc
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
                f"asked for a stream, the paid tier sent {content_type or 'no content type'}: "
                f"{response.text[:200]!r}"
            )
        return response
