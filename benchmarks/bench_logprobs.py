"""What do per-token logprobs cost? llama-cpp-python's ``logprobs=True`` vs Penny's logits processor.

``create_chat_completion(logprobs=True)`` needs the model loaded with ``logits_all=True``, which keeps
n_ctx x n_vocab float logits and computes logits for every prompt position. Penny instead records the
log-softmax of the greedy token from a logits processor (assistant/local/model.py). This script measures,
on SmolLM2-135M with grounded prompts built from samples/:

- wall time per answer (median over interleaved runs, so background load hits both alike);
- resident memory after load and after one answer (each variant in a fresh child process);
- that both give the same logprobs for the same greedy tokens.

Run: ``.venv/bin/python benchmarks/bench_logprobs.py [--runs 6] [--max-tokens 32] [--model smollm2-135m]``
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

QUESTIONS = [
    "In what country is Normandy located?",
    "When were the Normans in Normandy?",
    "From which countries did the Norse originate?",
    "Who was the Norse leader?",
    "What century did the Normans first gain their separate identity?",
    "Who was the duke in the battle of Hastings?",
    "Who ruled the duchy of Normandy?",
    "What religion were the Normans?",
]


def prompts(n_ctx_tokens_hint: int = 700) -> list[list[dict[str, str]]]:
    """Grounded prompts, one per question, each with four different paragraphs of normans.md as sources."""
    from assistant.answering.prompt.grounded import grounded_messages
    from index.retrieval import Passage

    text = (REPO / "samples" / "normans.md").read_text()
    paragraphs = [p.strip() for p in text.split("\n\n") if len(p.strip()) > 200]
    out = []
    for i, question in enumerate(QUESTIONS):
        chosen = [paragraphs[(i + j) % len(paragraphs)][:900] for j in range(4)]
        passages = [Passage(f"p{j}", "normans.md", body, 0.5) for j, body in enumerate(chosen)]
        out.append(grounded_messages(question, passages))
    return out


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(variant: str, model_path: Path, n_ctx: int, threads: int) -> Any:
    from llama_cpp import Llama

    from assistant.local.model import LocalModel

    if variant == "processor":
        return LocalModel(model_path, n_ctx=n_ctx, n_threads=threads)
    return Llama(
        model_path=str(model_path),
        n_ctx=n_ctx,
        n_threads=threads,
        n_batch=512,
        logits_all=True,
        verbose=False,
    )


def answer(
    variant: str, model: Any, messages: list[dict[str, str]], max_tokens: int
) -> tuple[str, list[float]]:
    if variant == "processor":
        generation = model.chat(messages, max_tokens=max_tokens)
        return generation.text, generation.token_logprobs
    model.reset()  # no KV reuse across prompts, as for the processor variant's distinct prompts
    result = model.create_chat_completion(
        messages=messages,
        max_tokens=max_tokens,
        temperature=0.0,
        repeat_penalty=1.0,
        logprobs=True,
        top_logprobs=1,
    )
    choice = result["choices"][0]
    return choice["message"]["content"].strip(), [t["logprob"] for t in choice["logprobs"]["content"]]


def child(variant: str, model_path: Path, n_ctx: int, threads: int, max_tokens: int) -> None:
    """Memory of one variant in a fresh process: RSS after load, after one answer, and peak."""
    before = rss_mb()
    model = load(variant, model_path, n_ctx, threads)
    loaded = rss_mb()
    answer(variant, model, prompts()[0], max_tokens)
    after = rss_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"before": before, "loaded": loaded, "after": after, "peak": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=["processor", "logits_all"], help=argparse.SUPPRESS)
    parser.add_argument("--model-path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        child(args.child, args.model_path, args.n_ctx, args.threads, args.max_tokens)
        return

    from assistant.local.registry import ModelRegistry
    from assistant.settings import Settings

    model_path = ModelRegistry(Settings().model_cache_dir).path(args.model)
    print(
        f"model {args.model} ({model_path.stat().st_size / 1e6:.0f} MB), n_ctx {args.n_ctx}, "
        f"threads {args.threads}, max_tokens {args.max_tokens}, runs {args.runs} per variant (interleaved)"
    )

    memory = {}
    for variant in ("processor", "logits_all"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                variant,
                "--model-path",
                str(model_path),
                "--n-ctx",
                str(args.n_ctx),
                "--threads",
                str(args.threads),
                "--max-tokens",
                str(args.max_tokens),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        memory[variant] = json.loads(out.stdout.strip().splitlines()[-1])

    models = {v: load(v, model_path, args.n_ctx, args.threads) for v in ("processor", "logits_all")}
    all_prompts = prompts()
    times: dict[str, list[float]] = {"processor": [], "logits_all": []}
    first: dict[str, tuple[str, list[float]]] = {}
    for run in range(args.runs):
        messages = all_prompts[run % len(all_prompts)]
        order = ("processor", "logits_all") if run % 2 == 0 else ("logits_all", "processor")
        for variant in order:
            started = time.perf_counter()
            result = answer(variant, models[variant], messages, args.max_tokens)
            times[variant].append(time.perf_counter() - started)
            if run == 0:
                first[variant] = result

    print(
        f"\n{'variant':<12} {'median s/answer':>16} {'min':>7} {'max':>7} {'RSS loaded MB':>14} "
        f"{'RSS after MB':>13} {'peak MB':>8}"
    )
    for variant in ("processor", "logits_all"):
        t, m = times[variant], memory[variant]
        print(
            f"{variant:<12} {statistics.median(t):16.3f} {min(t):7.3f} {max(t):7.3f} {m['loaded']:14.0f} "
            f"{m['after']:13.0f} {m['peak']:8.0f}"
        )
    ratio = statistics.median(times["logits_all"]) / statistics.median(times["processor"])
    extra = memory["logits_all"]["peak"] - memory["processor"]["peak"]
    print(f"\nlogits_all / processor: time x{ratio:.2f}, peak memory +{extra:.0f} MB")

    (text_a, lp_a), (text_b, lp_b) = first["processor"], first["logits_all"]
    n = min(len(lp_a), len(lp_b))
    diff = max((abs(a - b) for a, b in zip(lp_a[:n], lp_b[:n], strict=True)), default=float("nan"))
    print(
        f"same text: {text_a == text_b}; tokens {len(lp_a)} vs {len(lp_b)}; "
        f"max |logprob difference| over {n} tokens: {diff:.2e}"
    )


if __name__ == "__main__":
    main()
