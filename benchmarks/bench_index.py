"""Index benchmarks: ingest throughput vs raw encode (baseline and new, one run), the python-doc folder as
a new user would ingest it, unchanged re-ingest. Retrieval latency: ``bench_retrieval_scale.py``.

    .venv/bin/python benchmarks/bench_index.py [--throughput-chunks 1100] [--baseline main]

Corpus: Debian's python3.11-doc HTML (installed with apt-get by this script if missing; falls back to
files generated from the SQuAD sample, and says so). Prints numbers; asserts nothing about speed.

1. Ingest throughput: the full ``Ingester`` (parse, chunk, hash, embed, Chroma writes) on files holding
   about ``--throughput-chunks`` chunks, for the baseline ``index/`` (``git archive <baseline>``) and the
   current one, and raw ``SentenceTransformer.encode`` on exactly the chunk texts stored, each in a fresh
   process, in the order encode, baseline, new, encode. Ratio = ingest chunks/s ÷ mean encode chunks/s.
2. The whole python3.11-doc folder (HTML and ``_sources/*.rst.txt``), baseline and new, with the embedding
   stubbed out (zeros): files, chunks that would be embedded, duplicates skipped, and the time of all the
   rest; the full ingest time is estimated from the measured encode rate.
3. Unchanged re-ingest: a 1,000-file tree is ingested, then ingested again; prints seconds and the number
   of texts the embedder saw on the second run (target 0).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

# This tree, not whichever checkout the venv's editable install points at.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from assistant.service import Penny
from assistant.settings import Settings
from index.loaders import load
from tests.support.index import CountingEmbedder

PYDOC = Path("/usr/share/doc/python3.11/html")
REPO = Path(__file__).resolve().parent.parent
SQUAD = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "squad2-dev-sample.json"


def python_docs() -> list[Path] | None:
    if not PYDOC.is_dir():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "python3.11-doc"]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(install, env=env, capture_output=True)
    if not PYDOC.is_dir():
        return None
    files = sorted(p for p in PYDOC.rglob("*.html") if p.is_file() and not p.is_symlink())
    return [p for p in files if p.name not in ("genindex-all.html",) and not p.name.startswith("genindex")]


def squad_files(folder: Path) -> list[Path]:
    raw = json.loads(SQUAD.read_text())
    paths = []
    for a, article in enumerate(raw["data"]):
        for p, paragraph in enumerate(article["paragraphs"]):
            path = folder / f"squad-{a}-{p}.txt"
            path.write_text(paragraph["context"])
            paths.append(path)
    return paths


def take_chunks(files: list[Path], chunker, target: int) -> tuple[list[Path], list[Path], int]:  # type: ignore[no-untyped-def]
    """Split ``files`` into a prefix holding about ``target`` chunks and the rest (no embedding here)."""
    total = 0
    for i, path in enumerate(files):
        try:
            total += len(chunker.chunk(load(path).sections))
        except Exception:
            continue
        if total >= target:
            return files[: i + 1], files[i + 1 :], total
    return files, [], total


def link_tree(files: list[Path], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for path in files:
        shutil.copyfile(path, folder / f"{len(os.listdir(folder)):05d}-{path.name}")
    return folder


INGEST = r"""
import json, sys, time
from pathlib import Path
src, data, name, folder, stub = sys.argv[1:6]
sys.path.insert(0, src)
import numpy as np
from index.chunking import Chunker
from index.embedding import Embedder
from index.ingest import Ingester
from index.store import get_collection, max_batch_size, open_client

class Stub(Embedder):
    def embed_array(self, texts):
        return np.zeros((len(texts), 384), dtype=np.float32)

embedder = (Stub if stub == "stub" else Embedder)()
embedder.embed(["warm up"]) if stub != "stub" else embedder.count_tokens("warm up")
client = open_client(Path(data))
chunker = Chunker(embedder.count_tokens, max_tokens=min(200, embedder.max_tokens - 2), overlap_tokens=40)
ingester = Ingester(get_collection(client, name), embedder, chunker, write_batch=max_batch_size(client))
try:  # the current tree keeps a persisted BM25 index up to date as part of ingest
    from index.bm25 import Bm25Store
    ingester.bm25_store, ingester.client = Bm25Store(Path(data) / "bm25"), client
except ImportError:
    pass
summary = ingester.ingest([Path(folder)])
print(json.dumps({"files": summary.added, "chunks": summary.chunks_written, "seconds": summary.seconds,
                  "failed": len(summary.failed), "duplicates": len(getattr(summary, "duplicates", {}))}))
"""

ENCODE = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from index.embedding import Embedder
texts = json.load(open(sys.argv[2]))
embedder = Embedder()
embedder.embed(["warm up"])
started = time.perf_counter()
model = embedder.model
model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True, show_progress_bar=False)
print(json.dumps({"chunks": len(texts), "seconds": time.perf_counter() - started}))
"""


def run_json(script: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, cwd="/", check=False
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def baseline_tree(ref: str, folder: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "index"], capture_output=True, check=True
    )
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--throughput-chunks", type=int, default=1_100)
    parser.add_argument("--tree-files", type=int, default=1_000)
    parser.add_argument("--baseline", default="main", help="git ref whose index/ is the baseline")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: 1,2,3")
    args = parser.parse_args()
    skip = set(args.skip.split(","))

    scratch = Path(tempfile.mkdtemp(prefix="penny-bench-index-"))
    print(f"code: {Path(sys.modules['index.loaders'].__file__ or '').parent}")
    penny = Penny(Settings(data_dir=scratch / "data"))
    ingester = penny.ingester("bench")
    files = python_docs()
    if files:
        print(f"corpus: Debian python3.11-doc HTML, {len(files)} files under {PYDOC}")
    else:
        files = squad_files(scratch / "squad")
        print(f"corpus: python3.11-doc unavailable; {len(files)} paragraphs generated from {SQUAD} instead")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start (shared machine)")
    base = baseline_tree(args.baseline, scratch / "baseline")
    print(f"baseline: index/ at {args.baseline}; new: {REPO}")

    # 1. Ingest throughput vs raw encode on the same chunks, baseline and new, one run.
    encode_rate = 0.0
    if "1" not in skip:
        first, _, _ = take_chunks(files, ingester.chunker, args.throughput_chunks)
        tree = link_tree(first, scratch / "tp")
        texts = [c.text for path in first for c in ingester.chunker.chunk(load(path).sections)]
        (scratch / "texts.json").write_text(json.dumps(texts))
        encodes, runs = [], {}
        encodes.append(run_json(ENCODE, str(REPO), str(scratch / "texts.json")))
        runs["baseline"] = run_json(INGEST, str(base), str(scratch / "d-base"), "bench", str(tree), "real")
        runs["new"] = run_json(INGEST, str(REPO), str(scratch / "d-new"), "bench", str(tree), "real")
        encodes.append(run_json(ENCODE, str(REPO), str(scratch / "texts.json")))
        encode_rate = statistics.mean(e["chunks"] / e["seconds"] for e in encodes)
        print(f"\n[1] ingest throughput: {len(first)} files, {len(texts)} chunks")
        rates = " and ".join(f"{e['chunks'] / e['seconds']:.1f}" for e in encodes)
        print(
            f"  raw SentenceTransformer.encode: {encode_rate:8.1f} chunks/s  (mean of {rates}: first, last)"
        )
        for system, run in runs.items():
            rate = run["chunks"] / run["seconds"]
            print(
                f"  ingest {system:<8}: {rate:7.1f} chunks/s ({run['chunks']} chunks, {run['seconds']:.1f} s)"
                f" ratio {rate / encode_rate:.2f}x"
            )
        print("  (target >= 0.95x)")

    # 2. The python-doc folder as a new user ingests it: HTML and reST sources, embedding stubbed.
    if "2" not in skip and files:
        print(f"\n[2] {PYDOC} as given (embedding stubbed: everything else measured)")
        for system, src in (("baseline", base), ("new", REPO)):
            run = run_json(INGEST, str(src), str(scratch / f"doc-{system}"), "pydoc", str(PYDOC), "stub")
            rest = run["seconds"]
            estimate = (
                f"; with embedding ~{(rest + run['chunks'] / encode_rate) / 60:.0f} min at {encode_rate:.0f} "
                "chunks/s"
                if encode_rate
                else ""
            )
            print(
                f"  {system:<8}: {run['files']} files indexed, {run['duplicates']} duplicates skipped, "
                f"{run['failed']} failed, {run['chunks']} chunks; non-embedding work {rest:.1f} s{estimate}"
            )

    # 3. Unchanged re-ingest of a 1k-file tree.
    if "3" not in skip:
        docs = [c.text for path in files[:200] for c in ingester.chunker.chunk(load(path).sections)]
        docs = docs[: args.tree_files]
        tree_dir = scratch / "tree"
        for i, text in enumerate(docs):
            sub = tree_dir / f"d{i % 20:02d}"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"f{i:04d}.txt").write_text(text or "empty")
        tree_ingester = penny.ingester("bench-tree")
        initial = tree_ingester.ingest([tree_dir])
        counting = CountingEmbedder(tree_ingester.embedder)
        tree_ingester.embedder = counting  # type: ignore[assignment]
        again = tree_ingester.ingest([tree_dir])
        print(
            f"\n[3] unchanged re-ingest of a {len(docs)}-file tree ({initial.chunks_written} chunks at first)"
        )
        print(f"  first ingest {initial.seconds:.1f} s; re-ingest {again.seconds:.2f} s: {again.line()}")
        print(f"  texts embedded on re-ingest: {counting.texts}  (target 0)")
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
