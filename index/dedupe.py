"""Recognise a document whose text is already indexed from another file.

Doc sets often ship one page twice: Sphinx output holds ``library/os.html`` and its source
``_sources/library/os.rst.txt``. The loaders strip HTML but read reST as plain text, so the two never hash
alike byte for byte, nor even word for word (roles, directives, generated labels). Two checks, on text
normalised to lower-case words with reST markup removed:

- exact: the sha256 of the normalised words;
- near: a 128-value MinHash of word 3-shingles; a document whose estimated Jaccard similarity with one
  already indexed reaches ``threshold`` is a duplicate. Distinct pages of one manual share far less.

Fingerprints are stored with each document's first chunk, so later runs compare against everything indexed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

PERMUTATIONS = 128
_WORD = re.compile(r"[a-z0-9]+")
# reST: directive and comment lines (".. note::"), field lists (":Release:"), roles (":func:`"), rules.
_RST = re.compile(r"^\s*\.\.\s.*$|^\s*:[A-Za-z ]+:|:[a-z:]+:(?=`)|^[=\-~*^#+]{3,}\s*$", re.MULTILINE)
_RNG = np.random.default_rng(20261202)
# Multiply-shift hashing: odd 64-bit multipliers on 64-bit shingle hashes, keep the high 32 bits.
_A = _RNG.integers(0, 2**63, size=PERMUTATIONS, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
_B = _RNG.integers(0, 2**63, size=PERMUTATIONS, dtype=np.uint64)


def normalised_words(text: str) -> list[str]:
    return _WORD.findall(_RST.sub(" ", text).lower())


@dataclass(frozen=True)
class Fingerprint:
    sha256: str
    minhash: np.ndarray  # uint32, PERMUTATIONS values

    @classmethod
    def of(cls, text: str) -> Fingerprint:
        words = normalised_words(text)
        sha = hashlib.sha256(" ".join(words).encode()).hexdigest()
        shingles = {" ".join(words[i : i + 3]) for i in range(max(1, len(words) - 2))}
        hashes = np.fromiter(
            (int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little") for s in shingles),
            dtype=np.uint64,
            count=len(shingles),
        )
        mixed = (hashes[:, None] * _A[None, :] + _B[None, :]) >> np.uint64(32)
        return cls(sha, mixed.min(axis=0).astype(np.uint32))

    def encode(self) -> str:
        """Compact text for chunk metadata (Chroma stores strings, not arrays)."""
        return f"{self.sha256}:{self.minhash.astype('<u4').tobytes().hex()}"

    @classmethod
    def decode(cls, value: str) -> Fingerprint | None:
        try:
            sha, packed = value.split(":", 1)
            minhash = np.frombuffer(bytes.fromhex(packed), dtype="<u4").astype(np.uint32)
        except ValueError:
            return None
        return cls(sha, minhash) if len(minhash) == PERMUTATIONS else None


class DuplicateIndex:
    """Fingerprints of indexed documents by source; answers which one (if any) a new text duplicates."""

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self.sources: list[str] = []
        self.by_sha: dict[str, str] = {}
        self._rows: list[np.ndarray] = []
        self._matrix: np.ndarray | None = None

    def add(self, source: str, fingerprint: Fingerprint) -> None:
        self.by_sha.setdefault(fingerprint.sha256, source)
        self.sources.append(source)
        self._rows.append(fingerprint.minhash)
        self._matrix = None

    def extend(self, items: Iterable[tuple[str, Fingerprint]]) -> None:
        for source, fingerprint in items:
            self.add(source, fingerprint)

    def duplicate_of(self, source: str, fingerprint: Fingerprint) -> str | None:
        """The indexed source (other than ``source`` itself) whose text this duplicates, or None."""
        exact = self.by_sha.get(fingerprint.sha256)
        if exact is not None and exact != source:
            return exact
        if not self._rows:
            return None
        if self._matrix is None:
            self._matrix = np.vstack(self._rows)
        similarity = (self._matrix == fingerprint.minhash[None, :]).mean(axis=1)
        for i in np.argsort(-similarity):
            if similarity[i] < self.threshold:
                return None
            if self.sources[i] != source:
                return self.sources[i]
        return None
