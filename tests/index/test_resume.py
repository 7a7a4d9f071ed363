"""An ingest killed with SIGKILL mid-write resumes: the rerun redoes only unfinished files, leaves no
duplicate or orphan chunks, and the persisted BM25 index ends up holding every chunk."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from assistant.service import Penny
from index.ingest import chunk_id
from tests.conftest import REPO
from tests.support.index import CountingEmbedder

# Ingest in small batches and SIGKILL this process during the 4th Chroma write, after it has written.
KILLED_INGEST = """
import os, signal, sys
from pathlib import Path
from assistant.service import Penny
from assistant.settings import Settings

ingester = Penny(Settings(data_dir=sys.argv[1], index={"embed_batch_chunks": 8})).ingester()
ingester.write_batch = 2
real_upsert, calls = ingester.collection.upsert, []

def upsert(**kwargs):
    real_upsert(**kwargs)
    calls.append(1)
    if len(calls) == 4:
        os.kill(os.getpid(), signal.SIGKILL)

ingester.collection.upsert = upsert
ingester.ingest([Path(sys.argv[2])])
"""


def write_corpus(root: Path, files: int) -> None:
    root.mkdir(parents=True)
    for i in range(files):
        paragraphs = [
            f"Runbook {i} step {j}: restart service{i} with restart-{i}-{j}. "
            + " ".join(f"w{i}x{j}x{w}" for w in range(25))
            for j in range(3)
        ]
        (root / f"runbook-{i:02d}.txt").write_text(f"Marker token quokka{i}.\n\n" + "\n\n".join(paragraphs))


def test_sigkilled_ingest_resumes_without_duplicates_or_orphans(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corpus = tmp_path / "corpus"
    write_corpus(corpus, files=10)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_INGEST, str(settings.data_dir), str(corpus)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]

    penny = Penny(settings)
    ingester = penny.ingester()
    before = ingester.manifest()
    complete = {Path(s).name for s, f in before.items() if f.complete}
    partial = {Path(s).name for s, f in before.items() if not f.complete}
    assert complete and partial, (complete, partial)  # the kill did land mid-run, mid-file
    assert len(complete) + len(partial) < 10

    counting = CountingEmbedder(ingester.embedder)
    ingester.embedder = counting  # type: ignore[assignment]
    resumed = ingester.ingest([corpus])
    assert resumed.ok and resumed.unchanged == len(complete)
    assert resumed.updated == len(partial)  # the half-written file is redone over its partial chunks
    assert resumed.added == 10 - len(complete) - len(partial)  # and the never-started ones; nothing else
    assert counting.texts == resumed.chunks_written

    got = ingester.collection.get(include=["metadatas"])
    assert len(got["ids"]) == len(set(got["ids"]))
    per_source = Counter(str(m["source"]) for m in got["metadatas"])
    assert len(per_source) == 10
    for meta, pid in zip(got["metadatas"], got["ids"], strict=True):
        source = str(meta["source"])
        digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()
        assert meta["file_sha256"] == digest  # no orphan from an older or half-written version
        assert pid == chunk_id(source, digest, int(meta["chunk_index"]))
        assert per_source[source] == meta["chunk_count"]  # every chunk of every file, once

    # The killed run left BM25 behind its writes; the resume rebuilt it, so files finished before the kill
    # are found lexically too.
    retriever = penny.retriever()
    for i in range(10):
        [top] = retriever.search(f"quokka{i}", k=1, mode="bm25")
        assert Path(top.source).name == f"runbook-{i:02d}.txt"
    assert len(retriever.bm25_index()) == ingester.collection.count()
