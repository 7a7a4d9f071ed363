"""Where one sentence ends and the next begins: one definition for the chunker, the sentence vectors kept
beside each chunk, the prompt diet and the evaluator, so a vector read from the index belongs to the
sentence the answer path reads. A leaf: it imports nothing of Penny's."""

from __future__ import annotations

import re

SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


def sentences(text: str) -> list[str]:
    """``text`` split after ``.``, ``!`` or ``?`` followed by space and a capital, digit or quote."""
    return [s.strip() for s in SENTENCE_END.split(text) if s.strip()]
