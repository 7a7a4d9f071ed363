"""A flood of concurrent chat requests against a running Penny: each request's outcome and time, as a client
with a timeout sees them (tests/api/test_overload.py and benchmarks/bench_overload.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

QUESTIONS = (
    "In what country is Normandy located?",
    "When were the Normans in Normandy?",
    "Who was the duke in the battle of Hastings?",
    "Who ruled the duchy of Normandy?",
)


@dataclass(frozen=True)
class Shot:
    profile: str  # penny, penny-local, penny-paid
    stream: bool
    question: str


@dataclass
class Outcome:
    shot: Shot
    status: int  # HTTP status; 0 when the client timed out
    seconds: float  # from sending to the last byte (or the timeout)
    answered: bool  # an answer arrived (a whole completion, or a stream's finishing chunk)
    error: dict[str, Any] | None = None  # the OpenAI error object otherwise (body, or a stream's event)
    retry_after: str | None = None

    @property
    def shed(self) -> bool:
        """Refused as overloaded: a 503 before anything ran, or an error event before any content."""
        return self.error is not None and self.error.get("code") == "overloaded"

    @property
    def timed_out(self) -> bool:
        return self.status == 0


def ask(client: httpx.Client, shot: Shot) -> Outcome:
    body = {"model": shot.profile, "messages": [{"role": "user", "content": shot.question}]}
    started = time.perf_counter()
    try:
        if not shot.stream:
            response = client.post("/v1/chat/completions", json=body)
            seconds = time.perf_counter() - started
            payload = response.json()
            return Outcome(
                shot,
                response.status_code,
                seconds,
                answered=response.status_code == 200 and bool(payload.get("choices")),
                error=payload.get("error"),
                retry_after=response.headers.get("retry-after"),
            )
        with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
            if response.status_code != 200:
                response.read()
                return Outcome(
                    shot,
                    response.status_code,
                    time.perf_counter() - started,
                    answered=False,
                    error=response.json().get("error"),
                    retry_after=response.headers.get("retry-after"),
                )
            answered, error = False, None
            for line in response.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                error = event.get("error", error)
                answered = answered or any(c.get("finish_reason") == "stop" for c in event.get("choices", []))
            return Outcome(shot, 200, time.perf_counter() - started, answered=answered, error=error)
    except httpx.TimeoutException:
        return Outcome(shot, 0, time.perf_counter() - started, answered=False)


def flood(base: str, api_key: str | None, shots: Sequence[Shot], timeout_s: float = 60.0) -> list[Outcome]:
    """Send every shot at once (one thread each, released together); outcomes in the shots' order."""
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    start = threading.Barrier(len(shots))
    limits = httpx.Limits(max_connections=len(shots), max_keepalive_connections=len(shots))
    with httpx.Client(base_url=base, timeout=timeout_s, headers=headers, limits=limits) as client:

        def one(shot: Shot) -> Outcome:
            start.wait()
            return ask(client, shot)

        with ThreadPoolExecutor(len(shots)) as pool:
            return list(pool.map(one, shots))
