"""The OpenAI chat-completions wire format, written once for everything in Penny that speaks it.

Penny's API serves it, each local worker serves it, the worker pool reads it from those workers (and from
llama-server or vLLM), and the paid client reads it from the paid tier.

| name | what it is |
|---|---|
| ``ChatMessage``, ``ContentPart`` | one conversation turn of a request (plain text or text parts) |
| ``chat_messages()`` | the structs of the plain ``{"role", "content"}`` turns the cascade builds |
| ``StreamOptions``, ``ChatCompletionRequest`` | a chat-completions request |
| ``Usage``, ``PromptTokensDetails`` | the token counts of a completion |
| ``ChoiceLogprobs``, ``TokenLogprob``, ``TopLogprob`` | per-token log-probabilities of a choice |
| ``Timings`` | llama-server's ``timings`` extension: how long generating took |
| ``scored_tail``, ``scored_tail_logprobs`` | Penny's extension: log-probabilities of the prompt's end |
| ``AssistantMessage``, ``Choice``, ``ChatCompletion`` | a completion that is not streamed |
| ``Delta``, ``ChunkChoice``, ``ChatCompletionChunk`` | one chunk of a streamed completion |
| ``ErrorDetail`` | the ``error`` of an event a server sends instead of a chunk when it fails mid-stream |
| ``ModelCard``, ``ModelList`` | ``GET /v1/models`` |
| ``completion_id()`` | a fresh ``chatcmpl-...`` id |
| ``encode_sse()``, ``SSE_DONE`` | Server-Sent Events out: ``data: {...}`` per chunk, then ``data: [DONE]`` |
| ``iter_chunks()``, ``decode_chunk()`` | Server-Sent Events in: the chunks of a streamed response |
| ``decode_completion()``, ``WireFormatError`` | a completion body in; what a body that is neither raises |

Decoding is lenient because "OpenAI-compatible" servers differ: unknown fields are ignored, fields some
servers leave out have defaults (vLLM's chunks carry no ``id``; llama-cpp-python streams no ``usage``) and
numbers sent as strings are accepted. Encoding is strict: typed structs, and the optional parts (``usage``
in a chunk, ``timings``, a delta's ``role``) are left out rather than sent as ``null`` unless set.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Literal

import msgspec
from httpx_sse import EventSource
from msgspec import UNSET, Struct, UnsetType, field

if TYPE_CHECKING:
    import httpx

Role = Literal["system", "user", "assistant", "developer", "tool"]

# ------------------------------------------------------------------------------------------- requests


class ContentPart(Struct, kw_only=True, omit_defaults=True):
    type: str
    text: str | None = None


class ChatMessage(Struct, kw_only=True, omit_defaults=True):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The turn's text: the string, or its text parts joined by newlines."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "\n".join(part.text or "" for part in self.content if part.type == "text")


def chat_messages(turns: Iterable[Mapping[str, str]]) -> list[ChatMessage]:
    """The structs of plain ``{"role", "content"}`` turns; a ``ValueError`` names a turn that is not one."""
    return msgspec.convert(list(turns), list[ChatMessage])


class StreamOptions(Struct, kw_only=True):
    include_usage: bool = False


class ChatCompletionRequest(Struct, kw_only=True, omit_defaults=True):
    """The request fields Penny sends or honours; a server reading it ignores the rest of OpenAI's."""

    messages: list[ChatMessage]
    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    logprobs: bool = False
    top_logprobs: int | None = None
    user: str | None = None
    # Penny's extension: a text the last message ends with, whose tokens' log-probabilities given all before
    # them the server returns in the choice's ``scored_tail_logprobs``. Other servers ignore it.
    scored_tail: str | None = None
    # Penny's extension: the llama.cpp threads to decode this request with (threads by load, pool/README.md);
    # absent, the worker's start-up threads. Other servers ignore it; Penny sends it only to its own workers.
    n_threads: int | None = None


# ------------------------------------------------------------------------------ usage, logprobs, timings


class PromptTokensDetails(Struct, kw_only=True):
    cached_tokens: int = 0


class Usage(Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int = 0  # some servers leave it out; ``Usage.of`` always fills it
    prompt_tokens_details: PromptTokensDetails | UnsetType | None = UNSET

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )

    @property
    def cached_prompt_tokens(self) -> int:
        return self.prompt_tokens_details.cached_tokens if self.prompt_tokens_details else 0


class TopLogprob(Struct, kw_only=True):
    token: str = ""
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(Struct, kw_only=True):
    token: str = ""
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = []


class ChoiceLogprobs(Struct, kw_only=True):
    content: list[TokenLogprob] | None = None

    @classmethod
    def of(cls, logprobs: Iterable[float]) -> ChoiceLogprobs:
        """The block for these per-token logprobs, with ``token`` empty: the tokens' text is not kept."""
        return cls(content=[TokenLogprob(logprob=value) for value in logprobs])

    def values(self) -> list[float]:
        return [entry.logprob for entry in self.content or ()]


class Timings(Struct, kw_only=True):
    """llama-server's ``timings``; Penny's worker adds ``total_ms`` so the pool learns the service time."""

    prompt_n: int = 0
    predicted_n: int = 0
    total_ms: float | None = None


# ----------------------------------------------------------------------------------------- completions


class AssistantMessage(Struct, kw_only=True):
    role: str = "assistant"
    content: str | None = None


class Choice(Struct, kw_only=True):
    index: int = 0
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None
    scored_tail_logprobs: list[float] | UnsetType | None = UNSET  # see ChatCompletionRequest.scored_tail


class ChatCompletion(Struct, kw_only=True):
    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str | None = None
    choices: list[Choice]
    usage: Usage | UnsetType | None = UNSET
    timings: Timings | UnsetType | None = UNSET


# ---------------------------------------------------------------------------------------------- chunks


class Delta(Struct, kw_only=True):
    role: str | UnsetType | None = UNSET
    content: str | UnsetType | None = UNSET

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else ""


class ChunkChoice(Struct, kw_only=True):
    index: int = 0
    delta: Delta = field(default_factory=Delta)
    logprobs: ChoiceLogprobs | None = None
    finish_reason: str | None = None
    scored_tail_logprobs: list[float] | UnsetType | None = UNSET  # in the finishing chunk, when asked


class ErrorDetail(Struct, kw_only=True):
    message: str = ""
    type: str | None = None
    param: str | None = None
    code: str | int | None = None


class ChatCompletionChunk(Struct, kw_only=True):
    id: str = ""
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str | None = None
    choices: list[ChunkChoice] = []
    usage: Usage | UnsetType | None = UNSET  # in the finishing chunk, or in a later one without choices
    timings: Timings | UnsetType | None = UNSET
    error: ErrorDetail | str | UnsetType | None = UNSET  # set on an error event instead of a chunk

    @property
    def error_message(self) -> str | None:
        """What the server said went wrong, when this event is an error rather than a chunk."""
        if isinstance(self.error, ErrorDetail):
            return self.error.message or "error"
        return self.error or None


# ---------------------------------------------------------------------------------------------- models


class ModelCard(Struct, kw_only=True):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = ""


class ModelList(Struct, kw_only=True):
    object: str = "list"
    data: list[ModelCard] = []


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


# ---------------------------------------------------------------------------------- encode and decode

SSE_DONE = b"data: [DONE]\n\n"

_encoder = msgspec.json.Encoder()
_chunk_decoder = msgspec.json.Decoder(ChatCompletionChunk, strict=False)
_completion_decoder = msgspec.json.Decoder(ChatCompletion, strict=False)


class WireFormatError(ValueError):
    """What a server sent is not the chat-completions shape expected; ``data`` is what it sent."""

    def __init__(self, message: str, data: str) -> None:
        super().__init__(message)
        self.data = data


def encode_sse(payload: Struct | Mapping[str, object]) -> bytes:
    """One Server-Sent Event carrying ``payload`` as JSON (a chunk, or an ``{"error": ...}`` body).

    The JSON is one line with a space after ``:`` and ``,``: the spacing Penny's API has always streamed,
    which clients matching on text (``"finish_reason": "stop"``) rely on.
    """
    return b"data: " + msgspec.json.format(_encoder.encode(payload), indent=0) + b"\n\n"


def decode_chunk(data: str | bytes) -> ChatCompletionChunk:
    try:
        return _chunk_decoder.decode(data)
    except msgspec.DecodeError as exc:
        text = data if isinstance(data, str) else data.decode(errors="replace")
        raise WireFormatError(f"not a chat.completion.chunk: {exc}", text) from exc


def decode_completion(body: bytes) -> ChatCompletion:
    try:
        return _completion_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise WireFormatError(f"not a chat.completion: {exc}", body.decode(errors="replace")) from exc


def iter_chunks(response: httpx.Response) -> Iterator[ChatCompletionChunk]:
    """The chunks of a streamed chat completion, up to ``data: [DONE]`` (or the end of the stream).

    Raises :class:`WireFormatError` on an event that is not a chunk, and ``httpx_sse.SSEError`` (an
    ``httpx.TransportError``) when the response is not an event stream at all.
    """
    for event in EventSource(response).iter_sse():
        if event.data.strip() == "[DONE]":
            return
        yield decode_chunk(event.data)
