"""Cold-passage tax: what Penny's answer path spends outside generation on passages no recent question
touched, with and without the sentence vectors kept per chunk (index/sentvec.py); and what keeping them
at ingest costs.

Per question, the embedding memo cleared first (cold), timed: retrieval, the prompt diet (``compress``)
and the evaluator's text features (``text_features``, the SQuAD answer standing in for the model's). Three
paths, interleaved per question so the machine's load favours none:

- *no store*: retrieval carries no sentence vectors, the diet and the evaluator embed every passage
  sentence (Penny before the store);
- *first use*: the store lacks these chunks, retrieval embeds their sentences and keeps them (an index
  built before the store, once per chunk);
- *stored*: retrieval reads the kept vectors; only the question and the answer are embedded.

Then *warm* (memo kept) for reference. With ``--ingest``, ingests those paths into fresh indexes with and
without ``index.sentence_vectors_at_ingest``, alternating, and prints the times.

    .venv/bin/python benchmarks/bench_cold_passages.py [--questions 36] [--rounds 3] [--ingest PATH ...]

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
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from assistant.answering.judge.features import retrieval_features, text_features  # noqa: E402
from assistant.answering.prompt.compression import Diet, compress  # noqa: E402
from assistant.service import Penny  # noqa: E402
from assistant.settings import Settings  # noqa: E402


def squad(limit: int) -> list[tuple[str, str]]:
    data = json.loads((REPO / "tests/data/squad2-mini.json").read_text())
    found = [
        (qa["question"], (qa["answers"] or [{"text": "I don't know"}])[0]["text"])
        for article in data["data"]
        for p in article["paragraphs"]
        for qa in p["qas"]
    ]
    return found[:limit]


def ms(values: list[float]) -> str:
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(0.9 * len(values)))]
    return f"p50 {statistics.median(values) * 1000:7.1f} ms  p90 {p90 * 1000:7.1f} ms  (n={len(values)})"


def answer_path(penny: Penny, question: str, answer: str) -> float:
    """Retrieval, diet and text features: the answer path's embedding work, no generation."""
    retriever = penny.retriever()
    started = time.perf_counter()
    passages = retriever.search(question)
    compress(question, passages, penny.embedder, Diet())
    retrieval_features(passages)
    text_features(question, passages, f"{answer} [1]", penny.embedder)
    return time.perf_counter() - started


def overhead(penny: Penny, asked: list[tuple[str, str]], rounds: int) -> None:
    retriever = penny.retriever()
    store = retriever.sentence_store
    assert store is not None
    chunk_ids = {q: [p.id for p in retriever.search(q)] for q, _ in asked}
    times: dict[str, list[float]] = {"no store": [], "first use": [], "stored": [], "warm": []}

    def no_store(question: str, answer: str) -> float:
        retriever.sentence_store = None
        try:
            return answer_path(penny, question, answer)
        finally:
            retriever.sentence_store = store

    def first_use(question: str, answer: str) -> float:
        store.delete(chunk_ids[question])
        return answer_path(penny, question, answer)

    def stored(question: str, answer: str) -> float:
        return answer_path(penny, question, answer)

    cases: list[tuple[str, Callable[[str, str], float]]] = [
        ("no store", no_store),
        ("first use", first_use),
        ("stored", stored),
    ]
    answer_path(penny, *asked[0])  # load the models and the BM25 index
    for r in range(rounds):
        for i, (question, answer) in enumerate(asked):
            shift = (i + r) % len(cases)
            for name, case in cases[shift:] + cases[:shift]:
                penny.embedder.forget_memo()
                times[name].append(case(question, answer))
    for question, answer in asked:  # memo kept: the same question again
        answer_path(penny, question, answer)
        times["warm"].append(answer_path(penny, question, answer))
    print(f"answer path outside generation (retrieval + diet + text features), {len(asked)} questions")
    for name, values in times.items():
        print(f"  {name:10s}: {ms(values)}")


def ingest_cost(paths: list[Path], rounds: int) -> None:
    files = [
        p for path in paths for p in ([path] if path.is_file() else sorted(path.rglob("*"))) if p.is_file()
    ]
    seconds: dict[bool, list[float]] = {False: [], True: []}
    chunks = 0
    for r in range(rounds):
        for at_ingest in (r % 2 == 0, r % 2 == 1):
            settings = Settings(
                data_dir=Path(tempfile.mkdtemp(prefix="penny-bench-sentvec-")),
                index={"sentence_vectors_at_ingest": at_ingest},
            )
            summary = Penny(settings).ingester().ingest(files)
            seconds[at_ingest].append(summary.seconds)
            chunks = summary.chunks_written
    before, after = statistics.median(seconds[False]), statistics.median(seconds[True])
    print(f"ingest of {len(files)} files, {chunks} chunks, {rounds} runs each (median)")
    print(f"  chunk vectors only        : {before:7.1f} s  {chunks / before:6.1f} chunks/s  {seconds[False]}")
    print(f"  + sentence vectors at ingest: {after:7.1f} s  {chunks / after:6.1f} chunks/s  {seconds[True]}")
    print(f"  cost: {100 * (after / before - 1):+.0f} %")


def main() -> None:
    logging.disable(logging.WARNING)
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=36)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ingest", type=Path, nargs="*", default=None)
    args = parser.parse_args()
    if args.ingest is not None:
        ingest_cost(args.ingest or [REPO / "samples"], args.rounds)
        return
    penny = Penny(Settings(data_dir=Path(tempfile.mkdtemp(prefix="penny-bench-sentvec-"))))
    penny.ingester().ingest([REPO / "samples"])
    overhead(penny, squad(args.questions), args.rounds)


if __name__ == "__main__":
    main()
