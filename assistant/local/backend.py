"""The local tier's contract: what a generation is, and what any local backend (the in-process model or
the worker pool) must offer the cascade. Decoding is greedy, so answers are reproducible and the recorded
logprobs are exact."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    token_logprobs: list[float] = field(default_factory=list)
    finish_reason: str = "stop"
    seconds: float = 0.0
    cached_prompt_tokens: int = 0  # the prompt's leading tokens whose KV the model reused, not prefilled
    # Log-probabilities of the tokens of the text the prompt ends with, when the caller asked for them
    # (``scored_tail``) and the backend can score it; None otherwise.
    scored_tail_logprobs: list[float] | None = None

    @property
    def mean_logprob(self) -> float:
        return float(np.mean(self.token_logprobs)) if self.token_logprobs else 0.0

    @property
    def min_logprob(self) -> float:
        return float(np.min(self.token_logprobs)) if self.token_logprobs else 0.0

    @property
    def scored_tail_mean_logprob(self) -> float | None:
        return float(np.mean(self.scored_tail_logprobs)) if self.scored_tail_logprobs else None


def final_generation(stream: Iterable[str | Generation]) -> Generation:
    """Consume a ``stream_chat`` stream and return the :class:`Generation` that ends it."""
    generation = None
    for item in stream:
        if isinstance(item, Generation):
            generation = item
    if generation is None:
        raise RuntimeError("a LocalBackend must end its stream with a Generation")
    return generation


class LocalBackend(Protocol):
    """``LocalModel`` in-process or ``PoolBackend`` over worker processes; the cascade sees no difference."""

    def chat(
        self, messages: Sequence[dict[str, str]], max_tokens: int = 256, *, scored_tail: str | None = None
    ) -> Generation: ...

    def stream_chat(
        self, messages: Sequence[dict[str, str]], max_tokens: int = 256, *, scored_tail: str | None = None
    ) -> Iterator[str | Generation]:
        """Text deltas as they are generated, then exactly one final :class:`Generation`.

        ``scored_tail``: text the last message ends with (the cascade passes the question); a backend that
        can returns its tokens' log-probabilities from the prompt's prefill, one that cannot returns None.
        """
        ...
