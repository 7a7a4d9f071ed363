"""What serving the local tier from the worker pool costs over running the model in-process.

    .venv/bin/python benchmarks/bench_pool_overhead.py                            # qwen2.5-0.5b, 40 pairs
    .venv/bin/python benchmarks/bench_pool_overhead.py --model smollm2-135m --pairs 6   # a quick check

Like with like: the in-process ``LocalModel`` and the pool's single worker load the same GGUF with the same
n_ctx and n_threads (the worker runs ``LocalModel`` too), and they take turns, one request at a time, so
they never compete for the cores. What differs is what the pool adds: the dispatcher, HTTP and SSE on
loopback, the worker's event loop, the JSON. Pair i sends grounded prompt i to both sides, in alternating
order so drift in the machine's load favours neither. Both sides answer the same prompts in the same order
(greedy, so the same tokens), so llama.cpp's prompt cache holds the same earlier prompt on each and the
prefix it reuses is the same; no prompt is repeated. Overhead = median of per-pair ratios (pool /
in-process) - 1, with a bootstrap interval: on a shared machine, load that changes between the two halves
of a pair moves its ratio far more than the pool does. So it also prints what that noise cannot touch: the
pool's own cost measured inside each pool request (wall time minus the worker's generation time), and the
ratio of the two models' generation times alone. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime
import os
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from assistant.local.backend import Generation  # noqa: E402
from assistant.local.model import LocalModel  # noqa: E402
from assistant.local.pool import PoolBackend, WorkerPool  # noqa: E402
from assistant.local.registry import ModelRegistry  # noqa: E402
from assistant.settings import PoolSettings, Settings  # noqa: E402
from benchmarks.bench_pool import prompts  # noqa: E402


def timed(
    backend: LocalModel | PoolBackend, messages: list[dict[str, str]], max_tokens: int
) -> tuple[float, Generation]:
    started = time.perf_counter()
    generation = backend.chat(messages, max_tokens)
    return time.perf_counter() - started, generation


def median_interval(values: list[float], draws: int = 2000) -> tuple[float, float]:
    """95 % bootstrap interval of the median: how far the machine's noise leaves the figure uncertain."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model", default="qwen2.5-0.5b", help="registry name or .gguf path")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads, the same on both sides")
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--n-ctx", type=int, default=2048)
    args = parser.parse_args()
    settings = Settings()
    model_path = (
        Path(args.model)
        if args.model.endswith(".gguf")
        else ModelRegistry(settings.model_cache_dir).path(args.model)
    )
    messages = prompts(questions=None) + prompts(questions=None, shift=2)  # 72, each question twice
    if args.pairs + 1 > len(messages):
        parser.error(f"at most {len(messages) - 1} pairs: there are {len(messages)} distinct prompts")
    print(
        f"{datetime.datetime.now().isoformat(timespec='seconds')}: model {model_path.stem}, "
        f"{args.threads} thread(s) on both sides, max_tokens {args.max_tokens}, {args.pairs} pairs, "
        f"{os.cpu_count()} cores, load average {load()}",
        flush=True,
    )
    local = LocalModel(model_path, n_ctx=args.n_ctx, n_threads=args.threads)
    pool_settings = PoolSettings(
        min_workers=1, max_workers=1, threads_per_worker=args.threads, request_deadline_s=900
    )
    pool = WorkerPool(model_path, pool_settings, n_ctx=args.n_ctx).start()
    try:
        pool.wait_ready(1, timeout_s=300)
        backend = PoolBackend(pool)
        sides = {"in-process": local, "pool": backend}
        for side in sides.values():  # the same first prompt on both: the caches start alike
            side.chat(messages[0], args.max_tokens)
        seconds: dict[str, list[float]] = {name: [] for name in sides}
        transport: list[float] = []  # pool wall time minus the worker's own generation time
        ratios: list[float] = []
        model_ratios: list[float] = []  # the two LocalModels' own generation times, without the transport
        differ = 0
        print(
            f"{'pair':>4} {'first':>10} {'in-process s':>12} {'pool s':>8} {'ratio':>7} "
            f"{'model ratio':>11} {'tokens':>6}"
        )
        for pair in range(1, args.pairs + 1):
            order = ["in-process", "pool"] if pair % 2 else ["pool", "in-process"]
            results = {name: timed(sides[name], messages[pair], args.max_tokens) for name in order}
            (local_s, local_gen), (pool_s, pool_gen) = results["in-process"], results["pool"]
            seconds["in-process"].append(local_s)
            seconds["pool"].append(pool_s)
            transport.append(pool_s - pool_gen.seconds)
            ratios.append(pool_s / local_s)
            model_ratios.append(pool_gen.seconds / local_gen.seconds)
            differ += local_gen.text != pool_gen.text
            print(
                f"{pair:>4} {order[0]:>10} {local_s:>12.3f} {pool_s:>8.3f} {pool_s / local_s:>7.3f} "
                f"{model_ratios[-1]:>11.3f} {pool_gen.completion_tokens:>6}",
                flush=True,
            )
    finally:
        pool.stop()
    local_median, pool_median = statistics.median(seconds["in-process"]), statistics.median(seconds["pool"])
    ratio = statistics.median(ratios)
    low, high = median_interval(ratios)
    print(
        f"median in-process {local_median:.3f} s, median pool {pool_median:.3f} s; median per-pair ratio "
        f"{ratio:.4f} -> overhead {(ratio - 1) * 100:+.1f} % (target <= 2 %); 95 % interval of the "
        f"median ratio {low:.3f}-{high:.3f}"
    )
    print(
        f"the same for the model's own generation time in each process (no transport): median ratio "
        f"{statistics.median(model_ratios):.4f}; the spread of these ratios is the machine's noise"
    )
    transport_ms = statistics.median(transport) * 1000
    print(
        f"pool wall time minus the worker's generation time: median {transport_ms:.1f} ms = "
        f"{transport_ms / 10 / pool_median:.2f} % of the median pool answer; "
        f"answers that differ between the sides: {differ} of {args.pairs}; load average at the end {load()}"
    )


if __name__ == "__main__":
    main()
