"""A scriptable OpenAI-compatible upstream: a real Starlette app on a real loopback port (the paid tier is the
one part tests may double). Each test queues replies; every request is recorded with its arrival time."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Kind = Literal["ok", "status", "malformed", "not_sse"]


@dataclass
class Reply:
    kind: Kind = "ok"
    text: str = "Normandy is in France [1]."
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # wait before answering (a timeout when longer than the client's)
    chunk_delay_s: float = 0.0  # wait between streamed words (an answer still arriving)
    usage: bool = True  # include usage (in the last chunk when streaming and asked for)
    prompt_tokens: int = 123
    completion_tokens: int = 7
    cached_tokens: int = 0


@dataclass
class Seen:
    body: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival


class FakePaid:
    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.default = Reply()
        self.requests: list[Seen] = []
        self.app = Starlette(routes=[Route("/v1/chat/completions", self.chat, methods=["POST"])])

    def reset(self) -> None:
        self.script.clear()
        self.default = Reply()
        self.requests.clear()

    def queue(self, *replies: Reply) -> None:
        self.script.extend(replies)

    async def chat(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.requests.append(Seen(body, dict(request.headers), time.monotonic()))
        reply = self.script.popleft() if self.script else self.default
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.kind == "status":
            error = {"error": {"message": f"scripted {reply.status}", "type": "server_error"}}
            return JSONResponse(error, status_code=reply.status, headers=reply.headers)
        if reply.kind == "malformed":
            return Response(b'{"choices": [{"message": {"content": "trunc', media_type="application/json")
        if reply.kind == "not_sse":
            return Response(b"<html>proxy error</html>", media_type="text/html")
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._events(body, reply, include_usage and reply.usage), media_type="text/event-stream"
            )
        completion: dict[str, Any] = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": "stop"}
            ],
        }
        if reply.usage:
            completion["usage"] = self._usage(reply)
        return JSONResponse(completion)

    @staticmethod
    def _usage(reply: Reply) -> dict[str, Any]:
        return {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
        }

    async def _events(self, body: dict[str, Any], reply: Reply, with_usage: bool) -> AsyncIterator[bytes]:
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "model": body.get("model", "fake")}
        words = reply.text.split(" ")
        for i, word in enumerate(words):
            if reply.chunk_delay_s and i:
                await asyncio.sleep(reply.chunk_delay_s)
            delta = word if i == 0 else " " + word
            chunk = {**base, "choices": [{"index": 0, "delta": {"content": delta}, "finish_reason": None}]}
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        final = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield f"data: {json.dumps(final)}\n\n".encode()
        if with_usage:
            yield f"data: {json.dumps({**base, 'choices': [], 'usage': self._usage(reply)})}\n\n".encode()
        yield b"data: [DONE]\n\n"


def completion_body(model: str, prompt: str, text: str) -> dict[str, Any]:
    """An OpenAI chat completion answering ``text``, with token counts estimated from the lengths: for
    test upstreams that compute their reply from the prompt."""
    prompt_tokens, completion_tokens = len(prompt) // 4, len(text) // 4 + 1
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
