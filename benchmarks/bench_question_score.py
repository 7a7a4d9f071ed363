"""What does scoring the question cost? The local answer with and without ``scored_tail``, and the separate
pass the seventh probe used (docs/eval/evaluator-signals.md).

The question ends the local prompt, so its tokens' log-probabilities come from the prefill the answer pays
for anyway (assistant/local/prefill.py); the only extra work is the output rows at those positions. The
separate pass is what it would cost otherwise: the same prompt evaluated again by a model loaded with
``logits_all``. Grounded prompts from samples/ (bench_logprobs.py's), the KV cache dropped before every
answer so each prefills in full; variants interleaved so background load hits all alike. Prints medians,
their ratio, and how many answers came out different (the prompt is prefilled in two batches when scored,
so its float sums differ slightly and a near-tie between two tokens can go the other way).

Run: ``.venv/bin/python benchmarks/bench_question_score.py [--runs 3] [--model qwen2.5-0.5b]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench_logprobs import QUESTIONS, prompts  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen2.5-0.5b")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from llama_cpp import Llama

    from assistant.local.model import LocalModel
    from assistant.local.registry import ModelRegistry
    from assistant.settings import Settings

    model_path = ModelRegistry(Settings().model_cache_dir).path(args.model)
    model = LocalModel(model_path, n_ctx=2048, n_threads=args.threads)
    separate = Llama(
        model_path=str(model_path), n_ctx=2048, n_threads=args.threads, logits_all=True, verbose=False
    )
    cases = list(zip(QUESTIONS, prompts(), strict=True))
    seconds: dict[str, list[float]] = {"answer": [], "answer + question score": [], "separate pass": []}
    prompt_tokens, scored_tokens = [], []
    differing = (
        0  # the prompt prefilled in two batches instead of one: float sums differ, a near-tie may flip
    )
    for _ in range(args.runs):
        for question, messages in cases:
            model.forget_prompt_cache()
            started = time.perf_counter()
            plain = model.chat(messages, max_tokens=args.max_tokens)
            seconds["answer"].append(time.perf_counter() - started)

            model.forget_prompt_cache()
            started = time.perf_counter()
            scored = model.chat(messages, max_tokens=args.max_tokens, scored_tail=question)
            seconds["answer + question score"].append(time.perf_counter() - started)
            assert scored.scored_tail_logprobs
            differing += scored.text != plain.text
            prompt_tokens.append(scored.prompt_tokens)
            scored_tokens.append(len(scored.scored_tail_logprobs))

            rendered = model._template(messages=messages)
            tokens = separate.tokenize(
                rendered.prompt.encode(), add_bos=not rendered.added_special, special=True
            )
            separate.reset()
            started = time.perf_counter()
            separate.eval(tokens)
            seconds["separate pass"].append(time.perf_counter() - started)

    print(
        f"model {args.model}, threads {args.threads}, max_tokens {args.max_tokens}, {len(cases)} prompts x "
        f"{args.runs} runs; prompt tokens median {statistics.median(prompt_tokens):.0f}, question tokens "
        f"scored median {statistics.median(scored_tokens):.0f}"
    )
    base = statistics.median(seconds["answer"])
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"  {name:<24} median {median * 1000:7.0f} ms   {median / base:5.2f}x the answer")
    added = [s - a for s, a in zip(seconds["answer + question score"], seconds["answer"], strict=True)]
    print(
        f"  scoring adds, median of paired differences: {statistics.median(added) * 1000:+.0f} ms per answer"
    )
    print(f"  answers whose text differs with scoring: {differing} of {len(added)}")


if __name__ == "__main__":
    main()
