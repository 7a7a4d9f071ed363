"""Text primitives both the judge and the local prompt read text by: words, content words, sentences,
citations stripped, SQuAD's normalisation. One definition, so the prompt diet keeps the sentences the
evaluator later measures; ``sentences`` lives in ``index.sentences``, where the vectors kept beside each
chunk are split by it too."""

from __future__ import annotations

import re
import string

from index.sentences import sentences

__all__ = ["content_words", "normalize", "sentences", "strip_citations", "words"]

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CITATION = re.compile(r"\[\d{1,2}\]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def words(text: str) -> list[str]:
    """Runs of letters and digits, as written."""
    return _WORD.findall(text)


def content_words(text: str) -> set[str]:
    """Lower-cased words that are not English stop words."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return {w for w in words(text.lower()) if w not in ENGLISH_STOP_WORDS}


def strip_citations(text: str) -> str:
    """``text`` without its ``[n]`` citation markers."""
    return _CITATION.sub(" ", text)


def normalize(text: str) -> str:
    """SQuAD's answer normalisation (lowercase, no punctuation, articles or extra spaces), so "the Normans."
    is found in "...by the Normans in 1066"."""
    return " ".join(_ARTICLES.sub(" ", strip_citations(text).lower().translate(_PUNCTUATION)).split())
