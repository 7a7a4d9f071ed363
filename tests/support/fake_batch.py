"""A double of the paid tier's Batch API (OpenAI's shape) beside its live chat endpoint, on a real loopback
port: the paid tier is the one part tests may double.

Both endpoints answer with the same function of the request body, so a question asked live and in a batch
gets the same answer and the same token usage: only the price differs. ``ending`` scripts how the next
batches end: ``completed``; ``failed`` (refused whole, no output); ``expired`` (the first ``answer_first``
requests answered, the rest in the error file as ``batch_expired``); ``malformed`` (completed, plus lines
that are not results: a torn line, an unknown custom_id, a body that is not a completion); ``stuck``
(in progress until cancelled, then cancelled with the first ``answer_first`` answered).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

Ending = Literal["completed", "failed", "expired", "malformed", "stuck"]
# (request body) -> (answer text, prompt tokens, completion tokens)
Answer = Callable[[dict[str, Any]], tuple[str, int, int]]


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    """The fields of a multipart/form-data body (the standard library's MIME parser; no extra package)."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return {
        str(part.get_param("name", header="content-disposition")): part.get_payload(decode=True)
        for part in message.iter_parts()  # type: ignore[attr-defined]
    }


def length_tokens(text_for: Callable[[str], str]) -> Answer:
    """An answer function: ``text_for(prompt)``, tokens estimated from the lengths (deterministic)."""

    def answer(body: dict[str, Any]) -> tuple[str, int, int]:
        prompt = "\n".join(m["content"] for m in body["messages"])
        text = text_for(prompt)
        return text, len(prompt) // 4, len(text) // 4 + 1

    return answer


@dataclass
class FakeBatchAPI:
    answer: Answer
    ending: Ending = "completed"
    answer_first: int = 0  # expired / stuck: how many requests were answered before the end
    polls_before_end: int = 2  # GETs of a batch that report it in progress
    files: dict[str, str] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    chat_calls: int = 0
    calls: list[str] = field(default_factory=list)  # "METHOD path" of every Batch API call, in order
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/files", self.upload, methods=["POST"]),
                Route("/v1/files/{file_id}/content", self.content, methods=["GET"]),
                Route("/v1/batches", self.create, methods=["POST"]),
                Route("/v1/batches/{batch_id}", self.retrieve, methods=["GET"]),
                Route("/v1/batches/{batch_id}/cancel", self.cancel, methods=["POST"]),
            ]
        )

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        text, prompt_tokens, completion_tokens = self.answer(body)
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake"),
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    async def chat(self, request: Request) -> Response:
        self.chat_calls += 1
        return JSONResponse(self.completion(json.loads(await request.body())))

    async def upload(self, request: Request) -> Response:
        self.calls.append("POST /v1/files")
        form = _multipart(request.headers["content-type"], await request.body())
        if form.get("purpose") != b"batch" or "file" not in form:
            return JSONResponse({"error": {"message": "purpose must be batch, with a file"}}, status_code=400)
        content = form["file"].decode()
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = content
        return JSONResponse({"id": file_id, "object": "file", "purpose": "batch", "bytes": len(content)})

    async def content(self, request: Request) -> Response:
        self.calls.append(f"GET /v1/files/{request.path_params['file_id']}/content")
        text = self.files.get(request.path_params["file_id"])
        if text is None:
            return JSONResponse({"error": {"message": "no such file"}}, status_code=404)
        return PlainTextResponse(text)

    async def create(self, request: Request) -> Response:
        self.calls.append("POST /v1/batches")
        body = json.loads(await request.body())
        if body.get("input_file_id") not in self.files or body.get("completion_window") != "24h":
            return JSONResponse({"error": {"message": "bad batch"}}, status_code=400)
        batch_id = f"batch_{next(self._ids)}"
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"],
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "errors": None,
            "polls": 0,
            "ending": self.ending,
        }
        return JSONResponse(self._public(self.batches[batch_id]))

    async def retrieve(self, request: Request) -> Response:
        self.calls.append("GET /v1/batches/{id}")
        batch = self.batches[request.path_params["batch_id"]]
        batch["polls"] += 1
        if batch["status"] == "cancelling":
            self._finish(batch, "cancelled")
        elif batch["status"] in ("validating", "in_progress"):
            batch["status"] = "in_progress"
            if batch["ending"] != "stuck" and batch["polls"] > self.polls_before_end:
                self._finish(batch, batch["ending"])
        return JSONResponse(self._public(batch))

    async def cancel(self, request: Request) -> Response:
        self.calls.append("POST /v1/batches/{id}/cancel")
        batch = self.batches[request.path_params["batch_id"]]
        batch["status"] = "cancelling"
        return JSONResponse(self._public(batch))

    @staticmethod
    def _public(batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in batch.items() if k not in ("polls", "ending")}

    def _finish(self, batch: dict[str, Any], ending: str) -> None:
        if ending == "failed":
            batch["status"] = "failed"
            batch["errors"] = {
                "data": [{"code": "invalid_request", "message": "scripted failure", "line": 1}]
            }
            return
        lines = [json.loads(line) for line in self.files[batch["input_file_id"]].splitlines() if line]
        answered = lines if ending in ("completed", "malformed") else lines[: self.answer_first]
        output = [self._result(line) for line in answered]
        errors = [
            {"id": f"batch_req_{next(self._ids)}", "custom_id": line["custom_id"], "response": None,
             "error": {"code": "batch_expired", "message": "not done in the window"}}
            for line in lines[len(answered) :]
            if ending == "expired"
        ]  # fmt: skip
        text = "".join(json.dumps(row) + "\n" for row in output)
        if ending == "malformed":
            broken = dict(output[0], custom_id=lines[0]["custom_id"])
            broken["response"] = {"status_code": 200, "body": {"choices": "not a list"}}
            text = (
                '{"custom_id": "torn'
                + "\n"
                + json.dumps(dict(output[0], custom_id="nobody-asked-this"))
                + "\n"
                + json.dumps(broken)
                + "\n"
                + "".join(json.dumps(row) + "\n" for row in output[1:])
            )
        batch["status"] = "completed" if ending == "malformed" else ending
        batch["output_file_id"] = self._store(text) if text else None
        if errors:
            batch["error_file_id"] = self._store("".join(json.dumps(row) + "\n" for row in errors))

    def _result(self, line: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"batch_req_{next(self._ids)}",
            "custom_id": line["custom_id"],
            "response": {"status_code": 200, "request_id": "req", "body": self.completion(line["body"])},
            "error": None,
        }

    def _store(self, text: str) -> str:
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = text
        return file_id
