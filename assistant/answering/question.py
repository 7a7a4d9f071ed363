"""What a question asks for: its type (a date for "when", a number for "how many", an entity for "who") and
its kind, the form of answer wanted (a short fact, or a definition or explanation in a sentence or two).
Patterns, not a tagger: no package on PyPI ships an English NER model without a run-time download, and these
cover most questions people ask (the rest are "untyped" factoids).

The judge checks an answer's type against the question's; the local prompt picks its answer style by kind.
"""

from __future__ import annotations

import re
from typing import Literal

QuestionType = Literal["date", "number", "entity", "untyped"]
QuestionKind = Literal["definitional", "explanatory", "factoid"]

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


def question_type(question: str) -> QuestionType:
    if _DATE_QUESTION.search(question):
        return "date"
    if _NUMBER_QUESTION.search(question):
        return "number"
    if _ENTITY_QUESTION.search(question):
        return "entity"
    return "untyped"


# "What is X?", "What's an X?", "Who was X?": the user wants X explained, unless X is a value of something
# ("the capital of France", "Bohemond's son"), a participle ("absorbed into ...") or ends on a preposition.
_COPULA = re.compile(
    r"^\s*(?:(?:so|and|ok|okay)[, ]+)?(what|who)\s*(?:'s|’s|\s+is|\s+are|\s+was|\s+were)\s+(.+?)\s*\??\s*$",
    re.I,
)
_DEFINE = re.compile(
    r"^\s*(?:what\s+(?:does|do)\s+.+\s+(?:mean|stand\s+for)\s*\??\s*$|what\s+does\s+it\s+mean\b|"
    r"define\b|meaning\s+of\b|"
    r"tell\s+me\s+about\b|explain\s+what\b)",
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
# "the capital of France", "the path length limit on Windows", "time complexity of quicksort"; not "the Zen
# of Python" (a name) or "a coroutine in Python" (a thing, in a context).
_VALUE_OF = re.compile(
    r"(?:the\s+[a-z][\w-]*(?:\s+[\w-]+){0,2}\s+(?:of|in|for|from|by|on)"
    r"|(?!the\b)[\w-]+(?:\s+[\w-]+){0,2}\s+of)\b"
)
_PREPOSITIONS = frozenset(
    [
        "of",
        "for",
        "in",
        "on",
        "at",
        "by",
        "with",
        "from",
        "to",
        "about",
        "into",
        "onto",
        "over",
        "under",
        "out",
        "as",
    ]
)
_ARTICLE = re.compile(r"^(?:a|an|the)\s+", re.I)


def _asks_to_define(question: str) -> bool:
    if _DEFINE.search(question):
        return True
    match = _COPULA.match(question)
    if match is None:
        return False
    asker, subject = match.group(1).lower(), match.group(2)
    bare = _ARTICLE.sub("", subject)
    words = bare.split()
    if not words or len(words) > 6 or re.search(r"['’]s\b", subject):
        return False  # long, or a possessive: "Bohemond's son" is a value of Bohemond
    if words[-1].lower() in _PREPOSITIONS or words[0].lower() in ("one", "some", "any", "all"):
        return False
    if _VALUE_OF.match(subject):
        return False
    if words[0].lower().endswith("ed") and len(words) > 1:
        return False  # "absorbed into the Anglo-Norman language": a participle asks who or what did it
    # "Who was Rollo?", "Who were the Normans?" ask about a name; "Who was the hostage?" asks for one.
    return asker == "what" or words[0][0].isupper()


def question_kind(question: str) -> QuestionKind:
    """The form of answer the question asks for: a short fact, or one or two sentences explaining.

    "Why" and "how does" want an explanation; otherwise a typed question (when, how many, which year) is a
    factoid whatever its wording; "what is X" and "who was X" want X defined, unless they ask for a value of X
    ("what is the capital of X").
    """
    if _EXPLANATORY.search(question):
        return "explanatory"
    if question_type(question) in ("date", "number"):
        return "factoid"
    if _asks_to_define(question):
        return "definitional"
    return "factoid"
