"""Does the answer have the type the question asks for? "When" wants a date, "how many" a number.

A wrong short answer from a small model is often the right kind of span from the wrong place, but as often
it is the wrong kind altogether: a name for "when", a year for "who".
"""

from __future__ import annotations

import re

from assistant.answering.question import question_type

_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december|"
    "jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_NUMBER_WORDS = (
    "zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    "sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|"
    "thousand|million|billion|trillion|dozen|half|several|few|many"
)
_DATE_ANSWER = re.compile(
    rf"\b(1\d{{3}}|20\d{{2}}|\d{{1,4}}s|\d{{1,2}}(st|nd|rd|th)|{_MONTHS}|century|centuries|bc|ad|bce|ce)\b",
    re.I,
)
_NUMBER_ANSWER = re.compile(rf"\d|\b({_NUMBER_WORDS})\b", re.I)
_CAPITALISED = re.compile(r"\b[A-Z][\w'-]*")


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
