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
QuestionKind = Literal["definitional", "explanatory", "factoid"]

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


# "What is X?", "What's an X?", "What does X mean?", "Define X", "Who was X?", "Tell me about X": the user
# wants X explained, not a span. "What is the Y of X?" asks for a value of X, a factoid.
_DEFINITIONAL = re.compile(
    r"^\s*(?:(?:so|and|ok|okay)[, ]+)?(?:"
    r"(?:what|who)\s*(?:'s|’s|\s+is|\s+are|\s+was|\s+were)\s+(?!(?:the|a|an)\s+\w+(?:\s+\w+){0,2}\s+(?:of|in|for)\b)"
    r"(?!(?:\w+\s+){0,3}(?:used|called|named|made|located|known|based|born)\b)"
    r"|what\s+(?:does|do)\s+.+\s+(?:mean|stand\s+for|do)\s*\??\s*$"
    r"|define\b|meaning\s+of\b|tell\s+me\s+about\b|explain\s+what\b"
    r")",
    re.I,
)
_EXPLANATORY = re.compile(
    r"^\s*(?:(?:so|and|ok|okay)[, ]+)?(?:"
    r"why\b|how\s+(?:does|do|did|can|could|is|are|was|were|should|would|will|to)\b|explain\b|describe\b"
    r"|what\s+(?:happens|happened|causes|caused|led|leads)\b"
    r"|what\s+(?:is|are|was|were)\s+.+\s+used\s+for\b"
    r"|what\s+(?:is|are|was|were)\s+the\s+(?:difference|differences|purpose|point|reason|reasons|role|"
    r"advantage|advantages|benefit|benefits|effect|effects|idea|relationship)\b"
    r"|in\s+what\s+way\b"
    r")",
    re.I,
)
_SHORT_DEFINITIONAL = re.compile(r"^\s*(?:what|who)\s*(?:'s|’s|\s+is|\s+are|\s+was|\s+were)\s+", re.I)


def question_kind(question: str) -> QuestionKind:
    """The form of answer the question asks for: a short fact, or one or two sentences explaining.

    A typed question (when, how many, which year) is a factoid whatever its wording; "why" and "how does"
    want an explanation; "what is X" and "who was X" want X defined, unless they ask for a value of X
    ("what is the capital of X").
    """
    if question_type(question) in ("date", "number"):
        return "factoid"
    if _EXPLANATORY.search(question):
        return "explanatory"
    if _DEFINITIONAL.search(question) and len(_SHORT_DEFINITIONAL.sub("", question).split()) <= 8:
        return "definitional"
    return "factoid"
