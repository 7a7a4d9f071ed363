"""One request's state as it goes through the cascade.

Its own module because the cascade, delivery and escalation all read and fill it in, and none of them
may import the cascade (imports in answering flow one way: cascade -> the rest).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from assistant.answering.escalation import Pending
    from assistant.answering.prompt.transcript import Transcript
    from assistant.ledger import Principal, Reservation, Usage
    from index.retrieval import Passage

Mode = Literal["cascade", "local", "paid"]
MODES: tuple[str, ...] = ("cascade", "local", "paid")


@dataclass
class Request:
    question: str
    collection: str
    history: Sequence[dict[str, str]]
    mode: Mode
    threshold: float | None
    principal: Principal | None
    request_id: str
    stream: bool
    started: float
    passages: Sequence[Passage] | None  # the caller's: retrieval (and the cache) skipped
    route_before_generation: bool
    local_max_tokens: int
    paid_max_tokens: int | None  # None without a paid tier
    messages: list[dict[str, str]] | None = None  # the grounded prompt, once built
    local_prompt: Transcript | None = None  # the local tier's prompt and its sources (local_prompt.py)
    unsettled: tuple[Reservation, Usage] | None = None  # a paid call settled with its answer's record
    batch: list[Pending] | None = None  # set: an escalation is appended here for a batch, not asked now
    # Wall seconds of Penny's own compute on the answer path, priced at the instance price with the answer.
    retrieval_seconds: float = 0.0  # the cache lookup and retrieval
    evaluation_seconds: float = 0.0  # the evaluator's judgements (two when the local answer is retried)

    @contextmanager
    def timing(self, part: Literal["retrieval", "evaluation"]) -> Iterator[None]:
        """Add the wall seconds of the block to ``<part>_seconds``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            name = f"{part}_seconds"
            setattr(self, name, getattr(self, name) + time.perf_counter() - started)
