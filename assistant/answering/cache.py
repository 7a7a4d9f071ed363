"""Semantic answer cache: reuse an answer for a near-identical question, and only then.

Embedding similarity alone makes false hits: "Who founded Normandy?" and "Who did not found Normandy?", or
"... in 1066?" and "... in 1067?", embed almost identically (GPTCache issue #694). So a hit needs all of:

- the same collection and a question cosine >= ``min_similarity`` (default 0.95);
- the same negation words, the same numbers, and every capitalised word (a named entity, roughly) of
  either question present in the other;
- every source chunk the answer was built from still in the collection with unchanged text.

Entries live in SQLite (a file in ``data_dir``, or ``:memory:`` for tests); a stale entry is deleted when
found.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from index.embedding import Embedder

NEGATIONS = frozenset(
    {"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot", "nowhere"}
)
_WORD = re.compile(r"[^\W\d_][\w'’]*", re.UNICODE)
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

SCHEMA = """
CREATE TABLE IF NOT EXISTS cached_answers (
    id INTEGER PRIMARY KEY,
    collection TEXT NOT NULL,
    question TEXT NOT NULL,
    embedding BLOB NOT NULL,
    answer_json TEXT NOT NULL,
    sources_json TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS cached_answers_collection ON cached_answers (collection);
"""


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def negations(text: str) -> frozenset[str]:
    found = set()
    for word in _WORD.findall(text.lower().replace("’", "'")):
        if word in NEGATIONS:
            found.add(word)
        elif word.endswith("n't"):
            found.add("not")
    return frozenset(found)


def capitalised_words(text: str) -> frozenset[str]:
    """Capitalised words other than the first of the question (which is capitalised anyway), lowercased."""
    words = _WORD.findall(text)
    return frozenset(w.lower() for w in words[1:] if w[0].isupper())


def numbers(text: str) -> frozenset[str]:
    return frozenset(n.replace(",", "") for n in _NUMBER.findall(text))


def same_meaning_markers(a: str, b: str) -> str | None:
    """None when the two questions agree on negation, numbers and entities; else what differs."""
    if negations(a) != negations(b):
        return "negation"
    if numbers(a) != numbers(b):
        return "number"
    words_a = {w.lower() for w in _WORD.findall(a)}
    words_b = {w.lower() for w in _WORD.findall(b)}
    if not capitalised_words(a) <= words_b or not capitalised_words(b) <= words_a:
        return "entity"
    return None


@dataclass(frozen=True)
class CacheHit:
    answer: dict[str, Any]  # what was stored by put(): answer text, sources, tier, confidence
    question: str  # the cached question that matched
    similarity: float


# ids -> {id: sha256 of its current text} for the ids that still exist
CurrentHashes = Callable[[Sequence[str]], dict[str, str]]


class SemanticCache:
    def __init__(
        self,
        embedder: Embedder,
        path: Path | str = ":memory:",
        min_similarity: float = 0.95,
        max_entries: int = 10_000,
    ) -> None:
        self.embedder = embedder
        self.min_similarity = min_similarity
        self.max_entries = max_entries
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self.last_miss_reason: str | None = None  # why the last lookup missed (tests, --explain)

    def close(self) -> None:
        self._db.close()

    def _embed(self, question: str) -> np.ndarray:
        [vector] = self.embedder.embed([question])
        return np.asarray(vector, dtype=np.float32)

    def put(
        self, collection: str, question: str, answer: dict[str, Any], sources: Sequence[tuple[str, str]]
    ) -> None:
        """Store an answer; ``sources`` are (chunk id, sha256 of chunk text) of the passages it used."""
        vector = self._embed(question)
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO cached_answers (collection, question, embedding, answer_json, sources_json, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    collection,
                    question,
                    vector.tobytes(),
                    json.dumps(answer),
                    json.dumps([list(s) for s in sources]),
                    time.time(),
                ),
            )
            self._db.execute(
                "DELETE FROM cached_answers WHERE id NOT IN "
                "(SELECT id FROM cached_answers ORDER BY id DESC LIMIT ?)",
                (self.max_entries,),
            )

    def lookup(self, collection: str, question: str, current_hashes: CurrentHashes) -> CacheHit | None:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, question, embedding, answer_json, sources_json FROM cached_answers "
                "WHERE collection = ?",
                (collection,),
            ).fetchall()
        if not rows:
            self.last_miss_reason = "empty"
            return None
        query = self._embed(question)
        matrix = np.stack([np.frombuffer(row[2], dtype=np.float32) for row in rows])
        similarities = matrix @ query
        self.last_miss_reason = f"similarity {float(similarities.max()):.3f}<{self.min_similarity}"
        for index in np.argsort(-similarities):
            similarity = float(similarities[index])
            if similarity < self.min_similarity:
                break
            entry_id, cached_question, _, answer_json, sources_json = rows[index]
            differs = same_meaning_markers(question, cached_question)
            if differs is not None:
                self.last_miss_reason = f"guard: {differs} differs from {cached_question!r}"
                continue
            sources = [(str(i), str(h)) for i, h in json.loads(sources_json)]
            current = current_hashes([i for i, _ in sources])
            if any(current.get(i) != h for i, h in sources):
                self.last_miss_reason = "sources changed"
                with self._lock, self._db:
                    self._db.execute("DELETE FROM cached_answers WHERE id = ?", (entry_id,))
                continue
            self.last_miss_reason = None
            return CacheHit(json.loads(answer_json), cached_question, similarity)
        return None

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM cached_answers").fetchone()[0])
