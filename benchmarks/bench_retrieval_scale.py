"""Retrieval at scale: p50/p95 per mode and start-up to first answer at 1k / 10k / 100k chunks, against a
baseline revision of ``index/`` measured in the same run.

    .venv/bin/python benchmarks/bench_retrieval_scale.py [--sizes 1000,10000,100000] [--baseline main]

Chunks are synthesised from Debian's python3.11-doc HTML (apt-get installs it if missing): the pages are
split into sentences, a pool of sentences is embedded with the real model, and each synthetic chunk is 4-8
pool sentences with the normalised mean of their vectors as its embedding (embedding 100k real chunks takes
hours on 2 cores). Query embedding is real and included in every latency. The collections are cached under
``--cache`` (default /work/scratch/penny-bench-scale, outside the repo) and reused by later runs.

Each system runs in its own process over the same Chroma directory: the baseline from ``git archive
<baseline> index``, the current tree as is. They answer alternating rounds of the same queries, so load on
this shared machine hits both alike. Start-up = open client and collection + BM25 ready + first hybrid
answer (the embedding model is loaded before, and reported apart). Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PYDOC = Path("/usr/share/doc/python3.11/html")
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")


def synthesise(cache: Path, sizes: list[int], pool_size: int) -> dict[str, Any]:
    """Build (or reuse) one collection per size under ``cache``; returns queries and build notes."""
    sys.path.insert(0, str(REPO))
    import numpy as np

    from index.embedding import Embedder
    from index.loaders import load
    from index.store import bump_revision, get_collection, max_batch_size, open_client

    notes_path = cache / "synthetic.json"
    notes: dict[str, Any] = json.loads(notes_path.read_text()) if notes_path.exists() else {}
    client = open_client(cache / "chroma")
    missing = [n for n in sizes if f"scale-{n}" not in notes.get("built", {})]
    if not missing and notes.get("queries"):
        return notes
    sentences, headings = [], []
    for path in sorted(PYDOC.rglob("*.html")):
        if path.name.startswith("genindex"):
            continue
        try:
            document = load(path)
        except Exception:
            continue
        for section in document.sections:
            headings.extend(section.headings[-1:])
            sentences.extend(s for s in SENTENCE.split(section.text) if 5 <= len(s.split()) <= 60)
    rng = random.Random(20261202)
    pool = rng.sample(sorted(set(sentences)), min(pool_size, len(set(sentences))))
    embedder = Embedder()
    started = time.perf_counter()
    vectors = embedder.embed_array(pool)
    notes["pool"] = {"sentences": len(pool), "embed_s": round(time.perf_counter() - started, 1)}
    notes["queries"] = rng.sample(sorted(set(headings)), 200)
    notes.setdefault("built", {})
    for n in missing:
        started = time.perf_counter()
        collection = get_collection(client, f"scale-{n}")
        batch = max_batch_size(client)
        for start in range(collection.count(), n, batch):
            ids, texts, metas, vecs = [], [], [], []
            for i in range(start, min(n, start + batch)):
                picks = [rng.randrange(len(pool)) for _ in range(rng.randint(4, 8))]
                mean = vectors[picks].mean(axis=0)
                ids.append(f"synthetic:{i}")
                texts.append(" ".join(pool[p] for p in picks))
                metas.append({"source": f"synthetic/page{i // 20}.html", "title": f"page {i // 20}"})
                vecs.append(mean / np.linalg.norm(mean))
            collection.add(ids=ids, documents=texts, metadatas=metas, embeddings=np.vstack(vecs))  # type: ignore[arg-type]
        bump_revision(collection)
        notes["built"][f"scale-{n}"] = {
            "chunks": collection.count(),
            "build_s": round(time.perf_counter() - started, 1),
        }
        notes_path.write_text(json.dumps(notes))
    notes_path.write_text(json.dumps(notes))
    return notes


WORKER = r"""
import json, os, statistics, sys, time
from pathlib import Path
src, chroma, bm25_dir, name = sys.argv[1:5]
sys.path.insert(0, src)
from index.embedding import Embedder
from index.retrieval import Retriever
from index.store import get_collection, open_client
embedder = Embedder()
t0 = time.perf_counter(); embedder.embed(["warm up"]); model_s = time.perf_counter() - t0
queries = json.loads(sys.stdin.readline())
t0 = time.perf_counter()
client = open_client(Path(chroma))
collection = get_collection(client, name, create=False)
extra = {}
try:
    from index.bm25 import Bm25Store
    extra["bm25_store"] = Bm25Store(Path(bm25_dir) / str(collection.id))
except ImportError:
    pass
retriever = Retriever(collection, embedder, top_k=4, client=client, candidates=50, **extra)
retriever.bm25_index()
bm25_s = time.perf_counter() - t0
retriever.search(queries[0])
startup_s = time.perf_counter() - t0
print(json.dumps({"model_s": model_s, "bm25_s": bm25_s, "startup_s": startup_s}), flush=True)
for line in sys.stdin:
    mode, start, end = line.split()
    times = []
    for q in queries[int(start):int(end)]:
        t = time.perf_counter()
        retriever.search(q, mode=mode)
        times.append((time.perf_counter() - t) * 1000)
    print(json.dumps(times), flush=True)
"""


class Worker:
    def __init__(self, src: Path, cache: Path, name: str, queries: list[str]) -> None:
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "ANONYMIZED_TELEMETRY": "False",
        }
        env.pop("PYTHONPATH", None)
        self.process = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(src), str(cache / "chroma"), str(cache / "bm25"), name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd="/",
        )
        self._send(json.dumps(queries))
        self.start = json.loads(self._read())

    def _send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def _read(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("benchmark worker died")
        return line

    def round(self, mode: str, start: int, end: int) -> list[float]:
        self._send(f"{mode} {start} {end}")
        return json.loads(self._read())

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=60)


def baseline_tree(ref: str, cache: Path) -> Path:
    """``index/`` at ``ref``, unpacked beside the cache (the baseline imports only its own package)."""
    target = cache / f"baseline-{ref.replace('/', '_')}"
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "index"], capture_output=True, check=True
    )
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--baseline", default="main", help="git ref whose index/ is the baseline")
    parser.add_argument("--cache", type=Path, default=Path("/work/scratch/penny-bench-scale"))
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per mode per system")
    parser.add_argument("--pool", type=int, default=6000, help="sentences embedded for synthesis")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    args.cache.mkdir(parents=True, exist_ok=True)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start (shared machine)")
    notes = synthesise(args.cache, sizes, args.pool)
    pool = notes["pool"]["sentences"]
    print(f"synthetic chunks from {pool} embedded python-doc sentences; cached in {args.cache}")
    queries = notes["queries"][: args.queries]
    sys.path.insert(0, str(REPO))
    from index.bm25 import Bm25Store
    from index.store import get_collection, open_client, revision

    base = baseline_tree(args.baseline, args.cache)
    print(f"baseline: index/ at {args.baseline}; new: {REPO}\n")
    header = f"{'chunks':>7} {'system':<9} {'start-up s':>10} {'bm25 s':>7}"
    for mode in ("dense", "bm25", "hybrid"):
        header += f" {mode + ' p50':>11} {'p95':>6}"
    print(header + "   (ms, query embedding included; start-up excludes the model load)")
    for n in sizes:
        name = f"scale-{n}"
        client = open_client(args.cache / "chroma")
        collection = get_collection(client, name, create=False)
        store = Bm25Store(args.cache / "bm25" / str(collection.id))
        started = time.perf_counter()
        store.rebuild(collection, revision(client, name))
        rebuild_s = time.perf_counter() - started
        del client, collection
        workers = {
            "baseline": Worker(base, args.cache, name, queries),
            "new": Worker(REPO, args.cache, name, queries),
        }
        times: dict[tuple[str, str], list[float]] = {}
        chunk = max(1, len(queries) // args.rounds)
        for mode in ("dense", "bm25", "hybrid"):
            for start in range(0, len(queries), chunk):
                order = ("baseline", "new") if (start // chunk) % 2 == 0 else ("new", "baseline")
                for system in order:
                    times.setdefault((system, mode), []).extend(
                        workers[system].round(mode, start, start + chunk)
                    )
        for system, worker in workers.items():
            line = f"{n:>7} {system:<9} {worker.start['startup_s']:>10.2f} {worker.start['bm25_s']:>7.2f}"
            for mode in ("dense", "bm25", "hybrid"):
                values = times[(system, mode)]
                line += f" {statistics.median(values):>11.1f} {pct(values, 95):>6.1f}"
            print(line)
            worker.close()
        base_h, new_h = (statistics.median(times[(s, "hybrid")]) for s in ("baseline", "new"))
        startup = workers["baseline"].start["startup_s"] / workers["new"].start["startup_s"]
        print(
            f"{'':>7} ratio     start-up {startup:.1f}x faster, hybrid p50 {base_h / new_h:.1f}x faster; "
            f"BM25 full rebuild (new; at compaction) {rebuild_s:.1f} s; "
            f"model load {workers['new'].start['model_s']:.1f} s"
        )
    print("\ntarget at 100k: hybrid p50 <= 20 ms, p95 <= 40 ms")
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
