"""Grounded prompts: numbered sources, cite [n], abstain with one fixed phrase."""

from __future__ import annotations

import re
from collections.abc import Sequence

from index.retrieval import Passage

ABSTAIN_PHRASE = "I don't know based on the documents."

SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources below. "
    "Answer in one or two short sentences and cite the sources you used like [1] or [2]. "
    f'If the sources do not contain the answer, reply exactly: "{ABSTAIN_PHRASE}"'
)


def format_sources(passages: Sequence[Passage], max_chars: int = 1500) -> str:
    blocks = []
    for number, passage in enumerate(passages, start=1):
        text = passage.text if len(passage.text) <= max_chars else passage.text[:max_chars] + " …"
        blocks.append(f"[{number}] {passage.title}\n{text}")
    return "\n\n".join(blocks)


def grounded_messages(question: str, passages: Sequence[Passage]) -> list[dict[str, str]]:
    """Chat messages for a grounded answer. Sources go in the user turn: small models follow it better."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "user",
            "content": f"Sources:\n{format_sources(passages)}\n\nQuestion: {question}",
        },
    ]


_CITATION = re.compile(r"\[(\d{1,2})\]")


def cited_numbers(answer: str, n_sources: int) -> list[int]:
    """Source numbers cited in an answer, in order of first citation, ignoring out-of-range numbers."""
    seen: list[int] = []
    for match in _CITATION.finditer(answer):
        number = int(match.group(1))
        if 1 <= number <= n_sources and number not in seen:
            seen.append(number)
    return seen


def is_abstention(answer: str) -> bool:
    normalized = " ".join(answer.lower().replace("’", "'").split())
    return (
        "i don't know" in normalized or "not in the documents" in normalized or "do not contain" in normalized
    )
