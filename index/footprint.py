"""How many bytes of disk each collection's index takes, as far as files can be attributed to it.

A collection's own files are counted whole: its Chroma segment folders (the HNSW vector index, named by
segment id under the Chroma directory), its BM25 state (``bm25/<collection id>/``) and its sentence vectors
(``sentvec/<collection id>.sqlite`` and its WAL). Chroma keeps every collection's documents, metadata,
full-text index and write log in one shared ``chroma.sqlite3``; that file (with its WAL) is split between
collections in proportion to their records, the only attribution its layout allows without reading its
pages. Chroma's own overhead with no records in it is attributed to no one.

Read-only, and without a Chroma client: the SQLite file is opened with ``mode=ro``, so this may run beside
a ``penny serve`` that holds the index (a second ``PersistentClient`` there would not be safe).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

CHROMA_DB = "chroma.sqlite3"


class FootprintUnavailable(RuntimeError):
    """The index's files are not on this machine (a Chroma server) or not in a layout this reads."""


@dataclass(frozen=True)
class Footprint:
    """One collection's bytes on disk: ``own`` files counted whole, ``shared`` its part of chroma.sqlite3."""

    collection: str
    collection_id: str
    records: int
    own_bytes: int
    shared_bytes: int

    @property
    def bytes(self) -> int:
        return self.own_bytes + self.shared_bytes


def tree_bytes(path: Path) -> int:
    """Bytes of a file, or of every file under a folder (0 when absent)."""
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _with_wal(path: Path) -> int:
    return sum(tree_bytes(Path(f"{path}{suffix}")) for suffix in ("", "-wal", "-shm"))


def measure(chroma_path: Path, bm25_path: Path, sentvec_path: Path) -> dict[str, Footprint]:
    """Every collection of the Chroma directory ``chroma_path`` and its footprint, by name."""
    database = chroma_path / CHROMA_DB
    if not database.is_file():
        return {}
    try:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
        try:
            named = conn.execute("SELECT id, name FROM collections").fetchall()
            segments = conn.execute("SELECT id, collection FROM segments").fetchall()
            counts = dict(
                conn.execute(
                    "SELECT s.collection, COUNT(*) FROM embeddings e JOIN segments s ON e.segment_id = s.id "
                    "GROUP BY s.collection"
                ).fetchall()
            )
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise FootprintUnavailable(f"cannot read Chroma's catalogue in {database}: {exc}") from exc
    shared = _with_wal(database)
    records = sum(counts.values())
    found = {}
    for collection_id, name in named:
        own = sum(tree_bytes(chroma_path / str(sid)) for sid, owner in segments if owner == collection_id)
        own += tree_bytes(bm25_path / str(collection_id))
        own += _with_wal(sentvec_path / f"{collection_id}.sqlite")
        mine = int(counts.get(collection_id, 0))
        found[str(name)] = Footprint(
            collection=str(name),
            collection_id=str(collection_id),
            records=mine,
            own_bytes=own,
            shared_bytes=shared * mine // records if records else 0,
        )
    return found
