"""The BM25 index is saved by ingest, loaded (not rebuilt) by other processes, and patched incrementally."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from assistant.service import Penny
from index.bm25 import STATE, Bm25Store
from index.store import bump_revision, revision
from tests.conftest import REPO

# Runs in a fresh process: BM25 top sources for each query, with rebuilding from Chroma forbidden.
PROBE = """
import json, sys
from assistant.service import Penny
from assistant.settings import Settings
from index.bm25 import Bm25Store

def refuse(*args, **kwargs):
    raise AssertionError("rebuilt BM25 instead of loading it")

Bm25Store.rebuild = refuse
retriever = Penny(Settings(data_dir=sys.argv[1])).retriever()
print(json.dumps({q: [p.source.rsplit("/", 1)[-1] for p in retriever.search(q, k=3, mode="bm25")]
                  for q in sys.argv[2:]}))
"""


def probe(settings, *queries: str) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(settings.data_dir), *queries],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "PENNY_CONFIG": "/nonexistent.toml"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def write(root: Path, name: str, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(text)
    return root / name


def state(penny: Penny) -> dict:  # type: ignore[type-arg]
    store = penny.bm25_store(penny.ingester().collection)
    assert store.folder is not None
    return json.loads((store.folder / STATE).read_text())


def test_saved_index_is_loaded_elsewhere_and_follows_ingest_and_deletion(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    write(docs, "pager.md", "# Pager\n\nOn-call engineers carry the pager; codeword aardvark.")
    write(docs, "leave.md", "# Leave\n\nEmployees accrue vacation days; codeword bumblebee.")
    penny = Penny(settings)
    ingester = penny.ingester()
    assert ingester.ingest([docs]).added == 2
    saved = state(penny)
    assert saved["stamp"] == revision(penny.chroma, ingester.collection.name)
    assert saved["main_dir"] and not saved["delta_ids"]
    assert probe(settings, "aardvark", "bumblebee") == {"aardvark": ["pager.md"], "bumblebee": ["leave.md"]}

    # An incremental ingest lands in the delta; main is kept, and a new process sees the new file.
    write(docs, "errors.txt", "Error code ZX-4471 means the queue is full; codeword chinchilla.")
    assert ingester.ingest([docs]).added == 1
    patched = state(penny)
    assert patched["main_dir"] == saved["main_dir"] and len(patched["delta_ids"]) == 1
    assert probe(settings, "chinchilla")["chinchilla"] == ["errors.txt"]

    # Deleting a document (and changing another) is honoured without a rebuild.
    assert ingester.delete_source(str((docs / "pager.md").resolve())) == 1
    (docs / "pager.md").unlink()
    write(docs, "leave.md", "# Leave\n\nEmployees accrue holidays now; codeword dromedary.")
    changed = ingester.ingest([docs])
    assert (changed.updated, changed.chunks_deleted) == (1, 1)
    after = state(penny)
    assert after["main_dir"] == saved["main_dir"] and len(after["deleted"]) == 2
    found = probe(settings, "aardvark", "bumblebee", "dromedary", "chinchilla")
    assert found == {"aardvark": [], "bumblebee": [], "dromedary": ["leave.md"], "chinchilla": ["errors.txt"]}


def test_stale_state_is_rebuilt_and_a_large_delta_compacted(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    for i in range(4):
        write(docs, f"note{i}.txt", f"Note {i} about topic{i}; shared words here.")
    penny = Penny(settings)
    ingester = penny.ingester()
    ingester.ingest([docs])
    store: Bm25Store = penny.bm25_store(ingester.collection)
    first = state(penny)["main_dir"]

    # A write the state never saw (another writer, or a crash before it was updated): rebuilt on read.
    stamp = bump_revision(ingester.collection)
    index = penny.retriever().bm25_index()
    assert index.stamp == stamp and len(index) == 4 and state(penny)["main_dir"] != first

    # A delta larger than the compaction bound folds into a new main index.
    ingester.bm25_store = store = Bm25Store(store.folder, compact_fraction=0.0, compact_min=1)
    main = state(penny)["main_dir"]
    write(docs, "note8.txt", "Note eight, topic8.")
    write(docs, "note9.txt", "Note nine, topic9.")
    ingester.ingest([docs])
    compacted = state(penny)
    assert compacted["main_dir"] != main and compacted["delta_ids"] == [] and compacted["deleted"] == []
    assert [p.source.rsplit("/", 1)[-1] for p in penny.retriever().search("topic9", k=1, mode="bm25")] == [
        "note9.txt"
    ]
