"""Threads by load against one thread per worker, on a two-worker pool on this host.

    .venv/bin/python benchmarks/bench_threads.py                                  # qwen2.5-0.5b, 6 rounds
    .venv/bin/python benchmarks/bench_threads.py --model smollm2-135m --rounds 3  # a quick check

One pool, two workers started with ``threads_per_worker`` 1; the two modes differ only in the hint the
pool sends (``WorkerPool.lone_threads``): "1 thread" sends none (each worker decodes with its start-up
thread), "by load" sends all the cores to a request that starts alone. Each round runs both modes, in
alternating order so drift in the machine's load favours neither, and every request gets a prompt no
earlier one shared passages with (bench_pool.prompts), so the prompt cache flatters neither.

(a) lone: one request at a time; its latency. (b) together: two requests released at the same instant
with no admission (the CLI's path): the first to take a slot sees nothing in flight and gets all the
cores, the second a thread, until the first ends. (c) staggered: the second arrives ``--stagger-s`` after
the first, which is already decoding with all the cores (the case threads by load cannot undo: a running
request is never changed). Throughput = 2 answers / the wall time of both. Prints medians and ratios;
asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from assistant.local.pool import PoolBackend, WorkerPool  # noqa: E402
from assistant.local.pool.sizing import Host  # noqa: E402
from assistant.local.registry import ModelRegistry  # noqa: E402
from assistant.settings import PoolSettings, Settings  # noqa: E402
from benchmarks.bench_pool import prompts  # noqa: E402

MODES = ("1 thread", "by load")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def lone(backend: PoolBackend, messages: list[dict[str, str]], max_tokens: int) -> float:
    started = time.perf_counter()
    backend.chat(messages, max_tokens)
    return time.perf_counter() - started


def pair(backend: PoolBackend, two: list[list[dict[str, str]]], max_tokens: int, stagger_s: float) -> float:
    """Answers per second for two requests, the second ``stagger_s`` after the first."""
    errors: list[BaseException] = []

    def ask(messages: list[dict[str, str]]) -> None:
        try:
            backend.chat(messages, max_tokens)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    started = time.perf_counter()
    threads = [threading.Thread(target=ask, args=(m,)) for m in two]
    threads[0].start()
    if stagger_s:
        time.sleep(stagger_s)
    threads[1].start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return 2 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-0.5b", help="registry name or .gguf path")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--stagger-s", type=float, default=0.5)
    parser.add_argument(
        "--budget-s", type=float, default=240.0, help="start no round after this; summarise what ran"
    )
    args = parser.parse_args()
    settings = Settings()
    model_path = (
        Path(args.model)
        if args.model.endswith(".gguf")
        else ModelRegistry(settings.model_cache_dir).path(args.model)
    )
    cores = Host.measure().cpus
    fresh: Iterator[list[dict[str, str]]] = iter(prompts(questions=None) + prompts(questions=None, shift=2))
    print(
        f"{datetime.datetime.now().isoformat(timespec='seconds')}: model {model_path.stem}, 2 workers x 1 "
        f"thread, by load: {cores} threads for a lone request; max_tokens {args.max_tokens}, "
        f"{args.rounds} rounds, {cores} usable cores, load average {load()}",
        flush=True,
    )
    pool_settings = PoolSettings(
        min_workers=2, max_workers=2, threads_per_worker=1, request_deadline_s=900, lone_request_threads=None
    )
    pool = WorkerPool(model_path, pool_settings, n_ctx=args.n_ctx).start()
    by_load = pool.lone_threads
    results: dict[str, dict[str, list[float]]] = {k: {m: [] for m in MODES} for k in ("a", "b", "c")}
    try:
        started = time.perf_counter()
        pool.wait_ready(2, timeout_s=300)
        print(f"both workers ready in {time.perf_counter() - started:.1f} s", flush=True)
        backend = PoolBackend(pool)
        lone(backend, next(fresh), args.max_tokens)  # warm-up, not counted
        for round_ in range(1, args.rounds + 1):
            if time.perf_counter() - started > args.budget_s:
                print(f"budget of {args.budget_s:g} s spent: {round_ - 1} rounds ran", flush=True)
                break
            order = MODES if round_ % 2 else MODES[::-1]
            for mode in order:
                pool.lone_threads = by_load if mode == "by load" else None
                results["a"][mode].append(lone(backend, next(fresh), args.max_tokens))
                results["b"][mode].append(pair(backend, [next(fresh), next(fresh)], args.max_tokens, 0.0))
                two = [next(fresh), next(fresh)]
                results["c"][mode].append(pair(backend, two, args.max_tokens, args.stagger_s))
            print(
                f"round {round_}: "
                + "; ".join(
                    f"{mode}: lone {results['a'][mode][-1]:.2f} s, together {results['b'][mode][-1]:.3f}/s, "
                    f"staggered {results['c'][mode][-1]:.3f}/s"
                    for mode in MODES
                ),
                flush=True,
            )
        backend.close()
    finally:
        pool.stop()
    labels = {
        "a": "(a) lone request latency p50 (s)",
        "b": "(b) 2 together, answers/s p50",
        "c": f"(c) 2 staggered by {args.stagger_s:g} s, answers/s p50",
    }
    for key, label in labels.items():
        if not results[key][MODES[0]]:
            continue
        one, loaded = (statistics.median(results[key][mode]) for mode in MODES)
        print(f"{label}: 1 thread {one:.3f}, by load {loaded:.3f}, by load / 1 thread = {loaded / one:.3f}")
    print(f"load average at the end {load()}")


if __name__ == "__main__":
    main()
