"""Prefill saved on multi-turn conversations by the transcript layout
(assistant/answering/prompt/transcript.py).

Conversations are the shared SQuAD sample's paragraphs: each paragraph's answerable questions, asked in
order as one conversation (follow-ups on one topic), the assistant's previous answers in the history. Each
conversation runs twice, back to back, the KV cache cleared before each: once with the compact layout
(``transcript_window_turns`` 1) and once with the transcript (the default window). Per follow-up turn it
prints the prompt tokens, the tokens llama.cpp reused from its KV cache, the tokens it prefilled, the
local seconds and the SQuAD F1 against the gold answers; the first turn is the same in both layouts.

    .venv/bin/python benchmarks/bench_prefix_reuse.py [--conversations 12] [--model qwen2.5-0.5b]

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from assistant.service import Penny  # noqa: E402
from assistant.settings import CascadeSettings, Settings  # noqa: E402
from eval.datasets import ingest_contexts, load_dataset  # noqa: E402
from eval.metrics import to_prediction, token_f1  # noqa: E402
from index.store import get_collection  # noqa: E402

SAMPLE = REPO.parent / "shared" / "data" / "squad2-dev-sample.json"


def conversations(path: Path, count: int, turns: int) -> list[list[tuple[str, list[str]]]]:
    """Up to ``count`` paragraphs with at least three answerable questions, as (question, golds) turns."""
    dataset = load_dataset(path)
    by_context: dict[str, list[tuple[str, list[str]]]] = defaultdict(list)
    for question in dataset.questions:
        if question.has_answer:
            by_context[str(question.context_id)].append((question.question, list(question.answers)))
    chosen = [qs[:turns] for qs in by_context.values() if len(qs) >= 3]
    return chosen[:count]


def main() -> None:
    logging.disable(logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen2.5-0.5b")
    parser.add_argument("--dataset", type=Path, default=SAMPLE)
    parser.add_argument("--conversations", type=int, default=12)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()

    settings = Settings(
        data_dir=Path(tempfile.mkdtemp(prefix="penny-bench-prefix-")),
        models={"local": args.model, "cache_dir": REPO / ".penny" / "models", "max_tokens": args.max_tokens},
    )
    penny = Penny(settings)
    dataset = load_dataset(args.dataset)
    collection = dataset.collection_name
    ingest_contexts(dataset, get_collection(penny.chroma, collection), penny.embedder)
    cascade = penny.cascade
    window = CascadeSettings().transcript_window_turns
    penny.warm_up()

    rows: dict[str, dict[str, list[float]]] = {"compact": defaultdict(list), "transcript": defaultdict(list)}
    chats = conversations(args.dataset, args.conversations, args.turns)
    for chat in chats:
        for layout, turns_per_window in (("compact", 1), ("transcript", window)):
            cascade.prompt_builder.transcript_window_turns = turns_per_window
            penny.local_model.forget_prompt_cache()
            history: list[dict[str, str]] = []
            for turn, (question, golds) in enumerate(chat):
                answer = cascade.answer(question, collection=collection, mode="local", history=history)
                history += [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": answer.answer},
                ]
                if turn == 0:
                    continue  # the opening turn is laid out the same way in both
                generation = answer.local_generation
                if generation is None:
                    continue  # abstained before generating (retrieval found nothing): the same in both
                row = rows[layout]
                row["prompt"].append(generation.prompt_tokens)
                row["cached"].append(generation.cached_prompt_tokens)
                row["prefilled"].append(generation.prompt_tokens - generation.cached_prompt_tokens)
                row["seconds"].append(generation.seconds)
                row["completion"].append(generation.completion_tokens)
                row["f1"].append(max(token_f1(gold, to_prediction(answer.answer)) for gold in golds))

    follow_ups = len(rows["compact"]["prompt"])
    print(f"model {args.model}; {len(chats)} conversations, {follow_ups} follow-up turns; window {window}")
    print(
        f"{'layout':<11} {'prompt':>8} {'reused':>8} {'prefilled':>10} {'answer':>7} {'seconds':>8} {'F1':>6}"
    )
    for layout, row in rows.items():
        print(
            f"{layout:<11} {statistics.median(row['prompt']):8.0f} {statistics.median(row['cached']):8.0f} "
            f"{statistics.median(row['prefilled']):10.0f} {statistics.median(row['completion']):7.0f} "
            f"{statistics.median(row['seconds']):8.2f} "
            f"{100 * statistics.fmean(row['f1']):6.1f}"
        )
    compact, transcript = rows["compact"], rows["transcript"]
    saved = 1 - sum(transcript["prefilled"]) / sum(compact["prefilled"])
    ratios = [t / c for t, c in zip(transcript["seconds"], compact["seconds"], strict=True)]
    print("(medians per follow-up turn; F1 is the mean)")
    print(f"prefill tokens saved by the transcript: {100 * saved:.0f} % of the compact layout's")
    print(f"local seconds per follow-up, transcript / compact: median ratio {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
