"""One request's state as it goes through the cascade.

Its own module because the cascade, delivery and escalation all read and fill it in, and none of them
may import the cascade (imports in answering flow one way: cascade -> the rest).
"""

from __future__ import annotations

from collections.abc import Sequence
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
