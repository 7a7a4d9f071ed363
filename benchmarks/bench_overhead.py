"""Service overhead: a local answer through Penny's HTTP API vs raw llama.cpp on the very same prompt.

For each question, Penny answers it once through ``/v1/chat/completions`` (model ``penny-local``: retrieval,
prompt, generation, evaluator features, ledger write, HTTP and JSON), and the same llama.cpp instance
answers the exact prompt Penny sent it, called directly (``Llama.create_chat_completion``, greedy, same
``max_tokens``). Both start with the KV cache cleared, and pairs alternate which side goes first, so drift
and load favour neither. The difference is what Penny adds on top of the model.

Under load the model's own time swings by seconds between two runs of one prompt, far more than the
overhead, so the pairs' difference is noisy; the steadier figure is measured inside each request: the
request's wall time minus the model's generation time (``Generation.seconds`` of every generation the
request ran, which includes Penny's per-token logprob recorder). A question that gets a second local try
(``cascade.retry_local``) runs two generations; raw llama.cpp then answers both prompts.

Two cases: *cold*, where the embedding memo is cleared before each Penny request, as for a question on
passages no recent question touched (their sentence vectors come from the index's sentence store, filled
when each prompt was first built: benchmarks/bench_cold_passages.py times a chunk's very first use); and
*warm*, the same questions again once each has been answered and the memo kept (popular passages).

    .venv/bin/python benchmarks/bench_overhead.py [--model qwen2.5-0.5b] [--questions 12]

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from assistant.api import create_app  # noqa: E402
from assistant.local.backend import Generation  # noqa: E402
from assistant.service import Penny  # noqa: E402
from assistant.settings import Settings  # noqa: E402
from tests.support.servers import running_server  # noqa: E402


class PromptRecorder:
    """The local model as the cascade sees it, remembering every prompt and generation of one request (a
    second local try, ``cascade.retry_local``, is a second generation: both count as the model's time)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.prompts: list[list[dict[str, str]]] = []
        self.generations: list[Generation] = []

    def clear(self) -> None:
        self.prompts, self.generations = [], []

    def stream_chat(
        self, messages: Sequence[dict[str, str]], max_tokens: int = 256, *, scored_tail: str | None = None
    ) -> Iterator[Any]:
        self.prompts.append(list(messages))
        for item in self.model.stream_chat(messages, max_tokens=max_tokens, scored_tail=scored_tail):
            if isinstance(item, Generation):
                self.generations.append(item)
            yield item


def questions(limit: int) -> list[str]:
    data = json.loads((REPO / "tests/data/squad2-mini.json").read_text())
    found = [qa["question"] for article in data["data"] for p in article["paragraphs"] for qa in p["qas"]]
    return found[:limit]


def recorded_parts(penny: Penny, last: int) -> tuple[list[float], list[float]]:
    """The retrieval and evaluator seconds the ledger recorded for the last ``last`` answers."""
    import sqlalchemy as sa

    from assistant.ledger.schema import answers

    query = (
        sa.select(answers.c.retrieval_seconds, answers.c.evaluation_seconds)
        .order_by(answers.c.created_at.desc())
        .limit(last)
    )
    with penny.ledger.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [float(r[0] or 0) for r in rows], [float(r[1] or 0) for r in rows]


def ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
    return f"p50 {statistics.median(values) * 1000:8.1f} ms  p95 {p95 * 1000:8.1f} ms"


def main() -> None:
    logging.disable(logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen2.5-0.5b")
    parser.add_argument("--questions", type=int, default=12)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp(prefix="penny-bench-overhead-")),
        models={"local": args.model, "cache_dir": REPO / ".penny" / "models", "max_tokens": args.max_tokens},
    )
    penny = Penny(settings)
    penny.ingester().ingest([REPO / "samples"])
    penny.warm_up()
    recorder = PromptRecorder(penny.local_model)
    penny.cascade.local = recorder
    llama = penny.local_model._llama
    asked = questions(args.questions)

    with running_server(create_app(settings, penny, auth=False, warm_up=False)) as base:
        client = httpx.Client(base_url=base, timeout=600)

        own: list[float] = []  # request wall time minus the model's generation time

        def through_penny(question: str, cold: bool) -> float:
            if cold:
                penny.embedder.forget_memo()
            penny.local_model.forget_prompt_cache()
            body = {"model": "penny-local", "messages": [{"role": "user", "content": question}]}
            recorder.clear()
            started = time.perf_counter()
            client.post("/v1/chat/completions", json=body).raise_for_status()
            elapsed = time.perf_counter() - started
            assert recorder.generations, "the request ran no local generation"
            own.append(elapsed - sum(g.seconds for g in recorder.generations))
            return elapsed

        def raw(prompts: list[list[dict[str, str]]]) -> float:
            """Every prompt Penny's request sent (one, or two with a second local try), each from a cleared
            cache as Penny's were."""
            started = time.perf_counter()
            for prompt in prompts:
                penny.local_model.forget_prompt_cache()
                llama.create_chat_completion(
                    messages=prompt, max_tokens=args.max_tokens, temperature=0.0, repeat_penalty=1.0
                )
            return time.perf_counter() - started

        prompts = {}
        for question in asked:  # Penny's prompts for each question, and both paths warmed
            through_penny(question, cold=True)
            prompts[question] = recorder.prompts
        raw(prompts[asked[0]])
        retried = sum(len(p) > 1 for p in prompts.values())

        print(f"model {args.model}, max_tokens {args.max_tokens}, {len(asked)} questions; 2-core machine")
        print(f"{retried} of {len(asked)} questions got a second local try; raw llama.cpp runs both prompts")
        for case, cold in (("cold (embedding memo cleared)", True), ("warm (memo kept)", False)):
            direct: list[float] = []
            served: list[float] = []
            own.clear()
            if not cold:
                for question in asked:  # every question's passages, sentences and answer in the memo
                    penny.cascade.answer(question, mode="local")
            for i, question in enumerate(asked):
                if i % 2 == 0:
                    direct.append(raw(prompts[question]))
                    served.append(through_penny(question, cold))
                else:
                    served.append(through_penny(question, cold))
                    direct.append(raw(prompts[question]))
            overhead = [b - a for a, b in zip(direct, served, strict=True)]
            ratio = statistics.median(b / a for a, b in zip(direct, served, strict=True))
            print(f"\n[{case}] {len(asked)} pairs")
            print(f"  raw llama.cpp : {ms(direct)}")
            print(f"  through Penny : {ms(served)}")
            p50 = statistics.median(overhead) * 1000
            print(f"  overhead      : p50 {p50:7.1f} ms, ratio {ratio:.3f} (pairs)")
            print(f"  Penny's own   : {ms(own)} (request wall minus generations; target p50 <= 50 ms)")
            retrieval, evaluation = recorded_parts(penny, len(asked))
            print(f"    of which    : retrieval {ms(retrieval)}; evaluator {ms(evaluation)} (the ledger's)")


if __name__ == "__main__":
    main()
