"""The prompt diet: only the sentences that matter to the question go into the local prompt.

The local tier is bound by prefill on a 2-core machine, so every prompt token costs time and money. A
question is usually answered by one sentence, and the few sentences around it; the rest of the top
passages is read and ignored. :func:`compress` scores each sentence by its cosine with the question (the
sentence vectors retrieval carries from the index's sentence store, ``index.sentvec``; a passage without
them is embedded through the memo, where the evaluator then finds them) plus the share of the question's
words it holds, each word weighted by its BM25 IDF over this question's sentences (stemmed, so
"defending" finds "defended"; a word every sentence holds weighs little), and keeps:

- the top passage's best sentence always, and the best sentence overall when it fits;
- the sentences next to those two (a sentence's subject is often a pronoun, or the answer is in the
  next one);
- then the rest by score, until the score drops too far below the best or the budget is spent, so a
  question one sentence answers gets a short prompt and a vaguer one a longer prompt;
- sentences in their passage's order, gaps marked with an ellipsis; every passage keeps its place (one
  with nothing kept is a stub, trailing stubs are dropped), so ``[n]`` still names the same source.

It returns passages, so it composes with any prompt layout. Only the prompt is compressed: the answer's
sources, the evaluator's features and the paid tier's prompt use the full passages. The paid tier gets
the full passages because it is the backstop for the questions the local tier gets wrong, which include
those where the diet dropped the answer; its quality was not measured on compressed prompts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from assistant.answering.text import content_words, sentences
from index.sentvec import sentence_vectors

if TYPE_CHECKING:
    import numpy as np

    from assistant.settings import CascadeSettings
    from index.embedding import Embedder
    from index.retrieval import Passage

GAP = " … "
STUB = "…"


@dataclass(frozen=True)
class Diet:
    """How much of the passages the local prompt keeps (``cascade.prompt_diet_*`` settings)."""

    budget_tokens: int = 300  # passage text kept, in estimated tokens; the top passage's best sentence always
    keep_within: float = 0.5  # keep further sentences scoring at least (best - keep_within)
    neighbours: int = 2  # sentences kept on each side of the best hit, within its passage
    lexical_weight: float = 1.0  # weight of the question words a sentence holds, next to its cosine

    @classmethod
    def from_settings(cls, cascade: CascadeSettings) -> Diet | None:
        """The diet ``cascade.prompt_diet*`` asks for, or None when it is off."""
        if not cascade.prompt_diet:
            return None
        return cls(
            budget_tokens=cascade.prompt_diet_budget_tokens,
            keep_within=cascade.prompt_diet_keep_within,
            neighbours=cascade.prompt_diet_neighbours,
        )


def estimate_tokens(text: str) -> int:
    """About four characters per token for English in the local model's BPE: a budget needs no tokenizer."""
    return math.ceil(len(text) / 4)


def sentence_scores(
    question: str, units: Sequence[str], cosines: np.ndarray, lexical_weight: float
) -> list[float]:
    """Per sentence: its cosine with the question plus ``lexical_weight`` times the IDF-weighted share of
    the question's stemmed content words it holds."""
    import Stemmer

    stemmer = Stemmer.Stemmer("english")  # one per call: a Stemmer is not thread-safe, and cheap to make

    def stems(text: str) -> set[str]:
        return set(stemmer.stemWords(sorted(content_words(text))))

    asked = stems(question)
    held = [stems(sentence) for sentence in units]
    n = len(held)
    idf = {}
    for word in asked:
        df = sum(word in words for words in held)
        idf[word] = math.log(1 + (n - df + 0.5) / (df + 0.5))  # BM25's IDF, over this question's sentences
    total = sum(idf.values())
    return [
        float(cosine) + (lexical_weight * sum(idf[w] for w in asked & words) / total if total else 0.0)
        for cosine, words in zip(cosines, held, strict=True)
    ]


def compress(
    question: str, passages: Sequence[Passage], embedder: Embedder, diet: Diet | None = None
) -> list[Passage]:
    """``passages`` with only the sentences that matter to ``question`` (see the module docstring).

    With ``diet`` None the passages are returned unchanged (and nothing is embedded).
    """
    if diet is None or not passages:
        return list(passages)
    split = [sentences(p.text) for p in passages]
    units = [s for passage in split for s in passage]
    if not units:
        return list(passages)
    where = [(p, i) for p, passage in enumerate(split) for i in range(len(passage))]
    [asked] = embedder.embed_memo([question])  # retrieval embedded it: memoised
    held = sentence_vectors(passages, embedder)
    scores = sentence_scores(question, units, held @ asked, diet.lexical_weight)
    ranked = sorted(range(len(where)), key=lambda u: -scores[u])
    best = ranked[0]
    anchor = next((u for u in ranked if where[u][0] == 0), best)  # the top passage's best sentence

    kept: set[int] = {anchor}
    spent = estimate_tokens(units[anchor])

    def keep(unit: int) -> None:
        nonlocal spent
        cost = estimate_tokens(units[unit])
        if unit not in kept and spent + cost <= diet.budget_tokens:
            kept.add(unit)
            spent += cost

    keep(best)
    for hit in dict.fromkeys((best, anchor)):
        passage, index = where[hit]
        for step in range(1, diet.neighbours + 1):
            for neighbour in (index - step, index + step):  # the one before first: its subject
                if 0 <= neighbour < len(split[passage]):
                    keep(where.index((passage, neighbour)))
    floor = scores[best] - diet.keep_within
    for unit in ranked:
        if scores[unit] < floor:
            break
        keep(unit)
    return _rebuild(passages, split, where, kept)


def _rebuild(
    passages: Sequence[Passage], split: list[list[str]], where: list[tuple[int, int]], kept: set[int]
) -> list[Passage]:
    chosen: list[list[int]] = [[] for _ in passages]
    for unit in sorted(kept):
        passage, index = where[unit]
        chosen[passage].append(index)
    out: list[Passage] = []
    for passage, units, indices in zip(passages, split, chosen, strict=True):
        if not units:  # no sentence to choose from (empty text): as it was
            out.append(passage)
            continue
        text = ""
        for position, index in enumerate(indices):
            if position:
                text += " " if index == indices[position - 1] + 1 else GAP
            text += units[index]
        out.append(replace(passage, text=text or STUB, sentence_vectors=None))  # they were the full text's
    while len(out) > 1 and out[-1].text == STUB:
        out.pop()
    return out
