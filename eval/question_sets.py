"""Natural-question sets: questions as people ask them in chat, each with the key facts a right answer holds.

One JSON object per line (``eval/questions/README.md`` documents the fields)::

    {"id": "samples-d01", "question": "What is computational complexity theory?", "kind": "definitional",
     "answerable": true, "key_facts": [["theory of computation"], ["classif", "difficulty"]],
     "reference": "...", "evidence": "<the document's sentence>", "source": "computational-....md"}

An unanswerable question has ``"answerable": false``, no key facts, and a ``near_miss`` saying what the
documents say close to it. :func:`check_question_set` proves that every key fact and every evidence
sentence occurs in the documents the question names, so a verdict of "wrong" is never the set's fault.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.metrics import normalize_answer
from eval.verdicts import KINDS, contains, holds_key_facts


class QuestionSetError(ValueError):
    """A natural-question row that cannot be used; the message says which field and why."""


@dataclass(frozen=True)
class NaturalQuestion:
    id: str
    question: str
    kind: str
    answerable: bool
    key_facts: tuple[tuple[str, ...], ...]
    reference: str | None
    evidence: str | None
    source: str
    near_miss: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> NaturalQuestion:
        def text(name: str, required: bool) -> str | None:
            value = row.get(name)
            if value is None and not required:
                return None
            if not isinstance(value, str) or not value.strip():
                raise QuestionSetError(f"{name!r} must be a non-empty string")
            return value

        kind = row.get("kind")
        if kind not in KINDS:
            raise QuestionSetError(f"'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
        answerable = row.get("answerable")
        if not isinstance(answerable, bool) or answerable != (kind != "unanswerable"):
            raise QuestionSetError("'answerable' must be true, or false exactly when kind is 'unanswerable'")
        groups = row.get("key_facts")
        if not isinstance(groups, list) or not all(
            isinstance(g, list) and g and all(isinstance(v, str) and normalize_answer(v) for v in g)
            for g in groups
        ):
            raise QuestionSetError("'key_facts' must be a list of non-empty lists of non-empty strings")
        if answerable != bool(groups):
            raise QuestionSetError("an answerable question needs key facts; an unanswerable one has none")
        return cls(
            id=str(text("id", True)),
            question=str(text("question", True)),
            kind=kind,
            answerable=answerable,
            key_facts=tuple(tuple(group) for group in groups),
            reference=text("reference", answerable),
            evidence=text("evidence", answerable),
            source=str(text("source", True)),
            near_miss=text("near_miss", not answerable),
        )


def load_question_set(path: Path) -> list[NaturalQuestion]:
    questions = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            questions.append(NaturalQuestion.from_row(json.loads(line)))
        except (json.JSONDecodeError, QuestionSetError) as exc:
            raise QuestionSetError(f"{path}:{number}: {exc}") from exc
    return questions


def document_text(path: Path) -> str:
    """A document's text as Penny ingests it (the loaders' sections), so the check reads what is indexed."""
    from index.loaders import load

    document = load(path)
    return "\n".join([document.title, *(section.text for section in document.sections)])


def check_question_set(questions: Sequence[NaturalQuestion], docs_root: Path) -> list[str]:
    """Problems found, one line each (empty: the set is sound).

    Every key-fact group has a variant in the question's source document, and its evidence occurs there;
    a question that echoes its own key fact (every group satisfied by the question's words) cannot tell
    an echo from an answer; ids are unique; at least a third of the set is unanswerable.
    """
    problems: list[str] = []
    texts: dict[str, str] = {}  # source -> its text, normalised once
    ids = [q.id for q in questions]
    problems += [f"{i}: duplicate id" for i in sorted({i for i in ids if ids.count(i) > 1})]
    unanswerable = sum(not q.answerable for q in questions)
    if questions and unanswerable * 3 < len(questions):
        problems.append(f"only {unanswerable} of {len(questions)} questions are unanswerable (need a third)")
    for q in questions:
        path = Path(docs_root) / q.source
        if q.source not in texts:
            try:
                texts[q.source] = normalize_answer(document_text(path)) if path.is_file() else ""
            except Exception as exc:  # a loader's error names the broken file
                problems.append(f"{q.id}: cannot read {q.source}: {exc}")
                texts[q.source] = ""
        if not texts[q.source]:
            problems.append(f"{q.id}: source {q.source} not found under {docs_root}")
            continue
        if not q.answerable:
            continue
        text = texts[q.source]
        for group in q.key_facts:
            if not any(contains(text, v) for v in group):
                problems.append(f"{q.id}: no variant of key fact {group} occurs in {q.source}")
        if q.evidence and normalize_answer(q.evidence) not in text:
            problems.append(f"{q.id}: evidence sentence not found in {q.source}")
        if holds_key_facts(q.question, q.key_facts):
            problems.append(f"{q.id}: the question's own words hold every key fact (an echo would be right)")
    return problems
