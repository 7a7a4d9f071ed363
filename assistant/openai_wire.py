"""OpenAI chat-completions request/response shapes, and their mapping to Penny's answers.

Requests are decoded leniently (clients send many optional fields we ignore) but what we read is typed.
Responses follow OpenAI's shapes exactly, plus a ``penny`` object with what makes Penny different:
tier, escalation, confidence, cost and sources.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from msgspec import Struct, field

PROFILES: dict[str, Literal["cascade", "local", "paid"]] = {
    "penny": "cascade",
    "penny-local": "local",
    "penny-paid": "paid",
}


class ContentPart(Struct, kw_only=True):
    type: str
    text: str | None = None


class ChatMessage(Struct, kw_only=True):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "\n".join(part.text or "" for part in self.content if part.type == "text")


class StreamOptions(Struct, kw_only=True):
    include_usage: bool = False


class ChatCompletionRequest(Struct, kw_only=True):
    model: str
    messages: list[ChatMessage]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = field(default=None)
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    user: str | None = None
    collection: str | None = None  # Penny extension: which document collection to answer from


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage_dict(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_body(
    cid: str,
    model: str,
    content: str,
    usage: dict[str, int],
    penny: dict[str, Any],
    finish_reason: str = "stop",
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
        "penny": penny,
    }


def chunk_body(
    cid: str,
    model: str,
    created: int,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    )
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
        **extra,
    }


def models_body(created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "penny"} for name in PROFILES
        ],
    }
