"""Worker-pool throughput and memory, and the service-time sample the simulator replays.

    .venv/bin/python benchmarks/bench_pool.py                      # answers/min, 1/2/4 clients x 1/2 workers
    .venv/bin/python benchmarks/bench_pool.py --model smollm2-135m # quicker, on the test model
    .venv/bin/python benchmarks/bench_pool.py --measure-service 40 \\
        --out assistant/data/traces/service_times.csv              # refresh the simulator's sample

Requests are grounded prompts (two SQuAD passages from tests/data + a question), greedy, through
``PoolBackend`` exactly as the cascade calls it. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from assistant.answering.prompt.grounded import grounded_messages  # noqa: E402
from assistant.local.pool import PoolBackend, WorkerPool, WorkerState  # noqa: E402
from assistant.local.registry import ModelRegistry  # noqa: E402
from assistant.settings import PoolSettings, Settings  # noqa: E402
from index.retrieval import Passage  # noqa: E402


def prompts(questions: int | None = 4, shift: int = 1) -> list[list[dict[str, str]]]:
    """Grounded prompts shaped like the cascade's: numbered passages, then the question (``questions``
    questions of each paragraph, None: all; the second passage is the paragraph ``shift`` places on).

    Interleaved across paragraphs, so consecutive requests never share their passages: llama.cpp reuses
    the KV cache of a shared prompt prefix, which would flatter whichever run happens to repeat one.
    """
    data = json.loads((REPO / "tests/data/squad2-mini.json").read_text())
    paragraphs = [p for article in data["data"] for p in article["paragraphs"]]
    per_paragraph = []
    for i, paragraph in enumerate(paragraphs):
        other = paragraphs[(i + shift) % len(paragraphs)]
        passages = [
            Passage(f"p{i}", "squad", paragraph["context"], 0.8, {"title": "Normans"}),
            Passage(f"p{i + shift}", "squad", other["context"], 0.5, {"title": "Normans"}),
        ]
        per_paragraph.append(
            [grounded_messages(qa["question"], passages) for qa in paragraph["qas"][:questions]]
        )
    return [m for group in itertools.zip_longest(*per_paragraph) for m in group if m is not None]


def run_load(
    backend: PoolBackend, messages: list, clients: int, requests: int, max_tokens: int, offset: int = 0
) -> float:
    """Answers per minute with ``clients`` concurrent callers sending ``requests`` in total, using prompts
    ``offset``, ``offset + 1``, ... so that runs do not replay each other's prompts."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(
            pool.map(
                lambda i: backend.chat(messages[(offset + i) % len(messages)], max_tokens), range(requests)
            )
        )
    return requests / (time.perf_counter() - started) * 60


def fixed_pool(model_path: Path, workers: int, threads: int) -> WorkerPool:
    settings = PoolSettings(
        min_workers=workers, max_workers=workers, threads_per_worker=threads, request_deadline_s=900
    )
    pool = WorkerPool(model_path, settings, n_ctx=2048).start()
    pool.wait_ready(workers, timeout_s=300)
    return pool


def throughput(model_path: Path, args: argparse.Namespace) -> None:
    messages = prompts()
    print(f"model {model_path.name}, {args.threads} thread(s)/worker, max_tokens {args.max_tokens}")
    print(f"{'workers':>7} {'clients':>7} {'requests':>8} {'answers/min':>12}")
    memory: dict[int, list[int]] = {}
    for workers in (1, 2):
        pool = fixed_pool(model_path, workers, args.threads)
        try:
            backend = PoolBackend(pool)
            backend.chat(messages[0], args.max_tokens)  # warm the prompt path once
            offset = 1
            for clients in (1, 2, 4):
                requests = max(args.requests, clients * 2)
                rate = run_load(backend, messages, clients, requests, args.max_tokens, offset)
                offset += requests
                print(f"{workers:>7} {clients:>7} {requests:>8} {rate:>12.1f}", flush=True)
            pool.tick()
            memory[workers] = [w.rss_bytes for w in pool.workers(WorkerState.READY)]
            cold = [w.cold_start_s for w in pool.workers(WorkerState.READY)]
            print(f"cold start (spawn to ready): {', '.join(f'{c:.2f} s' for c in cold if c)}")
        finally:
            pool.stop()
    for workers, rss in memory.items():
        per = ", ".join(f"{r / 2**20:.0f} MiB" for r in rss)
        print(f"memory with {workers} worker(s): {per} (total {sum(rss) / 2**20:.0f} MiB)")


def measure_service(model_path: Path, args: argparse.Namespace) -> None:
    """One worker, one client: service time is all there is, which is what the simulator needs."""
    messages = prompts()
    pool = fixed_pool(model_path, 1, args.threads)
    rows = []
    try:
        backend = PoolBackend(pool)
        backend.chat(messages[0], args.max_tokens)
        for i in range(args.measure_service):
            started = time.perf_counter()
            generation = backend.chat(messages[i % len(messages)], args.max_tokens)
            wall = time.perf_counter() - started
            rows.append((round(wall, 3), generation.prompt_tokens, generation.completion_tokens))
            print(
                f"{i + 1:>3} {wall:6.2f} s  prompt {generation.prompt_tokens}  "
                f"completion {generation.completion_tokens}",
                flush=True,
            )
        cold = pool.workers(WorkerState.READY)[0].cold_start_s
    finally:
        pool.stop()
    with args.out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["service_s", "prompt_tokens", "completion_tokens"])
        writer.writerows(rows)
    meta = {
        "model": model_path.stem,
        "cold_start_s": round(cold or 0.0, 3),
        "threads_per_worker": args.threads,
        "max_tokens": args.max_tokens,
        "command": f"benchmarks/bench_pool.py --measure-service {args.measure_service} --model {args.model}",
    }
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    seconds = [r[0] for r in rows]
    print(
        f"wrote {len(rows)} rows to {args.out}: median {statistics.median(seconds):.2f} s, "
        f"max {max(seconds):.2f} s; cold start {cold:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-0.5b", help="registry name or .gguf path")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads per worker")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=8, help="requests per run (at least 2 x clients)")
    parser.add_argument("--measure-service", type=int, default=0, metavar="N")
    parser.add_argument("--out", type=Path, default=REPO / "assistant/data/traces/service_times.csv")
    args = parser.parse_args()
    settings = Settings()
    model_path = (
        Path(args.model)
        if args.model.endswith(".gguf")
        else ModelRegistry(settings.model_cache_dir).path(args.model)
    )
    if args.measure_service:
        measure_service(model_path, args)
    else:
        throughput(model_path, args)


if __name__ == "__main__":
    main()
