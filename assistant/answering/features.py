"""What the evaluator sees in (question, sources, local answer): the features P(correct) is computed from.

A prompt-only router (RouteLLM) sees just the question; these features also describe what the local model
did with the retrieved context, in the spirit of FrugalGPT's answer scorer and AutoMix's check against the
context: how sure the model was (token logprobs), how good retrieval was (top score, margin), whether the
answer's words and meaning are found in the passages it cites, whether it abstained, its length and
citations. The same word overlap attributes an uncited answer to its passage (:func:`ensure_citation`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from assistant.answering.prompts import cited_numbers, is_abstention

if TYPE_CHECKING:
    from assistant.local.backend import Generation
    from index.embedding import Embedder
    from index.retrieval import Passage

FEATURES: tuple[str, ...] = (
    "mean_logprob",  # mean log-probability of the generated tokens (<= 0)
    "min_logprob",  # the least likely generated token
    "retrieval_top",  # best passage relevance (dense cosine)
    "retrieval_margin",  # best minus second-best relevance
    "lexical_support",  # share of the answer's new content words found in the cited passages
    "embedding_support",  # cosine of the answer with the closest cited passage
    "abstained",  # 1 if the answer is the abstention phrase
    "answer_tokens",  # completion tokens
    "n_citations",  # distinct in-range [n] citations
    "question_support",  # best share of the question's content words found in one passage
)

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CITATION = re.compile(r"\[\d{1,2}\]")


def relevance(passage: Passage) -> float:
    """A passage's relevance on the cosine scale, whatever the retrieval mode.

    Hybrid retrieval's ``score`` is a reciprocal-rank-fusion value (~0.03) that says nothing about absolute
    relevance, so prefer the dense cosine it keeps in metadata. A hybrid hit that only BM25 found has no
    cosine among the dense candidates: it counts as 0.
    """
    meta = passage.metadata
    if "dense_score" in meta:
        return float(meta["dense_score"])
    if "bm25_score" in meta:
        return 0.0
    return float(passage.score)


def retrieval_top_and_margin(passages: Sequence[Passage]) -> tuple[float, float]:
    scores = sorted((relevance(p) for p in passages), reverse=True)
    if not scores:
        return 0.0, 0.0
    return scores[0], scores[0] - (scores[1] if len(scores) > 1 else 0.0)


def retrieval_features(passages: Sequence[Passage]) -> dict[str, float]:
    """The features known before generation: what an answer routed without a local run reports."""
    top, margin = retrieval_top_and_margin(passages)
    return {"retrieval_top": top, "retrieval_margin": margin}


def content_words(text: str) -> set[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return {w for w in _WORD.findall(text.lower()) if w not in ENGLISH_STOP_WORDS}


def lexical_support(question: str, answer: str, passages: Sequence[Passage]) -> float:
    """Share of the answer's content words, beyond those of the question, that occur in ``passages``.

    Words copied from the question are left out: repeating the question proves nothing. An answer with no
    new content word gets 0.
    """
    answer_words = content_words(_CITATION.sub(" ", answer)) - content_words(question)
    if not answer_words or not passages:
        return 0.0
    passage_words: set[str] = set()
    for passage in passages:
        passage_words |= content_words(passage.text)
    return len(answer_words & passage_words) / len(answer_words)


def embedding_support(answer: str, passages: Sequence[Passage], embedder: Embedder) -> float:
    text = _CITATION.sub(" ", answer).strip()
    if not text or not passages:
        return 0.0
    answer_vector, *passage_vectors = embedder.embed([text, *(p.text for p in passages)])
    return max(sum(a * b for a, b in zip(answer_vector, v, strict=True)) for v in passage_vectors)


def question_support(question: str, passages: Sequence[Passage]) -> float:
    """Best share of the question's content words that one passage contains.

    Unanswerable questions are often a near-copy of a passage sentence with one entity or number swapped
    (SQuAD 2.0's adversarial questions): the swapped word is then missing from every passage.
    """
    words = content_words(question)
    if not words or not passages:
        return 0.0
    return max(len(words & content_words(p.text)) for p in passages) / len(words)


def supporting_passages(answer: str, passages: Sequence[Passage]) -> tuple[list[Passage], int]:
    """The passages the answer cites, or all of them when it cites none; and the citation count."""
    cited = cited_numbers(answer, len(passages))
    return ([passages[n - 1] for n in cited] if cited else list(passages)), len(cited)


def extract_features(
    question: str, passages: Sequence[Passage], generation: Generation, embedder: Embedder
) -> dict[str, float]:
    support, n_citations = supporting_passages(generation.text, passages)
    abstained = is_abstention(generation.text)
    return {
        "mean_logprob": generation.mean_logprob,
        "min_logprob": generation.min_logprob,
        **retrieval_features(passages),
        "lexical_support": 0.0 if abstained else lexical_support(question, generation.text, support),
        "embedding_support": 0.0 if abstained else embedding_support(generation.text, support, embedder),
        "abstained": 1.0 if abstained else 0.0,
        "answer_tokens": float(generation.completion_tokens),
        "n_citations": float(n_citations),
        "question_support": question_support(question, passages),
    }


def ensure_citation(question: str, answer: str, passages: Sequence[Passage]) -> str:
    """Attribute an uncited answer to the passage holding most of its new content words, as ``[n]``.

    Small models often answer correctly without citing; readers still need to know where an answer came
    from. An abstention, an answer that already cites, or one no passage supports is returned unchanged.
    """
    if not passages or is_abstention(answer) or cited_numbers(answer, len(passages)):
        return answer
    words = content_words(_CITATION.sub(" ", answer)) - content_words(question)
    overlaps = [len(words & content_words(p.text)) for p in passages]
    best = max(range(len(passages)), key=lambda i: (overlaps[i], -i))
    if overlaps[best] == 0:
        return answer
    return f"{answer.rstrip()} [{best + 1}]"
