"""What the evaluator sees in (question, sources, local answer): the features P(correct) is computed from.

A prompt-only router (RouteLLM) sees just the question; these features also describe what the local model
did with the retrieved context, in the spirit of FrugalGPT's answer scorer and AutoMix's check against the
context: how sure the model was (token logprobs), how likely it found the question after reading the
passages (a question about what they do not say surprises it), how good retrieval was (top score, margin,
dense/BM25 agreement), whether the answer's words and meaning are found in the passages it cites, whether it
occurs verbatim and in which passage, whether the sentence holding it is about the question, whether its
type fits the question's (a date for "when"), whether it abstained, its length and citations. A 0.5B
model's own report of its confidence carries no signal (docs/eval/evaluator-signals.md): these read the
evidence instead.
The same word overlap attributes an uncited answer to its passage (:func:`ensure_citation`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from assistant.answering.judge.answer_type import type_match
from assistant.answering.prompt.grounded import cited_numbers, is_abstention
from assistant.answering.text import content_words, normalize, sentences, strip_citations, words
from index.sentvec import sentence_vectors

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
    "answer_verbatim_rank",  # 1/rank of the first passage holding the normalised answer verbatim (0: none)
    "answer_sentence_qcov",  # share of the question's content words in the sentence holding the answer
    "question_sentence_cos",  # best cosine of the question with one passage sentence
    "answer_sentence_cos",  # best cosine of the answer with one passage sentence
    "answer_sentence_question_cos",  # cosine of the question with the sentence the answer came from
    "type_match",  # answer type fits the question type: 1 yes, 0 no, 0.5 untyped question
    "dense_bm25_agree",  # 1 if dense and BM25 retrieval rank the same passage first (hybrid only)
    "question_names_missing",  # share of the question's names and numbers that no passage holds
    "question_logprob",  # mean log-probability of the question's tokens given the passages before it
    "answer_new_words",  # content words the answer adds to the question's (capped at 10; 0: an echo)
    "degenerate",  # 1 if the answer only repeats the question or is a bare title (never right)
)

# Features only some local backends can give: Penny's model and worker score the question in the prompt's
# prefill, llama-server and vLLM do not. A row lacks them when unknown, and a model reads a missing one at
# its training mean (calibration.py), so it neither helps nor hurts that answer.
OPTIONAL_FEATURES: tuple[str, ...] = ("question_logprob",)

# What the question and the passages say before any answer is read. Whether the passages answer the question
# (P(answerable)) and whether the paid tier will get it right (P(paid helps)) are properties of these, not of
# the local model's answer: fitted on all features, both learn the local model's quirks and lose out of fold
# (docs/eval/evaluator-signals.md).
EVIDENCE_FEATURES: tuple[str, ...] = (
    "retrieval_top",
    "retrieval_margin",
    "dense_bm25_agree",
    "question_support",
    "question_sentence_cos",
    "question_names_missing",
    "question_logprob",
)


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


def lexical_support(question: str, answer: str, passages: Sequence[Passage]) -> float:
    """Share of the answer's content words, beyond those of the question, that occur in ``passages``.

    Words copied from the question are left out: repeating the question proves nothing. An answer with no
    new content word gets 0.
    """
    answer_words = content_words(strip_citations(answer)) - content_words(question)
    if not answer_words or not passages:
        return 0.0
    passage_words: set[str] = set()
    for passage in passages:
        passage_words |= content_words(passage.text)
    return len(answer_words & passage_words) / len(answer_words)


def question_coverage(question: str, text: str) -> float:
    """Share of the question's content words that ``text`` contains (0 for a question without any)."""
    asked = content_words(question)
    return len(asked & content_words(text)) / len(asked) if asked else 0.0


def question_support(question: str, passages: Sequence[Passage]) -> float:
    """Best share of the question's content words that one passage contains.

    Unanswerable questions are often a near-copy of a passage sentence with one entity or number swapped
    (SQuAD 2.0's adversarial questions): the swapped word is then missing from every passage.
    """
    return max((question_coverage(question, p.text) for p in passages), default=0.0)


def question_names(question: str) -> set[str]:
    """The question's names and numbers, lowercased: its capitalised words past the first, and figures."""
    tokens = words(question)
    return {t.lower() for i, t in enumerate(tokens) if t.isdigit() or (i > 0 and t[0].isupper() and t != "I")}


def question_names_missing(question: str, passages: Sequence[Passage]) -> float:
    """Share of the question's names and numbers that no passage contains (0 for a question with none).

    A question about a person, place, year or amount the documents never mention cannot be answered from
    them, however close the rest of its wording is. That holds for a user's question, a swapped probe and
    SQuAD 2.0's adversarial questions alike, unlike plain word overlap (docs/eval/evaluator-signals.md).
    """
    names = question_names(question)
    if not names or not passages:
        return 0.0
    held = {w for p in passages for w in words(p.text.lower())}
    return len(names - held) / len(names)


def _stem(word: str) -> str:
    """Plural and possessive folded ("Normans" is "Norman"): enough to tell an echo, not a stemmer."""
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def new_content_words(question: str, answer: str) -> set[str]:
    """The answer's content words that the question does not already hold."""
    asked = {_stem(w) for w in content_words(question)}
    return {w for w in content_words(strip_citations(answer)) if _stem(w) not in asked}


def is_bare_title(answer: str, passages: Sequence[Passage]) -> bool:
    """The answer is only a document's or a section's title: a heading names a topic, it answers nothing."""
    target = normalize(answer)
    titles = {normalize(p.title) for p in passages} | {
        normalize(heading) for p in passages for heading in str(p.metadata.get("headings", "")).split(" > ")
    }
    return bool(target) and target in titles


def is_degenerate(question: str, answer: str, passages: Sequence[Passage]) -> bool:
    """An answer that cannot be right whatever its logprobs say: it adds no content word to the question
    ("What is Sky Q?" -> "Sky Q"), or it is a bare title. An abstention is not degenerate: it says so."""
    if is_abstention(answer) or not strip_citations(answer).strip():
        return False
    return not new_content_words(question, answer) or is_bare_title(answer, passages)


def answer_verbatim_rank(answer: str, passages: Sequence[Passage]) -> float:
    """1/rank of the first passage that holds the normalised answer as a phrase, 0 when none does.

    The local prompt asks for the shortest exact phrase from the sources: an answer found nowhere was
    paraphrased or made up, and one found only in the fifth passage is less likely than one in the first.
    """
    target = normalize(answer)
    if not target:
        return 0.0
    for rank, passage in enumerate(passages, start=1):
        if f" {target} " in f" {normalize(passage.text)} ":
            return 1.0 / rank
    return 0.0


def answer_sentence(answer: str, passages: Sequence[Passage]) -> str | None:
    """The passage sentence the answer came from: the first holding it verbatim, else the one sharing most
    of its content words; None when no sentence shares any."""
    return _answer_sentence(answer, [p.text for p in passages])


def _answer_sentence(answer: str, texts: Sequence[str]) -> str | None:
    target = normalize(answer)
    answer_words = content_words(strip_citations(answer))
    best, best_overlap = None, 0
    for text in texts:
        for sentence in sentences(text):
            if target and f" {target} " in f" {normalize(sentence)} ":
                return sentence
            overlap = len(answer_words & content_words(sentence))
            if overlap > best_overlap:
                best, best_overlap = sentence, overlap
    return best


def answer_sentence_qcov(question: str, sentence: str | None) -> float:
    """Share of the question's content words found in the sentence the answer came from.

    A factoid answer sits in the sentence that restates the question: a right-looking span from the wrong
    sentence scores low, and so does a question whose swapped entity no sentence holds (unanswerable).
    """
    return question_coverage(question, sentence) if sentence else 0.0


def embedding_support(answer: str, passages: Sequence[Passage], embedder: Embedder) -> float:
    """The answer's cosine with the closest of ``passages`` (0 for an empty answer)."""
    text = strip_citations(answer).strip()
    if not text or not passages:
        return 0.0
    vectors = embedder.embed_memo([text, *(p.text for p in passages)])
    return float((vectors[1:] @ vectors[0]).max())  # normalised vectors: dot product = cosine


def sentence_cosines(
    question: str, answer: str, source: str | None, passages: Sequence[Passage], embedder: Embedder
) -> dict[str, float]:
    """Cosines over the passages' sentences: the best question–sentence and answer–sentence ones, and the
    question's with ``source``, the sentence the answer came from (:func:`answer_sentence`).

    The sentence vectors come with the passages from the index's sentence store (``index.sentvec``);
    only the question and the answer are embedded, and passages without stored vectors in one batch of
    short texts (kept apart from :func:`embedding_support`'s whole passages: one batch would pad every
    sentence to a passage's length, slower: benchmarks/bench_evaluator.py). Whole passages dilute the one
    sentence that matters, which is why these beat passage-level cosines.
    """
    units = [s for p in passages for s in sentences(p.text)]
    text = strip_citations(answer).strip()
    if not units:
        return {"question_sentence_cos": 0.0, "answer_sentence_cos": 0.0, "answer_sentence_question_cos": 0.0}
    asked = embedder.embed_memo([question, text or question])
    held = sentence_vectors(passages, embedder)
    cosines = held @ asked.T  # normalised vectors: dot product = cosine
    return {
        "question_sentence_cos": float(cosines[:, 0].max()),
        "answer_sentence_cos": float(cosines[:, 1].max()) if text else 0.0,
        "answer_sentence_question_cos": float(cosines[units.index(source), 0]) if source in units else 0.0,
    }


def best_question_passage(question: str, passages: Sequence[Passage], embedder: Embedder) -> int:
    """Index of the passage holding the sentence closest to the question (0 when none has a sentence)."""
    owners = [i for i, p in enumerate(passages) for _ in sentences(p.text)]
    if not owners:
        return 0
    [asked] = embedder.embed_memo([question])
    held = sentence_vectors(passages, embedder)
    return owners[int((held @ asked).argmax())]


def dense_bm25_agree(passages: Sequence[Passage]) -> float:
    """1 when the dense and the BM25 ranking put the same passage first; 0.5 when retrieval was not hybrid.

    Two retrieval systems agreeing on the top passage is evidence the question is about that passage.
    """
    meta = passages[0].metadata if passages else {}
    if "dense_rank" not in meta and "bm25_rank" not in meta:
        return 0.5
    return float(
        any(p.metadata.get("dense_rank") == 1 and p.metadata.get("bm25_rank") == 1 for p in passages)
    )


def supporting_passages(answer: str, passages: Sequence[Passage]) -> tuple[list[Passage], int]:
    """The passages the answer cites, or all of them when it cites none; and the citation count."""
    cited = cited_numbers(answer, len(passages))
    return ([passages[n - 1] for n in cited] if cited else list(passages)), len(cited)


def extract_features(
    question: str, passages: Sequence[Passage], generation: Generation, embedder: Embedder
) -> dict[str, float]:
    features = {
        "mean_logprob": generation.mean_logprob,
        "min_logprob": generation.min_logprob,
        **retrieval_features(passages),
        "answer_tokens": float(generation.completion_tokens),
        "dense_bm25_agree": dense_bm25_agree(passages),
        **text_features(question, passages, generation.text, embedder),
    }
    # The cascade asks the local tier to score the question, which ends its prompt (the prefill's logits).
    question_logprob = generation.scored_tail_mean_logprob
    if question_logprob is not None:
        features["question_logprob"] = question_logprob
    return features


def text_features(
    question: str, passages: Sequence[Passage], answer: str, embedder: Embedder
) -> dict[str, float]:
    """The features read from the texts alone (question, passages, answer): what ``eval`` can recompute
    for a stored run when a feature changes, without generating again."""
    support, n_citations = supporting_passages(answer, passages)
    abstained = is_abstention(answer)
    text = "" if abstained else answer
    source = answer_sentence(text, passages) if text else None
    return {
        "answer_new_words": float(min(10, len(new_content_words(question, text)))),
        "degenerate": 1.0 if is_degenerate(question, answer, passages) else 0.0,
        "lexical_support": 0.0 if abstained else lexical_support(question, answer, support),
        "embedding_support": embedding_support(text, support, embedder),
        "abstained": 1.0 if abstained else 0.0,
        "n_citations": float(n_citations),
        "question_support": question_support(question, passages),
        "question_names_missing": question_names_missing(question, passages),
        "answer_verbatim_rank": answer_verbatim_rank(text, passages),
        "answer_sentence_qcov": answer_sentence_qcov(question, source),
        "type_match": type_match(question, text) if text else 0.5,
        **sentence_cosines(question, text, source, passages, embedder),
    }


def evidence_sentence(answer: str, texts: Sequence[str]) -> tuple[int, str] | None:
    """The source sentence behind an answer, with its source's number: the first cited source's sentence
    that holds the answer or most of its words (every source when it cites none); None for an abstention
    or an answer no sentence supports. What a reader checks the answer against at a glance."""
    if not texts or is_abstention(answer):
        return None
    cited = cited_numbers(answer, len(texts))
    for number in cited or range(1, len(texts) + 1):
        sentence = _answer_sentence(answer, [texts[number - 1]])
        if sentence is not None:
            return number, sentence
    return None


def ensure_citation(question: str, answer: str, passages: Sequence[Passage]) -> str:
    """Attribute an uncited answer to the passage holding most of its new content words, as ``[n]``.

    Small models often answer correctly without citing; readers still need to know where an answer came
    from. An abstention, an answer that already cites, or one no passage supports is returned unchanged.
    """
    if not passages or is_abstention(answer) or cited_numbers(answer, len(passages)):
        return answer
    new_words = content_words(strip_citations(answer)) - content_words(question)
    overlaps = [len(new_words & content_words(p.text)) for p in passages]
    best = max(range(len(passages)), key=lambda i: (overlaps[i], -i))
    if overlaps[best] == 0:
        return answer
    return f"{answer.rstrip()} [{best + 1}]"
