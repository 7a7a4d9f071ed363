"""One question, its passages and local answers, shared by the evaluator's tests."""

from __future__ import annotations

import numpy as np

from assistant.answering.judge.features import FEATURES
from assistant.local.backend import Generation
from index.retrieval import Passage

QUESTION = "In what country is Normandy located?"
PASSAGES = [
    Passage("a", "normans.md", "The Normans gave their name to Normandy, a region in France.", 0.62),
    Passage("b", "normans.md", "Rollo agreed to defend the Seine valley against other raiders.", 0.41),
    Passage("c", "cct.md", "A Turing machine is a model of computation.", 0.05),
]


def generation(text: str, logprobs: list[float] | None = None) -> Generation:
    logprobs = logprobs or [-0.1, -0.3, -0.05]
    return Generation(text, prompt_tokens=300, completion_tokens=len(logprobs), token_logprobs=logprobs)


def synthetic(
    seed: int, signal: str, when_true: float, when_false: float, sd: float
) -> tuple[list[dict[str, float]], list[bool]]:
    """200 rows of noise features, except ``signal``, which tells the label (a fair coin) from its mean."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for _ in range(200):
        label = bool(rng.random() < 0.5)
        row = {name: float(rng.normal()) for name in FEATURES}
        row[signal] = float(rng.normal(when_true if label else when_false, sd))
        row["abstained"] = 0.0
        rows.append(row)
        labels.append(label)
    return rows, labels
