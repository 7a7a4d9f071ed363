"""Grounded prompts: numbered sources, answer from them only, abstain with one fixed phrase.

Two answer styles. ``concise`` asks for the shortest exact phrase from the sources: on SQuAD-style
questions it is both more often right and far easier to check (measured: docs/MEASUREMENTS.md), and it
leaves the model no room to embroider. It does not
ask for ``[n]`` citations: small models then sometimes answer with a bare "[1]"; the cascade attributes
the answer to its source afterwards (``features.ensure_citation``). ``sentence`` asks for one or two
sentences with citations, for questions that want a definition or an explanation: asked "What is X?", the
shortest phrase is often X itself. ``auto`` (the default) picks per question by its kind
(:func:`style_for`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from assistant.answering.question import question_kind
from index.retrieval import Passage

ABSTAIN_PHRASE = "I don't know based on the documents."

# What a calibration's features were measured on (its stamp records it): bump it with any change to what the
# local model reads (the system prompts, the sources' layout, the transcript, the prompt diet), so a
# calibration fitted before the change is reported as not fitted for this prompt (assistant/calibration).
PROMPT_VERSION = 1

AnswerStyle = Literal["concise", "sentence"]
StyleSetting = Literal["auto", "concise", "sentence"]  # auto: by the question's kind (answer_type.py)
ANSWER_STYLES: tuple[str, ...] = ("auto", "concise", "sentence")


def style_for(question: str, setting: StyleSetting) -> AnswerStyle:
    """The answer form the question asks for: a factoid gets the short phrase, "what is" and "why" get one
    or two cited sentences (a phrase there is a title or the question's own words)."""
    if setting == "auto":
        return "concise" if question_kind(question) == "factoid" else "sentence"
    return setting


def other_style(style: AnswerStyle) -> AnswerStyle:
    return "sentence" if style == "concise" else "concise"


SYSTEM_PROMPTS: dict[str, str] = {
    "concise": (
        "You answer questions using only the numbered sources below. "
        "Reply with the shortest exact phrase from the sources that answers the question "
        "(a name, number, date or short phrase), not a full sentence. "
        f'If the sources do not contain the answer, reply exactly: "{ABSTAIN_PHRASE}"'
    ),
    "sentence": (
        "You answer questions using only the numbered sources below. "
        "Answer in one or two short sentences and cite the sources you used like [1] or [2]. "
        f'If the sources do not contain the answer, reply exactly: "{ABSTAIN_PHRASE}"'
    ),
}


def format_sources(passages: Sequence[Passage], max_chars: int = 1500) -> str:
    blocks = []
    for number, passage in enumerate(passages, start=1):
        text = passage.text if len(passage.text) <= max_chars else passage.text[:max_chars] + " …"
        blocks.append(f"[{number}] {passage.title}\n{text}")
    return "\n\n".join(blocks)


def grounded_messages(
    question: str, passages: Sequence[Passage], style: StyleSetting = "concise"
) -> list[dict[str, str]]:
    """Chat messages for a grounded answer. Sources go in the user turn: small models follow it better."""
    if style not in ANSWER_STYLES:
        raise ValueError(f"unknown answer style {style!r}; choose one of {', '.join(ANSWER_STYLES)}")
    return [
        {"role": "system", "content": SYSTEM_PROMPTS[style_for(question, style)]},
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
