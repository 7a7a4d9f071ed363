"""HTTP service overhead and streaming latency, measured in one run on this machine.

1. Server overhead: the same request answered by calling the cascade directly vs through the real HTTP
   server (uvicorn + Litestar + auth-free dev mode + OpenAI shapes), interleaved A/B/B/A so drift and the
   llama.cpp prompt cache favour neither side. Measured on the pre-generation path (a question retrieval
   cannot support: retrieval, evaluator and ledger run, no LLM) where the overhead is not drowned by
   generation noise, and on full local answers. Target: overhead p50 <= 10 ms.
2. Streaming: time to first token vs total time for streamed local answers (penny-local), with the
   llama.cpp prompt cache cleared before each request and kept (the fixed system prompt's prefill reused
   from the previous request), and the prompt tokens reused; TTFT is also on /metrics
   (``penny_time_to_first_token_seconds{tier}``).

Usage: python benchmarks/bench_api.py [--model smollm2-135m|qwen2.5-0.5b] [--rounds 30]
       [--parts overhead,stream]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from assistant.api import create_app
from assistant.service import Penny
from assistant.settings import Settings
from tests.support.questions import SAMPLE_QUESTIONS
from tests.support.servers import running_server

REPO = Path(__file__).resolve().parent.parent
OFF_TOPIC = "zqxj vorpal flibbertigibbet quantum marmalade?"
QUESTIONS = SAMPLE_QUESTIONS


def ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
    return f"p50 {statistics.median(values) * 1000:8.1f} ms  p95 {p95 * 1000:8.1f} ms"


def main() -> None:
    logging.disable(logging.INFO)
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--parts", default="overhead,stream", help="which parts to run (module docstring)")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="penny-bench-api-"))
    settings = Settings(
        data_dir=data_dir,
        models={"local": args.model, "cache_dir": REPO / ".penny" / "models", "max_tokens": args.max_tokens},
    )
    penny = Penny(settings)
    penny.ingester().ingest([REPO / "samples"])
    penny.warm_up()
    print(f"model {args.model}, max_tokens {args.max_tokens}, rounds {args.rounds}; 2-core machine")

    with running_server(create_app(settings, penny, auth=False, warm_up=False)) as base:
        client = httpx.Client(base_url=base, timeout=300)

        def direct(question: str) -> float:
            penny.local_model.forget_prompt_cache()
            started = time.perf_counter()
            penny.cascade.answer(question, mode="local")
            return time.perf_counter() - started

        def over_http(question: str) -> float:
            body = {"model": "penny-local", "messages": [{"role": "user", "content": question}]}
            penny.local_model.forget_prompt_cache()
            started = time.perf_counter()
            response = client.post("/v1/chat/completions", json=body)
            response.raise_for_status()
            return time.perf_counter() - started

        overhead = [
            ("pre-generation path (no LLM)", [OFF_TOPIC], args.rounds),
            ("full local answer, prompt cache cleared", QUESTIONS, max(6, args.rounds // 3)),
        ]
        for label, questions, rounds in overhead if "overhead" in args.parts else []:
            direct(questions[0]), over_http(questions[0])  # warm both paths
            a: list[float] = []
            b: list[float] = []
            for i in range(rounds):
                question = questions[i % len(questions)]
                if i % 2 == 0:
                    a.append(direct(question))
                    b.append(over_http(question))
                else:
                    b.append(over_http(question))
                    a.append(direct(question))
            diffs = [y - x for x, y in zip(a, b, strict=True)]
            print(f"\n[{label}] {rounds} pairs")
            print(f"  cascade direct : {ms(a)}")
            print(f"  through HTTP   : {ms(b)}")
            print(f"  overhead       : p50 {statistics.median(diffs) * 1000:8.1f} ms (target <= 10 ms)")

        # Streamed answers: TTFT beside the total, with llama.cpp's KV cache cleared before each request
        # (every prompt prefilled in full) and kept (the next prompt reuses the prefix it shares with the
        # last one: the chat template and the fixed system prompt come first, then the sources).
        streams = [("prompt cache cleared", True), ("prompt cache kept", False)]
        for label, forget in streams if "stream" in args.parts else []:
            ttft: list[float] = []
            total: list[float] = []
            cached: list[int] = []
            prompt: list[int] = []
            for question in QUESTIONS:
                body = {
                    "model": "penny-local",
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "messages": [{"role": "user", "content": question}],
                }
                if forget:
                    penny.local_model.forget_prompt_cache()
                started = time.perf_counter()
                first = None
                with client.stream("POST", "/v1/chat/completions", json=body) as response:
                    for line in response.iter_lines():
                        if first is None and '"content":' in line and '"content": ""' not in line:
                            first = time.perf_counter() - started
                        if line.startswith("data: {") and '"usage":' in line:
                            usage = json.loads(line[6:]).get("usage") or {}
                            if usage:
                                prompt.append(usage["prompt_tokens"])
                                details = usage.get("prompt_tokens_details") or {}
                                cached.append(details.get("cached_tokens") or 0)
                total.append(time.perf_counter() - started)
                ttft.append(first if first is not None else total[-1])
            print(f"\n[streamed local answers, {label}] {len(QUESTIONS)} questions")
            print(f"  time to first token : {ms(ttft)}")
            print(f"  total               : {ms(total)}")
            ratio = statistics.median(t / s for t, s in zip(ttft, total, strict=True))
            print(f"  ratio ttft/total (median): {ratio:.2f}")
            if prompt:
                print(
                    f"  prompt tokens p50 {statistics.median(prompt):.0f}, reused from the KV cache p50 "
                    f"{statistics.median(cached):.0f} (min {min(cached)}, max {max(cached)})"
                )
        metrics = client.get("/metrics").text
        count = re.search(r'^penny_time_to_first_token_seconds_count\{tier="local"\} (\S+)$', metrics, re.M)
        print(f"\n/metrics: penny_time_to_first_token_seconds_count{{tier=local}} {count and count.group(1)}")


if __name__ == "__main__":
    main()
