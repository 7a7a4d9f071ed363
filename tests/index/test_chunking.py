"""Chunking is measured in the embedder's own tokens and never exceeds its window."""

from __future__ import annotations

from itertools import pairwise

from index.chunking import Chunker, Section


def words(text: str) -> int:
    return len(text.split())


def test_paragraphs_are_packed_whole_and_overlap() -> None:
    paragraphs = [f"Paragraph {i} " + " ".join(f"w{i}_{j}" for j in range(28)) for i in range(10)]
    chunker = Chunker(words, max_tokens=100, overlap_tokens=35)
    chunks = chunker.chunk([Section("\n\n".join(paragraphs), headings=("Doc", "Part"))])
    assert len(chunks) > 3
    assert all(c.tokens <= 100 for c in chunks)
    assert all(c.headings == ("Doc", "Part") for c in chunks)
    for earlier, later in pairwise(chunks):
        last_paragraph = earlier.text.split("\n")[-1]
        assert later.text.startswith(last_paragraph)  # one paragraph (30 words) of overlap
    every_paragraph = "\n".join(c.text for c in chunks)
    assert all(p in every_paragraph for p in paragraphs)


def test_long_paragraph_splits_on_sentences_then_words() -> None:
    sentence = "This sentence has exactly eight words in it."
    giant = " ".join(f"x{i}" for i in range(250))
    chunker = Chunker(words, max_tokens=40, overlap_tokens=8)
    chunks = chunker.chunk([Section(" ".join([sentence] * 12) + " " + giant)])
    assert all(c.tokens <= 40 for c in chunks)
    assert any(c.text.startswith("This sentence") for c in chunks)
    assert "x249" in chunks[-1].text


def test_real_tokenizer_bound(embedder) -> None:  # type: ignore[no-untyped-def]
    text = ("Antidisestablishmentarianism " * 400).strip()
    chunker = Chunker(embedder.count_tokens, max_tokens=embedder.max_tokens - 2, overlap_tokens=20)
    chunks = chunker.chunk([Section(text)])
    assert chunks
    assert max(embedder.count_tokens(c.text) for c in chunks) <= embedder.max_tokens - 2
