"""The text rules of synthetic questions: parsing the paid tier's reply, when a generated answer is usable,
and how a question is made unanswerable by a swap. Pure functions, no model."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

MAX_ANSWER_WORDS = 8  # SQuAD answers are mostly shorter; the prompt asks for at most four words
_QA = re.compile(r"question\s*:\s*(?P<q>.+?)\s*\n+\s*answer\s*:\s*(?P<a>.+)", re.IGNORECASE | re.DOTALL)
# A line break ends a name; a capital inside an identifier ("User-Agent", "os.Path", "str_Type") is none.
_ENTITY = re.compile(r"(?<![\w./-])[A-Z][a-z]+(?:[^\S\n]+[A-Z][a-z]+)*\b(?![-/_])")
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
# "this passage", "the given address", "mentioned in the text": the question points at the chunk it was
# written from, so a user asking the whole collection could not know what it means.
_DEICTIC = re.compile(
    r"\b(?:this|these|the above|the following|the given)\b"
    r"|\b(?:the|that) (?:passage|text|excerpt|snippet|paragraph|section)\b"
    r"|\bmentioned (?:in|above)\b",
    re.IGNORECASE,
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


def question_problem(question: str) -> str | None:
    """Why a written question is unusable whatever its answer, or None: it must read as a question and
    stand on its own (see :func:`refers_to_its_passage`). Answerable questions and swaps share this."""
    if not is_question(question):
        return "not_a_question"
    if refers_to_its_passage(question):
        return "not_standalone"
    return None


def answer_problem(question: str, answer: str, chunk: str) -> str | None:
    """Why a generated (question, answer) is unusable, or None: :func:`question_problem`, and the answer
    must occur verbatim in the chunk (whitespace aside), be short, and not be given away by the question."""
    flat = " ".join(chunk.split()).lower()
    if (problem := question_problem(question)) is not None:
        return problem
    if len(answer.split()) > MAX_ANSWER_WORDS:
        return "answer_too_long"
    if " ".join(answer.split()).lower() not in flat:
        return "answer_not_verbatim"
    if answer.lower() in question.lower():
        return "answer_in_question"
    return None


def refers_to_its_passage(question: str) -> bool:
    """Whether a question leans on the chunk it was written from ("Who wrote this HOWTO?"): asked of a
    whole collection it has no single answer, so it labels neither answerable nor unanswerable."""
    return _DEICTIC.search(question) is not None


def is_question(text: str) -> bool:
    return text.endswith("?") and 3 <= len(text.split()) <= 30


def swap_entity(
    question: str, chunk: str, donors: Sequence[str], rng: random.Random, words: Sequence[str] = ()
) -> tuple[str, str] | None:
    """(``question`` with one name or number replaced by one ``chunk`` lacks, what was put in), or None.

    A name comes from another chunk (``donors``), so the probe still reads like the documents; a number
    is shifted. Names the chunk mentions are preferred: they are what the question is about.
    """
    # Targets follow the donors' rule (:func:`entities`): a name the chunk also uses mid-sentence
    # counts as one even where it opens the question.
    spans = _name_spans(question, known=frozenset(entities(chunk)))
    spans = [s for s in spans if question[s[0] : s[1]] in chunk] or spans  # names the chunk mentions first
    if spans:
        start, end = rng.choice(spans)
        target = question[start:end]
        candidates = sorted({d for d in donors if d not in chunk and d != target and d not in question})
        if candidates:
            donor = rng.choice(candidates)
            return question[:start] + donor + question[end:], donor
    numbers = list(_NUMBER.finditer(question))
    if numbers:
        target = rng.choice(numbers)
        value = int(target.group())
        for _ in range(10):
            shifted = str(value + rng.choice([-1, 1]) * rng.randint(3, 40))
            if shifted not in chunk and int(shifted) > 0:
                return question[: target.start()] + shifted + question[target.end() :], shifted
    # No name or number: swap the longest word of the question that the chunk uses for a long word it
    # lacks with the same last three letters ("operators" → "decorators", not "dormant"), so the probe
    # stays grammatical.
    lowered = chunk.lower()
    in_question = [m for m in WORD.finditer(question) if m.group().lower() in lowered]
    absent = sorted({w for w in words if w not in lowered}) if in_question else []
    for target in sorted(in_question, key=lambda m: -len(m.group())):
        pool = [w for w in absent if w.endswith(target.group()[-3:])]
        if pool:
            donor = rng.choice(pool)
            return question[: target.start()] + donor + question[target.end() :], donor
    return None


def entities(text: str) -> list[str]:
    """Capitalised names in ``text`` (multi-word kept whole), the donors for :func:`swap_entity`.

    A capital at the start of a sentence (start of text, after ``.!?:``, a line break or a bullet) says
    nothing: "However", "Returns", "Note" are not names, and a question made with one ("What does However
    return?") is unanswerable for a reason the evaluator could learn from the wording alone. So a
    sentence-initial word counts as a name only when the text also uses it to begin a name mid-sentence;
    otherwise it is dropped and the words after it, capitalised mid-sentence, are kept. Leading "The",
    "In" … are dropped as before, and what follows them is a name.
    """
    return [name for start, end in _name_spans(text) if len(name := " ".join(text[start:end].split())) > 3]


_SENTENCE_START = re.compile(r"(?:\A|[.!?:]\s|\n)\s*(?:(?:[-*•+>]|#+|\d+[.)])\s+)?[\"'“‘(\[*_]*")
_CAPITALISED = re.compile(r"[A-Z][a-z]+")


def _name_spans(text: str, known: frozenset[str] = frozenset()) -> list[tuple[int, int]]:
    """(start, end) of each name in ``text`` by :func:`entities`' rule; ``known`` names (the chunk's, for a
    question) also vouch for a sentence-initial word."""
    sentence_starts = {m.end() for m in _SENTENCE_START.finditer(text)}
    found = []  # (the match's word spans past leading words, whether its first capital is only positional)
    for match in _ENTITY.finditer(text):
        spans = [
            (match.start() + w.start(), match.start() + w.end()) for w in _CAPITALISED.finditer(match[0])
        ]
        kept = spans
        while kept and text[slice(*kept[0])] in _LEADING_WORDS:  # "In Britain" is "Britain"
            kept = kept[1:]
        if kept:
            found.append((kept, match.start() in sentence_starts and kept == spans))
    # Words seen beginning a name mid-sentence: each match's first word, or if that is only positional the
    # word after it; and the first words of the ``known`` names.
    vouched = {text[slice(*ws[1 if positional else 0])] for ws, positional in found if len(ws) > positional}
    vouched |= {name.split()[0] for name in known}
    names = []
    for ws, positional in found:
        if positional and text[slice(*ws[0])] not in vouched:
            ws = ws[1:]
        if ws:
            names.append((ws[0][0], ws[-1][1]))
    return names
