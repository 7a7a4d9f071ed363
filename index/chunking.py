"""Token-aware chunking that respects headings and paragraphs.

Chunks are measured in the embedding model's own word pieces so that no chunk is ever truncated by the
embedder (all-MiniLM-L6-v2 reads at most 256 pieces including [CLS]/[SEP]). A chunk packs whole
paragraphs up to ``max_tokens``; a paragraph longer than that is split on sentences, and a sentence longer
than that on token boundaries. Consecutive chunks of one section share about ``overlap_tokens`` of text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from index.sentences import SENTENCE_END


@dataclass(frozen=True)
class Section:
    """A run of text under one heading path (e.g. ``("Guide", "Install")``), optionally on a PDF page."""

    text: str
    headings: tuple[str, ...] = ()
    page: int | None = None


@dataclass
class Chunk:
    text: str
    index: int
    headings: tuple[str, ...] = ()
    page: int | None = None
    tokens: int = 0
    meta: dict[str, object] = field(default_factory=dict)


Counter = Callable[[str], int]


class Chunker:
    def __init__(
        self,
        count_tokens: Counter,
        max_tokens: int = 200,
        overlap_tokens: int = 40,
        split_tokens: Callable[[str, int], list[str]] | None = None,
    ) -> None:
        if overlap_tokens >= max_tokens:
            raise ValueError("overlap must be smaller than the chunk size")
        self.count = count_tokens
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self._split_tokens = split_tokens

    def chunk(self, sections: Iterable[Section]) -> list[Chunk]:
        chunks: list[Chunk] = []
        for section in sections:
            for text in self._pack(self._units(section.text)):
                chunks.append(
                    Chunk(
                        text=text,
                        index=len(chunks),
                        headings=section.headings,
                        page=section.page,
                        tokens=self.count(text),
                    )
                )
        return chunks

    def _units(self, text: str) -> list[str]:
        """Paragraphs, or sentences / token windows of paragraphs too long to keep whole."""
        units: list[str] = []
        for paragraph in re.split(r"\n\s*\n", text):
            paragraph = " ".join(paragraph.split())
            if not paragraph:
                continue
            if self.count(paragraph) <= self.max_tokens:
                units.append(paragraph)
                continue
            for sentence in SENTENCE_END.split(paragraph):
                if self.count(sentence) <= self.max_tokens:
                    units.append(sentence)
                else:
                    units.extend(self._hard_split(sentence))
        return units

    def _hard_split(self, text: str) -> list[str]:
        if self._split_tokens is not None:
            return self._split_tokens(text, self.max_tokens)
        words, pieces, current = text.split(), [], []
        for word in words:
            if current and self.count(" ".join([*current, word])) > self.max_tokens:
                pieces.append(" ".join(current))
                current = []
            current.append(word)
        if current:
            pieces.append(" ".join(current))
        return pieces

    def _pack(self, units: list[str]) -> list[str]:
        packed: list[str] = []
        current: list[str] = []
        size = 0
        for unit in units:
            unit_size = self.count(unit)
            if current and size + unit_size > self.max_tokens:
                packed.append("\n".join(current))
                current = self._overlap(current)
                size = sum(self.count(u) for u in current)
                if size + unit_size > self.max_tokens:
                    current, size = [], 0
            current.append(unit)
            size += unit_size
        if current:
            packed.append("\n".join(current))
        return packed

    def _overlap(self, units: list[str]) -> list[str]:
        """Trailing units of the previous chunk that fit in the overlap budget."""
        kept: list[str] = []
        size = 0
        for unit in reversed(units):
            unit_size = self.count(unit)
            if size + unit_size > self.overlap_tokens:
                break
            kept.insert(0, unit)
            size += unit_size
        return kept
