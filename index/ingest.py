"""Ingest files into a Chroma collection, idempotently.

A file's chunks carry the sha256 of the file's bytes. Re-ingesting an unchanged file writes nothing (Chroma
grows on identical upserts, so we compare hashes first); a changed file has exactly its old chunks replaced.
Chunk ids are derived from content: ``<file sha256[:16]>:<chunk index>``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from index.chunking import Chunker
from index.embedding import Embedder
from index.loaders import LOADERS, LoadError, load

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection


@dataclass
class IngestSummary:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    chunks_written: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def line(self) -> str:
        return (
            f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, "
            f"deleted {self.deleted}, failed {len(self.failed)} ({self.chunks_written} chunks in "
            f"{self.seconds:.1f}s)"
        )


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in LOADERS)
        else:
            yield path


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Ingester:
    def __init__(self, collection: Collection, embedder: Embedder, chunker: Chunker) -> None:
        self.collection = collection
        self.embedder = embedder
        self.chunker = chunker

    def stored_hash(self, source: str) -> str | None:
        found = self.collection.get(where={"source": source}, limit=1, include=["metadatas"])
        metadatas = found.get("metadatas") or []
        return str(metadatas[0]["file_sha256"]) if metadatas else None

    def ingest(self, paths: Iterable[Path]) -> IngestSummary:
        summary = IngestSummary()
        started = time.perf_counter()
        for path in iter_files(paths):
            try:
                self._ingest_file(path.resolve(), summary)
            except (LoadError, OSError) as exc:
                summary.failed[str(path)] = str(exc)
        summary.seconds = time.perf_counter() - started
        return summary

    def _ingest_file(self, path: Path, summary: IngestSummary) -> None:
        source = str(path)
        digest = file_sha256(path)
        previous = self.stored_hash(source)
        if previous == digest:
            summary.unchanged += 1
            return
        document = load(path)
        chunks = self.chunker.chunk(document.sections)
        if not chunks:
            raise LoadError("empty: no text to index")
        vectors = self.embedder.embed([chunk.text for chunk in chunks])
        now = int(time.time())
        ids = [f"{digest[:16]}:{chunk.index}" for chunk in chunks]
        metadatas = [
            {
                "source": source,
                "title": document.title,
                "headings": " > ".join(chunk.headings),
                "chunk_index": chunk.index,
                "file_sha256": digest,
                "content_sha256": hashlib.sha256(chunk.text.encode()).hexdigest(),
                "ingested_at": now,
                **({"page": chunk.page} if chunk.page is not None else {}),
            }
            for chunk in chunks
        ]
        # Write the new chunks first, then drop the old ones: a crash in between leaves duplicates that
        # the next run cleans up, never a file with no chunks at all.
        self.collection.upsert(
            ids=ids, embeddings=vectors, documents=[c.text for c in chunks], metadatas=metadatas
        )
        if previous is not None:
            self.collection.delete(where={"$and": [{"source": source}, {"file_sha256": {"$ne": digest}}]})
            summary.updated += 1
        else:
            summary.added += 1
        summary.chunks_written += len(chunks)
