"""The paid tier's Batch API (OpenAI's, and compatible providers'): many chat completions at batch prices,
answered within a completion window instead of now.

The flow is OpenAI's: upload a JSONL file of ``/v1/chat/completions`` requests (``purpose=batch``), create
a batch on it (``completion_window="24h"``), poll it until it is ``completed``, ``failed``, ``expired`` or
``cancelled``, then read its output file and its error file. Each line's body is what
:meth:`PaidClient.chat` would POST (:meth:`PaidClient.chat_body`), so a batched question gets the answer a
live call would. The transport is the paid client's (base URL, key, timeouts, retries).

A batch that ends ``expired`` or ``cancelled`` (or is cancelled here after ``paid.batch_max_wait_s``) still
has results for what it finished: those come back as results, every other request as *not answered* with
a reason, so the caller keeps its local answer or asks again. Only a batch that ``failed`` as a whole
raises (:class:`PaidBatchFailed`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assistant.openai_wire import WireFormatError, decode_completion
from assistant.paid.client import PaidResult, result_of
from assistant.paid.errors import PaidBatchFailed, PaidMalformedResponse

if TYPE_CHECKING:
    from assistant.paid.client import PaidClient

log = logging.getLogger("penny.paid")

ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
# Why a request of a batch came back without an answer (stored with the released reservation).
NOT_ANSWERED = "not_answered"


@dataclass(frozen=True)
class BatchRequest:
    """One chat completion to batch; ``custom_id`` ties its result to it (the caller's request id)."""

    custom_id: str
    messages: Sequence[dict[str, str]]
    max_tokens: int


@dataclass
class BatchOutcome:
    """What a finished batch gave: a result per answered request, a reason per other one."""

    batch_id: str
    status: str  # completed | expired | cancelled
    results: dict[str, PaidResult] = field(default_factory=dict)
    not_answered: dict[str, str] = field(default_factory=dict)  # custom_id -> reason
    malformed_lines: int = 0  # result lines that named no request of this batch or were not JSON


class BatchClient:
    """Runs batches against the paid tier's Batch API (module docstring)."""

    def __init__(
        self,
        paid: PaidClient,
        *,
        poll_interval_s: float = 30.0,
        max_wait_s: float = 86_400.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.paid = paid
        self.poll_interval_s = poll_interval_s
        self.max_wait_s = max_wait_s
        self._sleep = sleep
        self._clock = clock

    @property
    def model(self) -> str:
        return self.paid.model

    def run(self, requests: Sequence[BatchRequest]) -> BatchOutcome:
        """Upload, create, wait, collect. Raises :class:`PaidBatchFailed` when the batch failed whole, and
        any :class:`PaidError` of the calls themselves (nothing was answered then either)."""
        started = time.perf_counter()
        batch_id = self.submit(requests)
        batch = self.wait(batch_id)
        return self.collect(batch, requests, time.perf_counter() - started)

    def submit(self, requests: Sequence[BatchRequest]) -> str:
        """Upload the requests' file and create the batch on it; returns the batch id."""
        ids = [r.custom_id for r in requests]
        if len(set(ids)) != len(ids):
            raise ValueError("a batch's custom_ids must be unique")
        lines = [
            json.dumps(
                {
                    "custom_id": r.custom_id,
                    "method": "POST",
                    "url": ENDPOINT,
                    "body": self.paid.chat_body(r.messages, r.max_tokens),
                },
                ensure_ascii=False,
            )
            for r in requests
        ]
        upload = self.paid.call(
            "POST",
            "/files",
            data={"purpose": "batch"},
            files={"file": ("penny-batch.jsonl", ("\n".join(lines) + "\n").encode(), "application/jsonl")},
        )
        file_id = _field(upload, "id")
        created = self.paid.call(
            "POST",
            "/batches",
            json={"input_file_id": file_id, "endpoint": ENDPOINT, "completion_window": COMPLETION_WINDOW},
        )
        return _field(created, "id")

    def wait(self, batch_id: str, on_poll: Callable[[], object] | None = None) -> dict[str, Any]:
        """Poll until the batch ends; past ``max_wait_s`` cancel it once and wait for the cancellation.
        ``on_poll`` runs after each poll that finds it still running (the caller keeps its holds open)."""
        deadline = self._clock() + self.max_wait_s
        cancelled = False
        while True:
            batch = _json(self.paid.call("GET", f"/batches/{batch_id}"))
            status = str(batch.get("status"))
            if status in TERMINAL:
                return batch
            if on_poll is not None:
                on_poll()
            if not cancelled and self._clock() >= deadline:
                log.warning("batch %s not done after %.0f s: cancelling it", batch_id, self.max_wait_s)
                self.paid.call("POST", f"/batches/{batch_id}/cancel")
                cancelled = True
            self._sleep(self.poll_interval_s)

    def collect(
        self, batch: dict[str, Any], requests: Sequence[BatchRequest], seconds: float
    ) -> BatchOutcome:
        """Read a finished batch's output and error files into results and reasons."""
        batch_id, status = str(batch.get("id")), str(batch.get("status"))
        if status == "failed":
            errors = (batch.get("errors") or {}).get("data") or []
            why = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors) or "no reason given"
            raise PaidBatchFailed(f"the paid tier's batch {batch_id} failed ({why}); nothing was answered")
        by_id = {r.custom_id: r for r in requests}
        outcome = BatchOutcome(batch_id, status)
        for key in ("output_file_id", "error_file_id"):
            if batch.get(key):
                content = self.paid.call("GET", f"/files/{batch[key]}/content").text
                for line in content.splitlines():
                    if line.strip():
                        self._read_line(line, by_id, outcome, seconds)
        default = {"expired": "batch_expired", "cancelled": "batch_cancelled"}.get(status, NOT_ANSWERED)
        for custom_id in by_id:
            if custom_id not in outcome.results and custom_id not in outcome.not_answered:
                outcome.not_answered[custom_id] = default
        if outcome.malformed_lines:
            log.warning("batch %s: %d result line(s) unreadable", batch_id, outcome.malformed_lines)
        return outcome

    def _read_line(
        self, line: str, by_id: dict[str, BatchRequest], outcome: BatchOutcome, seconds: float
    ) -> None:
        try:
            row = json.loads(line)
            custom_id = row["custom_id"]
        except (ValueError, KeyError, TypeError):
            outcome.malformed_lines += 1
            return
        request = by_id.get(custom_id)
        if request is None or custom_id in outcome.results:
            outcome.malformed_lines += 1
            return
        response, error = row.get("response") or {}, row.get("error")
        status = response.get("status_code")
        if error or status != 200:
            code = (error or {}).get("code") if isinstance(error, dict) else None
            outcome.not_answered[custom_id] = str(code or f"http_{status}")
            return
        try:
            outcome.results[custom_id] = _result(request, response.get("body"), self.paid.model, seconds)
            outcome.not_answered.pop(custom_id, None)
        except PaidMalformedResponse:
            outcome.not_answered[custom_id] = PaidMalformedResponse.reason


def _result(request: BatchRequest, body: Any, model: str, seconds: float) -> PaidResult:
    try:
        completion = decode_completion(json.dumps(body).encode())
    except (WireFormatError, TypeError, ValueError) as exc:  # WireFormatError is a ValueError too
        raise PaidMalformedResponse(f"a batch result is not a chat completion: {body!r:.200}") from exc
    if not completion.choices:
        raise PaidMalformedResponse("a batch result is a chat completion with no choices")
    return result_of(completion, request.messages, model, seconds=seconds)


def _json(response: Any) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError as exc:
        raise PaidMalformedResponse(
            f"the Batch API sent a body that is not JSON: {response.text[:200]!r}"
        ) from exc
    if not isinstance(data, dict):
        raise PaidMalformedResponse(f"the Batch API sent {type(data).__name__}, not an object")
    return data


def _field(response: Any, name: str) -> str:
    value = _json(response).get(name)
    if not isinstance(value, str) or not value:
        raise PaidMalformedResponse(f"the Batch API's answer has no {name!r}: {response.text[:200]!r}")
    return value
