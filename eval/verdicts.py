"""What users value: each answer judged right, missed or wrong, and the truthfulness score (CRAG).

SQuAD F1 scores a wrong answer to an answerable question no worse than an abstention; a user does not. A
verdict says which it was:

- an answerable question is *right* when the answer holds one variant of every key-fact group, *missed*
  when it abstains, *wrong* otherwise;
- an unanswerable question is *right* when the answer abstains, *wrong* otherwise.

Truthfulness is (right − wrong) / N: a missed answer scores 0, a wrong one −1, so "I don't know" beats a
confident wrong answer, and abstaining on everything scores only the unanswerable share.

A question without key facts (SQuAD's span answers) is judged by F1 ≥ 0.5 against its gold answers, the
rule the calibration labels used before key facts existed, so every dataset gets a verdict.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from eval.metrics import normalize_answer, score, to_prediction

Verdict = Literal["right", "missed", "wrong"]
KINDS: tuple[str, ...] = ("definitional", "explanatory", "factoid", "unanswerable")
CORRECT_F1 = 0.5  # a span answer is right at F1 ≥ this (SQuAD questions, which have no key facts)


def contains(normalized: str, variant: str) -> bool:
    """Whether ``normalized`` (a text already through ``normalize_answer``) holds ``variant`` as whole
    words: a document or an answer is normalised once, however many variants are looked for in it."""
    target = normalize_answer(variant)
    return bool(target) and re.search(rf"(?<!\w){re.escape(target)}(?!\w)", normalized) is not None


def holds_key_facts(answer: str, key_facts: Sequence[Sequence[str]]) -> bool:
    """One variant of every group: the answer states each fact that makes it right."""
    text = normalize_answer(answer)
    return bool(key_facts) and all(any(contains(text, v) for v in group) for group in key_facts)


def verdict(
    answer: str,
    *,
    answerable: bool,
    key_facts: Sequence[Sequence[str]] = (),
    gold_answers: Sequence[str] = (),
) -> Verdict:
    """The verdict on one answer (see the module docstring)."""
    prediction = to_prediction(answer)
    f1 = score(prediction, gold_answers)[1] if prediction and answerable and not key_facts else 0.0
    return judge(prediction, answerable=answerable, key_facts=key_facts, f1=f1)


def judge(
    prediction: str, *, answerable: bool, key_facts: Sequence[Sequence[str]] = (), f1: float = 0.0
) -> Verdict:
    """:func:`verdict` on an answer already made a SQuAD prediction (``to_prediction``: citations gone, an
    abstention empty), with its F1 against the gold answers: what ``eval.configs.derive`` has in hand."""
    if not prediction:
        return "missed" if answerable else "right"
    if not answerable:
        return "wrong"
    if key_facts:
        return "right" if holds_key_facts(prediction, key_facts) else "wrong"
    return "right" if f1 >= CORRECT_F1 else "wrong"


@dataclass(frozen=True)
class Truthfulness:
    """Counts of verdicts over a set of questions, and what users read off them."""

    right: int
    missed: int
    wrong: int
    answerable: int  # how many of the questions are answerable
    answerable_right: int
    unanswerable_refused: int

    @property
    def n(self) -> int:
        return self.right + self.missed + self.wrong

    @property
    def score(self) -> float:
        """(right − wrong) / N, in [−1, 1]."""
        return (self.right - self.wrong) / self.n if self.n else 0.0

    @property
    def answerable_accuracy(self) -> float | None:
        return self.answerable_right / self.answerable if self.answerable else None

    @property
    def refused_share(self) -> float | None:
        """Share of the unanswerable questions answered "not in the documents"."""
        unanswerable = self.n - self.answerable
        return self.unanswerable_refused / unanswerable if unanswerable else None


def truthfulness(judged: Iterable[tuple[bool, Verdict]]) -> Truthfulness:
    """Aggregate (answerable, verdict) pairs."""
    counts: Counter[tuple[bool, Verdict]] = Counter(judged)
    return Truthfulness(
        right=counts[(True, "right")] + counts[(False, "right")],
        missed=counts[(True, "missed")],
        wrong=counts[(True, "wrong")] + counts[(False, "wrong")],
        answerable=sum(v for (a, _), v in counts.items() if a),
        answerable_right=counts[(True, "right")],
        unanswerable_refused=counts[(False, "right")],
    )
