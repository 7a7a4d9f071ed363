"""Ingest files into a Chroma collection, idempotently, resumably, with parsing and writes overlapped.

Change detection is by content, never by name or mtime: every chunk carries the sha256 of its file's
bytes and the number of chunks its file has. Before a run we read the collection's manifest (source →
file hash → chunk ids) once, so:

- an unchanged, complete file costs one hash of its bytes: no parsing, no embedding, no write (Chroma grows
  on identical upserts, so skipping is not just an optimisation);
- a file whose chunks are only partly there (a run killed mid-write) counts as unfinished and is redone;
  its chunk ids derive from its content, so rewriting them leaves no duplicates;
- a changed file has its new chunks upserted first and then exactly its old chunk ids deleted, so a crash
  in between leaves extra chunks the next run cleans up, never a file with no chunks at all;
- a document whose normalised text duplicates one already indexed (``index.dedupe``), e.g. a Sphinx page
  and its ``_sources/*.rst.txt``, is skipped and counted; files are taken structured formats first, so the
  HTML is kept rather than the raw reST;
- a file that fails to load (unreadable, encrypted, corrupt, empty) is reported and its existing chunks are
  kept;
- with ``sync=True``, chunks of files that no longer exist under the given roots are deleted.

Chunk ids are ``<sha256(source)[:16]>:<file sha256[:16]>:<chunk index>``. Three stages overlap: a thread
loads and chunks files, the calling thread embeds batches of ``embed_batch_chunks`` chunks (torch uses
every core), and a thread writes each embedded batch to Chroma. The persisted BM25 index (``index.bm25``)
receives the run's additions and deletions at the end. Deleted chunks take their sentence vectors
(``index.sentvec``) with them; with ``sentence_vectors_at_ingest`` new chunks' sentences are embedded here,
else retrieval embeds them the first time it returns the chunk.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from index.bm25 import Bm25Store
from index.chunking import Chunk, Chunker
from index.dedupe import DuplicateIndex, Fingerprint
from index.discovery import Discovered, discover
from index.embedding import Embedder
from index.loaders import LoadError, load
from index.results import FileResult, IngestSummary, StoredFile
from index.sentvec import SentenceVectorStore, embed_sentences
from index.store import batched, bump_revision, iter_records, revision

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection
    from tqdm import tqdm

__all__ = ["Discovered", "FileResult", "IngestSummary", "Ingester", "chunk_id", "discover"]

PLAIN_TEXT = (".txt", ".text")


@dataclass
class _Pending:
    source: str
    digest: str
    title: str
    chunks: list[Chunk]
    previous: StoredFile | None
    fingerprint: Fingerprint


def chunk_id(source: str, digest: str, index: int) -> str:
    return f"{hashlib.sha256(source.encode()).hexdigest()[:16]}:{digest[:16]}:{index}"


Outcome = Callable[[str, FileResult], None]
_DONE = object()


class Ingester:
    def __init__(
        self,
        collection: Collection,
        embedder: Embedder,
        chunker: Chunker,
        *,
        write_batch: int = 1000,
        embed_batch_chunks: int = 1024,
        bm25_store: Bm25Store | None = None,
        client: ClientAPI | None = None,
        duplicate_threshold: float = 0.5,
        sentence_store: SentenceVectorStore | None = None,
        sentence_vectors_at_ingest: bool = False,
    ) -> None:
        self.collection = collection
        self.embedder = embedder
        self.chunker = chunker
        self.write_batch = max(1, write_batch)
        self.embed_batch_chunks = max(1, embed_batch_chunks)
        self.bm25_store = bm25_store
        self.client = client
        self.duplicate_threshold = duplicate_threshold
        self.sentence_store = sentence_store
        self.sentence_vectors_at_ingest = sentence_vectors_at_ingest and sentence_store is not None

    def manifest(self) -> dict[str, StoredFile]:
        """What the collection holds, per source file: content hash(es), chunk ids, text fingerprint."""
        stored: dict[str, StoredFile] = {}
        for pid, _, meta in iter_records(self.collection, include=("metadatas",)):
            entry = stored.setdefault(str(meta.get("source", "")), StoredFile())
            entry.hashes.add(str(meta.get("file_sha256", "")))
            entry.ids.append(pid)
            entry.expected = int(meta.get("chunk_count", 0) or 0)
            if meta.get("fingerprint"):
                entry.fingerprint = Fingerprint.decode(str(meta["fingerprint"]))
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
        files = sorted(found.files, key=lambda p: (p.suffix.lower() in PLAIN_TEXT, str(p)))
        bar = tqdm(total=len(files), unit="file", disable=not progress, dynamic_ncols=True, leave=True)

        def outcome(source: str, result: FileResult) -> None:
            if result.status == "failed":
                summary.failed[source] = result.error or "failed"
            elif result.status == "unchanged":
                summary.unchanged += 1
            elif result.status == "duplicate":
                summary.duplicates[source] = result.duplicate_of or ""
            bar.update(1)
            self._show(bar, summary, started)

        try:
            manifest = self.manifest()
            self._run(
                [(p, str(p)) for p in files],
                manifest,
                summary,
                outcome,
                sync_roots=found.roots if sync else None,
            )
        finally:
            self._show(bar, summary, started)
            bar.close()
        summary.seconds = time.perf_counter() - started
        return summary

    def ingest_files(self, files: Sequence[tuple[Path, str]]) -> list[FileResult]:
        """Ingest each ``(path, source)`` under the name ``source`` rather than its path: uploaded files sit
        in a spool folder, but their document is the name the client gave. One result per file, in order.

        Same rules as :meth:`ingest`: unchanged bytes are skipped, a changed file replaces its old chunks,
        a duplicate text is skipped, and a file that fails to load fails alone, keeping what it had before.
        """
        results: dict[int, FileResult] = {}
        unique: list[tuple[Path, str]] = []
        first: dict[str, int] = {}
        for i, (path, source) in enumerate(files):
            if source in first:  # the same name twice in one upload: the first one wins
                results[i] = FileResult(source, "duplicate", duplicate_of=source)
            else:
                first[source] = i
                unique.append((path, source))
        by_source: dict[str, FileResult] = {}
        self._run(unique, self.manifest(), IngestSummary(), lambda s, r: by_source.__setitem__(s, r))
        for source, i in first.items():
            results[i] = by_source[source]
        return [results[i] for i in range(len(files))]

    def delete_source(self, source: str) -> int:
        """Delete every chunk of one document; the number deleted (0: no such document)."""
        found = self.collection.get(where={"source": source}, include=[])
        ids = list(found["ids"])
        if ids:
            before = self._stamp()
            clean = self.bm25_store.begin() if self.bm25_store else True
            self._delete_ids(ids)
            self._publish(before, [], ids, clean)
        return len(ids)

    def _run(
        self,
        jobs: list[tuple[Path, str]],
        manifest: dict[str, StoredFile],
        summary: IngestSummary,
        outcome: Outcome,
        sync_roots: list[Path] | None = None,
    ) -> None:
        """Prepare (thread) → embed (here) → write (thread); then sync deletions and publish to BM25."""
        before = self._stamp()
        ready: queue.Queue[object] = queue.Queue(maxsize=2)
        embedded: queue.Queue[object] = queue.Queue(maxsize=1)
        stop = threading.Event()
        errors: list[BaseException] = []
        log = _WriteLog()
        seen = DuplicateIndex(self.duplicate_threshold)
        seen.extend(
            (s, f.fingerprint) for s, f in manifest.items() if f.fingerprint is not None and f.complete
        )

        def prepare() -> None:
            pending: list[_Pending] = []
            try:
                for path, source in jobs:
                    if stop.is_set():
                        return
                    try:
                        item = self._prepare(path, source, manifest.get(source))
                    except LoadError as exc:
                        outcome(source, FileResult(source, "failed", error=str(exc)))
                        continue
                    if item is None:
                        outcome(source, FileResult(source, "unchanged"))
                        continue
                    original = seen.duplicate_of(source, item.fingerprint)
                    if original is not None:
                        outcome(source, FileResult(source, "duplicate", duplicate_of=original))
                        continue
                    seen.add(source, item.fingerprint)
                    outcome(source, FileResult(source, "indexed", chunks=len(item.chunks)))
                    pending.append(item)
                    if sum(len(p.chunks) for p in pending) >= self.embed_batch_chunks:
                        ready.put(pending)
                        pending = []
                if pending:
                    ready.put(pending)
            except BaseException as exc:  # surfaced by the calling thread
                errors.append(exc)
            finally:
                ready.put(_DONE)

        def write() -> None:
            try:
                while (batch := embedded.get()) is not _DONE:
                    if not errors:
                        self._write(*batch, summary, log)  # type: ignore[misc]
            except BaseException as exc:
                errors.append(exc)
                stop.set()
                while embedded.get() is not _DONE:  # let the embedding loop finish putting
                    pass

        preparer = threading.Thread(target=prepare, name="penny-ingest-prepare", daemon=True)
        writer = threading.Thread(target=write, name="penny-ingest-write", daemon=True)
        preparer.start()
        writer.start()
        try:
            while (pending := ready.get()) is not _DONE:
                if errors or stop.is_set():
                    continue  # drain so the preparer can finish
                texts = [chunk.text for item in pending for chunk in item.chunks]  # type: ignore[attr-defined]
                # Sentence vectors now, or retrieval embeds them the first time it returns a chunk.
                at_ingest = self.sentence_vectors_at_ingest
                units = embed_sentences(texts, self.embedder.embed_array) if at_ingest else None
                embedded.put((pending, texts, self.embedder.embed_array(texts), units))
        except BaseException:
            stop.set()
            while ready.get() is not _DONE:
                pass
            raise
        finally:
            embedded.put(_DONE)
            writer.join()
            preparer.join()
            if sync_roots is not None and not errors:
                self._delete_vanished(manifest, sync_roots, summary, log)
            if log.added or log.deleted:
                self._publish(before, log.added, log.deleted, log.clean)
        if errors:
            raise errors[0]

    def _prepare(self, path: Path, source: str, previous: StoredFile | None) -> _Pending | None:
        """Chunks of a new, changed or unfinished file; None when its stored chunks are complete and match."""
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise LoadError(f"cannot read: {exc.strerror or exc}") from exc
        if previous is not None and previous.hashes == {digest} and previous.complete:
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
        fingerprint = Fingerprint.of("\n".join(section.text for section in document.sections))
        return _Pending(source, digest, document.title, chunks, previous, fingerprint)

    def _write(
        self,
        pending: list[_Pending],
        texts: list[str],
        vectors: Any,
        units: list[Any] | None,
        summary: IngestSummary,
        log: _WriteLog,
    ) -> None:
        if log.clean is None:
            log.clean = self.bm25_store.begin() if self.bm25_store else True
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
                        **({"fingerprint": item.fingerprint.encode()} if chunk.index == 0 else {}),
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
        if units is not None and self.sentence_store is not None:
            self.sentence_store.write(zip(ids, texts, units, strict=True))
        log.added.extend(zip(ids, texts, strict=True))
        new_ids = set(ids)
        for item in pending:
            if item.previous is None:
                summary.added += 1
            else:
                stale = [pid for pid in item.previous.ids if pid not in new_ids]
                self._delete_ids(stale)
                log.deleted.extend(stale)
                summary.chunks_deleted += len(stale)
                summary.updated += 1
        summary.chunks_written += len(ids)

    def _delete_vanished(
        self, manifest: dict[str, StoredFile], roots: list[Path], summary: IngestSummary, log: _WriteLog
    ) -> None:
        """Delete chunks of files under ``roots`` that no longer exist on disk."""
        for source, stored in manifest.items():
            path = Path(source)
            if not any(path == root or path.is_relative_to(root) for root in _resolved(roots)):
                continue
            if path.exists():
                continue
            if log.clean is None:
                log.clean = self.bm25_store.begin() if self.bm25_store else True
            self._delete_ids(stored.ids)
            log.deleted.extend(stored.ids)
            summary.deleted += 1
            summary.chunks_deleted += len(stored.ids)

    def _delete_ids(self, ids: Sequence[str]) -> None:
        for batch in batched(list(ids), self.write_batch):
            self.collection.delete(ids=list(batch))
            if self.sentence_store is not None:  # no row outlives its chunk
                self.sentence_store.delete(list(batch))

    def _stamp(self) -> str:
        if self.client is not None:
            return revision(self.client, self.collection.name)
        return ""

    def _publish(
        self, before: str, added: list[tuple[str, str]], deleted: list[str], clean: bool | None
    ) -> None:
        """New revision stamp, then the same change applied to the persisted BM25 index."""
        after = bump_revision(self.collection)
        if self.bm25_store is not None:
            self.bm25_store.apply(self.collection, before, after, added, deleted, clean=bool(clean))

    @staticmethod
    def _show(bar: tqdm, summary: IngestSummary, started: float) -> None:
        elapsed = time.perf_counter() - started
        rate = summary.chunks_written / elapsed if elapsed > 0 else 0.0
        bar.set_postfix(
            chunks=summary.chunks_written, chunks_s=f"{rate:.0f}", failed=len(summary.failed), refresh=False
        )


@dataclass
class _WriteLog:
    """What a run changed, for the BM25 index: (id, text) written, ids deleted; ``clean`` is set at the
    first write (False when an earlier run died mid-write, so BM25 must be rebuilt)."""

    added: list[tuple[str, str]] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    clean: bool | None = None


def _resolved(roots: list[Path]) -> list[Path]:
    return [root.resolve() if root.exists() else root for root in roots]
