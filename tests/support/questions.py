"""Questions on samples/ that the benchmarks ask: answerable from normans.md and the complexity article, so
a run measures answering, not abstaining."""

from __future__ import annotations

SAMPLE_QUESTIONS = (
    "In what country is Normandy located?",
    "When were the Normans in Normandy?",
    "Who was the duke in the battle of Hastings?",
    "What is a complexity class?",
    "Who ruled the duchy of Normandy?",
    "What does computational complexity theory classify?",
)
