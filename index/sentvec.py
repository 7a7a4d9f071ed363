"""Sentence vectors kept beside each chunk, so the answer path embeds no passage sentence.

The prompt diet and the evaluator compare the question and the answer with every sentence of the retrieved
passages. Embedding those sentences is most of what a question on passages no recent question touched
costs on top of generation, and a chunk's sentences never change: they are embedded once per chunk and
kept here, and retrieval hands them over with the passage (``Passage.sentence_vectors``).

Kept in a SQLite file beside the BM25 index rather than in the chunk's Chroma metadata: a chunk's sentence
vectors weigh ten times the rest of its metadata, and every ingest reads all metadata (its manifest).
A row is keyed by chunk id and carries a digest of the embedding model's name and the chunk's sentences,
so a row whose chunk text, splitter or model changed no longer matches and is embedded again, never
misread; ingest deletes the rows of the chunks it deletes. An index built before this store has no rows:
retrieval fills them the first time it returns each chunk. Vectors are stored as float16 (cosines move by
about 1e-4), half the size of float32.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from index.sentences import sentences

if TYPE_CHECKING:
    import numpy as np

    from index.retrieval import Passage

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sentence_vectors (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    rows INTEGER NOT NULL,
    dim INTEGER NOT NULL,
    vectors BLOB NOT NULL
)
"""
_READ_BATCH = 500  # ids per SELECT, under SQLite's bound-parameter limit

log = logging.getLogger(__name__)


class Memo(Protocol):
    """What reading sentence vectors needs of an embedder: ``Embedder.embed_memo``."""

    def embed_memo(self, texts: Sequence[str]) -> np.ndarray: ...


def digest(model: str, units: Sequence[str]) -> str:
    """What a stored row must match: the model and the exact sentences its vectors belong to."""
    return hashlib.sha256("\x1f".join([model, *units]).encode()).hexdigest()


class SentenceVectorStore:
    """Per-chunk sentence vectors in one SQLite file (WAL: a serving and an ingesting process share it)."""

    def __init__(self, path: Path, model: str) -> None:
        self.path = path
        self.model = model
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # a row lost to a power cut is only embedded again
            db.execute(_SCHEMA)
            self._db = db
        return self._db

    def read(self, chunks: Mapping[str, str]) -> dict[str, np.ndarray]:
        """Stored vectors (float32, one row per sentence) of the chunks ``{id: text}`` whose row matches."""
        import numpy as np

        ids = list(chunks)
        found: dict[str, np.ndarray] = {}
        with self._lock:
            db = self._connect()
            rows = []
            for start in range(0, len(ids), _READ_BATCH):
                batch = ids[start : start + _READ_BATCH]
                marks = ",".join("?" * len(batch))
                rows += db.execute(
                    f"SELECT id, digest, rows, dim, vectors FROM sentence_vectors WHERE id IN ({marks})",
                    batch,
                ).fetchall()
        for pid, stored, n, dim, blob in rows:
            if stored == digest(self.model, sentences(chunks[pid])) and len(blob) == 2 * n * dim:
                found[pid] = np.frombuffer(blob, dtype=np.float16).reshape(n, dim).astype(np.float32)
        return found

    def write(self, items: Iterable[tuple[str, str, np.ndarray]]) -> None:
        """Keep ``(chunk id, chunk text, its sentence vectors)``, replacing what the ids had."""
        import numpy as np

        rows = []
        for pid, text, vectors in items:
            array = np.asarray(vectors, dtype=np.float16)
            n, dim = array.shape if array.ndim == 2 else (0, 0)
            rows.append((pid, digest(self.model, sentences(text)), n, dim, array.tobytes()))
        if not rows:
            return
        with self._lock:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR REPLACE INTO sentence_vectors VALUES (?, ?, ?, ?, ?)", rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def delete(self, ids: Sequence[str]) -> None:
        """Forget the rows of deleted chunks, so none outlives its chunk."""
        if not ids:
            return
        with self._lock:
            db = self._connect()
            for start in range(0, len(ids), _READ_BATCH):
                batch = list(ids[start : start + _READ_BATCH])
                db.execute(f"DELETE FROM sentence_vectors WHERE id IN ({','.join('?' * len(batch))})", batch)

    def count(self) -> int:
        with self._lock:
            return int(self._connect().execute("SELECT COUNT(*) FROM sentence_vectors").fetchone()[0])

    def fill(self, chunks: Mapping[str, str], embedder: Memo) -> dict[str, np.ndarray]:
        """Every chunk's sentence vectors: the stored ones, and the rest embedded in one batch and kept.

        On the answer path: a store that cannot be read or written (a full disk, a broken file) costs
        the embedding it saves, never the answer."""
        try:
            found = self.read(chunks)
        except sqlite3.Error as exc:
            log.warning("sentence vectors unreadable in %s: %s", self.path, exc)
            found = {}
        missing = [pid for pid in chunks if pid not in found]
        if missing:
            embedded = embed_sentences([chunks[pid] for pid in missing], embedder.embed_memo)
            found.update(zip(missing, embedded, strict=True))
            try:
                self.write((pid, chunks[pid], found[pid]) for pid in missing)
            except sqlite3.Error as exc:
                log.warning("sentence vectors not kept in %s: %s", self.path, exc)
        return found

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def remove(self) -> None:
        """Delete the file (its collection was deleted)."""
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)


def embed_sentences(texts: Sequence[str], embed: Callable[[Sequence[str]], np.ndarray]) -> list[np.ndarray]:
    """Each text's sentence vectors, all texts' sentences embedded in one ``embed`` call."""
    import numpy as np

    split = [sentences(text) for text in texts]
    units = [s for chunk in split for s in chunk]
    flat = embed(units) if units else np.zeros((0, 0), dtype=np.float32)
    out, start = [], 0
    for chunk in split:
        out.append(flat[start : start + len(chunk)])
        start += len(chunk)
    return out


def sentence_vectors(passages: Sequence[Passage], embedder: Memo) -> np.ndarray:
    """One row per sentence of ``passages``, in order (``sentences(passage.text)`` of each): the vectors
    retrieval carried (``Passage.sentence_vectors``), the others embedded (through the memo) in one batch."""
    import numpy as np

    carried = [p.sentence_vectors for p in passages]
    split = [sentences(p.text) for p in passages]
    stale = [i for i, v in enumerate(carried) if v is None or len(v) != len(split[i])]
    if stale:
        embedded = embed_sentences([passages[i].text for i in stale], embedder.embed_memo)
        for i, vectors in zip(stale, embedded, strict=True):
            carried[i] = vectors
    return np.concatenate([v for v in carried if v is not None and len(v)])
