"""Does the answer have the type the question asks for? "When" wants a date, "how many" a number.

A wrong short answer from a small model is often the right kind of span from the wrong place, but as often
it is the wrong kind altogether: a name for "when", a year for "who". Patterns, not a tagger: no package on
PyPI ships an English NER model without a run-time download, and these question types cover most factoid
questions (the rest are "untyped" and score neutral).
"""

from __future__ import annotations

import re
from typing import Literal

QuestionType = Literal["date", "number", "entity", "untyped"]

_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_NUMBER_WORDS = (
    "zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    "sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|"
    "thousand|million|billion|trillion|dozen|half|several|few|many"
)
_DATE_QUESTION = re.compile(
    r"^\s*when\b|\b(what|which|in what|in which)\s+"
    r"(year|years|century|centuries|decade|date|month|day|era|period)\b",
    re.I,
)
_NUMBER_QUESTION = re.compile(
    r"\bhow\s+(many|much|long|old|large|big|far|often|tall|high|fast)\b|\bwhat\s+(percentage|percent|number|"
    r"amount|fraction|proportion)\b",
    re.I,
)
_ENTITY_QUESTION = re.compile(r"^\s*(who|whom|whose|where)\b|\b(by whom|from where|to whom)\b", re.I)
_DATE_ANSWER = re.compile(
    rf"\b(1\d{{3}}|20\d{{2}}|\d{{1,4}}s|\d{{1,2}}(st|nd|rd|th)|{_MONTHS}|century|centuries|bc|ad|bce|ce)\b",
    re.I,
)
_NUMBER_ANSWER = re.compile(rf"\d|\b({_NUMBER_WORDS})\b", re.I)
_CAPITALISED = re.compile(r"\b[A-Z][\w'-]*")


def question_type(question: str) -> QuestionType:
    if _DATE_QUESTION.search(question):
        return "date"
    if _NUMBER_QUESTION.search(question):
        return "number"
    if _ENTITY_QUESTION.search(question):
        return "entity"
    return "untyped"


def type_match(question: str, answer: str) -> float:
    """1 when the answer has the question's type, 0 when it does not, 0.5 for an untyped question."""
    kind = question_type(question)
    if kind == "untyped":
        return 0.5
    if kind == "date":
        return 1.0 if _DATE_ANSWER.search(answer) else 0.0
    if kind == "number":
        return 1.0 if _NUMBER_ANSWER.search(answer) else 0.0
    return 1.0 if _CAPITALISED.search(answer) else 0.0
