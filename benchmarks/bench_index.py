"""Index benchmarks: ingest throughput vs raw encode, retrieval latency at 10k chunks, unchanged re-ingest.

    .venv/bin/python benchmarks/bench_index.py [--chunks 10000] [--throughput-chunks 2000]

Corpus: Debian's python3.11-doc HTML (installed with apt-get by this script if missing; falls back to
files generated from the SQuAD sample, and says so). Prints numbers; asserts nothing about speed.

1. Ingest throughput: the full ``Ingester`` (parse, chunk, hash, embed, Chroma writes) on files holding
   about ``--throughput-chunks`` chunks, then raw ``SentenceTransformer.encode`` on exactly the chunk
   texts that ingestion stored, in the same run. Ratio = ingest chunks/s ÷ encode chunks/s.
2. Retrieval latency: more files are ingested until the collection holds ``--chunks`` chunks; then
   p50/p95 of ``Retriever.search`` (dense, bm25, hybrid) over queries made from chunk headings.
3. Unchanged re-ingest: a 1,000-file tree is ingested, then ingested again; prints seconds and the number
   of texts the embedder saw on the second run (target 0).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from assistant.service import Penny
from assistant.settings import Settings
from index.loaders import load

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.index import CountingEmbedder

PYDOC = Path("/usr/share/doc/python3.11/html")
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


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--throughput-chunks", type=int, default=2_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--tree-files", type=int, default=1_000)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="penny-bench-index-"))
    penny = Penny(Settings(data_dir=scratch / "data"))
    ingester = penny.ingester("bench")
    files = python_docs()
    if files:
        print(f"corpus: Debian python3.11-doc HTML, {len(files)} files under {PYDOC}")
    else:
        files = squad_files(scratch / "squad")
        print(f"corpus: python3.11-doc unavailable; {len(files)} paragraphs generated from {SQUAD} instead")
    load_avg = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load_avg[0]:.1f} at start (shared machine)")
    penny.embedder.embed(["warm up the model"])

    # 1. Ingest throughput vs raw encode on the same chunks.
    first, rest, _ = take_chunks(files, ingester.chunker, args.throughput_chunks)
    tree = link_tree(first, scratch / "tp")
    summary = ingester.ingest([tree])
    ingest_rate = summary.chunks_written / summary.seconds
    texts = [t or "" for t in ingester.collection.get(include=["documents"])["documents"]]
    model = penny.embedder.model
    started = time.perf_counter()
    model.encode(
        texts, batch_size=penny.embedder.batch_size, normalize_embeddings=True, show_progress_bar=False
    )
    encode_rate = len(texts) / (time.perf_counter() - started)
    print("\n[1] ingest throughput")
    print(f"  files {summary.added}, chunks {summary.chunks_written}, failed {len(summary.failed)}")
    print(f"  ingest (parse+chunk+embed+write): {ingest_rate:8.1f} chunks/s  ({summary.seconds:.1f} s)")
    print(f"  raw SentenceTransformer.encode:   {encode_rate:8.1f} chunks/s  (same {len(texts)} chunks)")
    print(f"  ratio ingest/encode: {ingest_rate / encode_rate:.2f}x  (target >= 0.9x)")

    # 2. Retrieval latency at --chunks.
    need = args.chunks - ingester.collection.count()
    if need > 0:
        more, _, _ = take_chunks(rest, ingester.chunker, need)
        grow = ingester.ingest([link_tree(more, scratch / "grow")])
        print(f"\n[2] grew the collection: +{grow.chunks_written} chunks in {grow.seconds:.1f} s")
    count = ingester.collection.count()
    metas = ingester.collection.get(include=["metadatas"])["metadatas"]
    rng = random.Random(7)
    pool = [str(m.get("headings") or m.get("title")) for m in metas if m.get("headings") or m.get("title")]
    queries = [rng.choice(pool).split(" > ")[-1] for _ in range(args.queries)]
    retriever = penny.retriever("bench")
    started = time.perf_counter()
    retriever.bm25_index()
    build_s = time.perf_counter() - started
    print(f"  retrieval over {count} chunks, {len(queries)} queries (k=4); BM25 index build {build_s:.2f} s")
    for mode in ("dense", "bm25", "hybrid"):
        retriever.search(queries[0], mode=mode)  # type: ignore[arg-type]
        times = []
        for query in queries:
            t0 = time.perf_counter()
            retriever.search(query, mode=mode)  # type: ignore[arg-type]
            times.append((time.perf_counter() - t0) * 1000)
        print(f"  {mode:<7} p50 {statistics.median(times):7.1f} ms   p95 {pct(times, 95):7.1f} ms")
    print("  (dense target p50 <= 20 ms)")

    # 3. Unchanged re-ingest of a 1k-file tree.
    docs = ingester.collection.get(include=["documents"], limit=args.tree_files)["documents"]
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
    print(f"\n[3] unchanged re-ingest of a {initial.added}-file tree ({initial.chunks_written} chunks)")
    print(f"  first ingest {initial.seconds:.1f} s; re-ingest {again.seconds:.2f} s: {again.line()}")
    print(f"  texts embedded on re-ingest: {counting.texts}  (target 0)")
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
