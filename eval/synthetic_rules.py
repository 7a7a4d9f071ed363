"""The text rules of synthetic questions: parsing the paid tier's reply, when a generated answer is usable,
and how a question is made unanswerable by a swap. Pure functions, no model."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

MAX_ANSWER_WORDS = 8  # SQuAD answers are mostly shorter; the prompt asks for at most four words
_QA = re.compile(r"question\s*:\s*(?P<q>.+?)\s*\n+\s*answer\s*:\s*(?P<a>.+)", re.IGNORECASE | re.DOTALL)
_ENTITY = re.compile(r"\b[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*\b")
_NUMBER = re.compile(r"\b\d{2,4}\b")
WORD = re.compile(r"\b[a-z]{7,}\b")
_QUESTION_WORDS = frozenset(
    [
        "What",
        "Who",
        "Whom",
        "Whose",
        "When",
        "Where",
        "Which",
        "Why",
        "How",
        "In",
        "On",
        "At",
        "By",
        "For",
        "From",
        "To",
        "Of",
        "During",
        "After",
        "Before",
        "Did",
        "Does",
        "Do",
        "Is",
        "Are",
        "Was",
        "Were",
        "Can",
        "Could",
        "According",
    ]
)
_LEADING_WORDS = _QUESTION_WORDS | frozenset(
    ["The", "A", "An", "This", "That", "These", "Those", "It", "His", "Her"]
)


def parse_question(reply: str) -> tuple[str, str] | None:
    """(question, answer) from a "Question: … / Answer: …" reply, or None."""
    match = _QA.search(reply)
    if match is None:
        return None
    question = " ".join(match.group("q").split())
    answer = match.group("a").strip().splitlines()[0].strip().strip("\"'“”").rstrip(".").strip()
    return (question, answer) if question and answer else None


def answer_problem(question: str, answer: str, chunk: str) -> str | None:
    """Why a generated (question, answer) is unusable, or None. The answer must occur verbatim in the
    chunk (whitespace aside), be short, and not be given away by the question."""
    flat = " ".join(chunk.split()).lower()
    if not is_question(question):
        return "not_a_question"
    if len(answer.split()) > MAX_ANSWER_WORDS:
        return "answer_too_long"
    if " ".join(answer.split()).lower() not in flat:
        return "answer_not_verbatim"
    if answer.lower() in question.lower():
        return "answer_in_question"
    return None


def is_question(text: str) -> bool:
    return text.endswith("?") and 3 <= len(text.split()) <= 30


def swap_entity(
    question: str, chunk: str, donors: Sequence[str], rng: random.Random, words: Sequence[str] = ()
) -> tuple[str, str] | None:
    """(``question`` with one name or number replaced by one ``chunk`` lacks, what was put in), or None.

    A name comes from another chunk (``donors``), so the probe still reads like the documents; a number
    is shifted. Names the chunk mentions are preferred: they are what the question is about.
    """
    names = [m for m in _ENTITY.finditer(question) if m.group().split()[0] not in _QUESTION_WORDS]
    names = [m for m in names if m.group() in chunk] or names  # names the chunk mentions first
    if names:
        target = rng.choice(names)
        candidates = sorted(
            {d for d in donors if d not in chunk and d != target.group() and d not in question}
        )
        if candidates:
            donor = rng.choice(candidates)
            return question[: target.start()] + donor + question[target.end() :], donor
    numbers = list(_NUMBER.finditer(question))
    if numbers:
        target = rng.choice(numbers)
        value = int(target.group())
        for _ in range(10):
            shifted = str(value + rng.choice([-1, 1]) * rng.randint(3, 40))
            if shifted not in chunk and int(shifted) > 0:
                return question[: target.start()] + shifted + question[target.end() :], shifted
    # No name or number: swap the question's longest word the chunk uses for a long word it lacks.
    pool = sorted({w for w in words if w not in chunk.lower()})
    in_question = [m for m in WORD.finditer(question) if m.group().lower() in chunk.lower()]
    if in_question and pool:
        target = max(in_question, key=lambda m: len(m.group()))
        donor = rng.choice(pool)
        return question[: target.start()] + donor + question[target.end() :], donor
    return None


def entities(text: str) -> list[str]:
    """Capitalised names in ``text`` (multi-word kept whole), the donors for :func:`swap_entity`."""
    names = []
    for match in _ENTITY.finditer(text):
        words = match.group().split()
        while words and words[0] in _LEADING_WORDS:  # "In Britain" at a sentence start is "Britain"
            words = words[1:]
        if words and len(" ".join(words)) > 3:
            names.append(" ".join(words))
    return names
