"""Ingest files into a Chroma collection, idempotently.

Change detection is by content, never by name or mtime: every chunk carries the sha256 of its file's
bytes. Before a run we read the collection's manifest (source → file hash → chunk ids) once, so:

- an unchanged file costs one hash of its bytes: no parsing, no embedding, no write (Chroma grows on
  identical upserts, so skipping is not just an optimisation);
- a changed file has its new chunks upserted first and then exactly its old chunk ids deleted, so a crash
  in between leaves extra chunks the next run cleans up, never a file with no chunks at all;
- a file that fails to load (unreadable, encrypted, corrupt, empty) is reported and its existing chunks are
  kept;
- with ``sync=True``, chunks of files that no longer exist under the given roots are deleted.

Chunk ids are ``<sha256(source)[:16]>:<file sha256[:16]>:<chunk index>``: derived from the content, and
distinct for two identical files at different paths. Chunks from many files are embedded together in
large batches (the embedder sorts by length and pads less), and writes go to Chroma in batches within its
``max_batch_size``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from index.chunking import Chunk, Chunker
from index.embedding import Embedder
from index.loaders import LOADERS, LoadError, load
from index.store import batched, bump_revision, iter_records

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection
    from tqdm import tqdm


@dataclass
class IngestSummary:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    chunks_written: int = 0
    chunks_deleted: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def chunks_per_second(self) -> float:
        return self.chunks_written / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, "
            f"deleted {self.deleted}, failed {len(self.failed)} ({self.chunks_written} chunks written, "
            f"{self.chunks_deleted} removed in {self.seconds:.1f}s)"
        )


FileStatus = Literal["indexed", "unchanged", "duplicate", "failed"]


@dataclass
class FileResult:
    """What became of one named file: ``chunks`` written when indexed, ``error`` when it failed."""

    source: str
    status: FileStatus
    chunks: int = 0
    error: str | None = None


@dataclass
class Discovered:
    files: list[Path]
    failed: dict[str, str]
    roots: list[Path]


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    """True if a pattern matches the relative path or any trailing part of it (``drafts/*`` at any depth)."""
    parts = relative.split("/")
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(tail, pattern) for pattern in patterns for tail in tails)


def discover(paths: Iterable[Path], include: Sequence[str] = (), exclude: Sequence[str] = ()) -> Discovered:
    """Supported files under ``paths`` (recursively), filtered by shell-style globs.

    A glob matches a file's path relative to the folder it was found under, or any trailing part of that
    path (so ``*.md`` and ``drafts/*`` match at any depth); ``*`` crosses folders, so ``--exclude
    'drafts/*'`` drops everything below any ``drafts/`` folder. Broken symbolic links
    are reported as failures rather than silently skipped.
    """
    files: dict[Path, None] = {}
    failed: dict[str, str] = {}
    roots: list[Path] = []
    for given in paths:
        root = Path(given).absolute()
        roots.append(root)
        if root.is_dir():
            candidates = sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())
            for path in candidates:
                relative = path.relative_to(root).as_posix()
                if path.suffix.lower() not in LOADERS:
                    continue
                if include and not _matches(relative, include):
                    continue
                if exclude and _matches(relative, exclude):
                    continue
                if not path.exists():
                    failed[str(path)] = "cannot read: broken symbolic link"
                    continue
                files[path.resolve()] = None
        elif root.exists() or root.is_symlink():
            if exclude and _matches(root.name, exclude):
                continue
            if not root.exists():
                failed[str(root)] = "cannot read: broken symbolic link"
            elif root.suffix.lower() not in LOADERS:
                failed[str(root)] = f"unsupported file type {root.suffix or '(none)'}"
            else:
                files[root.resolve()] = None
        else:
            failed[str(root)] = "cannot read: no such file or directory"
    return Discovered(files=list(files), failed=failed, roots=roots)


@dataclass
class StoredFile:
    hashes: set[str] = field(default_factory=set)
    ids: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    source: str
    digest: str
    title: str
    chunks: list[Chunk]
    previous: StoredFile | None


def chunk_id(source: str, digest: str, index: int) -> str:
    return f"{hashlib.sha256(source.encode()).hexdigest()[:16]}:{digest[:16]}:{index}"


class Ingester:
    def __init__(
        self,
        collection: Collection,
        embedder: Embedder,
        chunker: Chunker,
        *,
        write_batch: int = 1000,
        embed_batch_chunks: int = 1024,
    ) -> None:
        self.collection = collection
        self.embedder = embedder
        self.chunker = chunker
        self.write_batch = max(1, write_batch)
        self.embed_batch_chunks = max(1, embed_batch_chunks)

    def manifest(self) -> dict[str, StoredFile]:
        """What the collection holds, per source file: its content hash(es) and chunk ids."""
        stored: dict[str, StoredFile] = {}
        for pid, _, meta in iter_records(self.collection, include=("metadatas",)):
            entry = stored.setdefault(str(meta.get("source", "")), StoredFile())
            entry.hashes.add(str(meta.get("file_sha256", "")))
            entry.ids.append(pid)
        return stored

    def ingest(
        self,
        paths: Iterable[Path],
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        sync: bool = False,
        progress: bool = False,
    ) -> IngestSummary:
        from tqdm import tqdm

        started = time.perf_counter()
        summary = IngestSummary()
        found = discover(paths, include, exclude)
        summary.failed.update(found.failed)
        manifest = self.manifest()
        pending: list[_Pending] = []
        wrote = False
        bar = tqdm(total=len(found.files), unit="file", disable=not progress, dynamic_ncols=True, leave=True)
        try:
            for path in found.files:
                try:
                    item = self._prepare(path, str(path), manifest.get(str(path)))
                except LoadError as exc:
                    summary.failed[str(path)] = str(exc)
                    item = None
                if item is None:
                    if str(path) not in summary.failed:
                        summary.unchanged += 1
                else:
                    pending.append(item)
                    if sum(len(p.chunks) for p in pending) >= self.embed_batch_chunks:
                        self._flush(pending, summary, bar)
                        wrote = True
                bar.update(1)
                self._show(bar, summary, started)
            if pending:
                self._flush(pending, summary, bar)
                wrote = True
            if sync:
                wrote = self._delete_vanished(manifest, found.roots, summary) or wrote
        finally:
            if wrote:
                bump_revision(self.collection)
            self._show(bar, summary, started)
            bar.close()
        summary.seconds = time.perf_counter() - started
        return summary

    def ingest_files(self, files: Sequence[tuple[Path, str]]) -> list[FileResult]:
        """Ingest each ``(path, source)`` under the name ``source`` rather than its path: uploaded files sit
        in a spool folder, but their document is the name the client gave. One result per file, in order.

        Same rules as :meth:`ingest`: unchanged bytes are skipped, a changed file replaces its old chunks,
        and a file that fails to load fails alone, keeping whatever it had indexed before.
        """
        manifest = self.manifest()
        results: list[FileResult] = []
        pending: list[_Pending] = []
        summary = IngestSummary()
        seen: set[str] = set()
        try:
            for path, source in files:
                if source in seen:  # the same name twice in one upload: the first one wins
                    results.append(FileResult(source, "duplicate"))
                    continue
                seen.add(source)
                try:
                    item = self._prepare(path, source, manifest.get(source))
                except LoadError as exc:
                    results.append(FileResult(source, "failed", error=str(exc)))
                    continue
                if item is None:
                    results.append(FileResult(source, "unchanged"))
                    continue
                results.append(FileResult(source, "indexed", chunks=len(item.chunks)))
                pending.append(item)
                if sum(len(p.chunks) for p in pending) >= self.embed_batch_chunks:
                    self._flush(pending, summary, None)
            if pending:
                self._flush(pending, summary, None)
        finally:
            if summary.chunks_written:
                bump_revision(self.collection)
        return results

    def delete_source(self, source: str) -> int:
        """Delete every chunk of one document; the number deleted (0: no such document)."""
        found = self.collection.get(where={"source": source}, include=[])
        ids = list(found["ids"])
        if ids:
            self._delete_ids(ids)
            bump_revision(self.collection)
        return len(ids)

    def _prepare(self, path: Path, source: str, previous: StoredFile | None) -> _Pending | None:
        """Chunks of a new or changed file, or None when the stored chunks already match its bytes."""
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise LoadError(f"cannot read: {exc.strerror or exc}") from exc
        if previous is not None and previous.hashes == {digest}:
            return None
        try:
            document = load(path)
            chunks = self.chunker.chunk(document.sections)
        except LoadError:
            raise
        except Exception as exc:  # a parser bug on one odd file must not abort the whole run
            raise LoadError(f"could not parse: {type(exc).__name__}: {exc}") from exc
        if not chunks:
            raise LoadError("empty: no text to index")
        return _Pending(source, digest, document.title, chunks, previous)

    def _flush(self, pending: list[_Pending], summary: IngestSummary, bar: tqdm | None) -> None:
        texts = [chunk.text for item in pending for chunk in item.chunks]
        vectors = self.embedder.embed_array(texts)
        now = int(time.time())
        ids: list[str] = []
        metadatas: list[dict[str, Any]] = []
        for item in pending:
            for chunk in item.chunks:
                ids.append(chunk_id(item.source, item.digest, chunk.index))
                metadatas.append(
                    {
                        "source": item.source,
                        "title": item.title,
                        "headings": " > ".join(chunk.headings),
                        "chunk_index": chunk.index,
                        "chunk_count": len(item.chunks),
                        "tokens": chunk.tokens,
                        "file_sha256": item.digest,
                        "content_sha256": hashlib.sha256(chunk.text.encode()).hexdigest(),
                        "ingested_at": now,
                        **({"page": chunk.page} if chunk.page is not None else {}),
                    }
                )
        for start in range(0, len(ids), self.write_batch):
            end = start + self.write_batch
            self.collection.upsert(
                ids=ids[start:end],
                embeddings=vectors[start:end],
                documents=texts[start:end],
                metadatas=metadatas[start:end],  # type: ignore[arg-type]
            )
        new_ids = set(ids)
        for item in pending:
            if item.previous is None:
                summary.added += 1
            else:
                stale = [pid for pid in item.previous.ids if pid not in new_ids]
                self._delete_ids(stale)
                summary.chunks_deleted += len(stale)
                summary.updated += 1
        summary.chunks_written += len(ids)
        pending.clear()

    def _delete_vanished(
        self, manifest: dict[str, StoredFile], roots: list[Path], summary: IngestSummary
    ) -> bool:
        """Delete chunks of files under ``roots`` that no longer exist on disk."""
        deleted = False
        for source, stored in manifest.items():
            path = Path(source)
            if not any(path == root or path.is_relative_to(root) for root in _resolved(roots)):
                continue
            if path.exists():
                continue
            self._delete_ids(stored.ids)
            summary.deleted += 1
            summary.chunks_deleted += len(stored.ids)
            deleted = True
        return deleted

    def _delete_ids(self, ids: Sequence[str]) -> None:
        for batch in batched(list(ids), self.write_batch):
            self.collection.delete(ids=list(batch))

    @staticmethod
    def _show(bar: tqdm, summary: IngestSummary, started: float) -> None:
        elapsed = time.perf_counter() - started
        rate = summary.chunks_written / elapsed if elapsed > 0 else 0.0
        bar.set_postfix(
            chunks=summary.chunks_written, chunks_s=f"{rate:.0f}", failed=len(summary.failed), refresh=False
        )


def _resolved(roots: list[Path]) -> list[Path]:
    return [root.resolve() if root.exists() else root for root in roots]
