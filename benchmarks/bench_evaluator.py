"""What does each evaluator signal cost per answer? Times every feature group of
``assistant.answering.judge.features`` on real SQuAD 2.0 paragraphs with the real MiniLM embedder.

Per question of ``tests/data/squad2-mini.json``: its paragraph and the next two as the passages (the
service retrieves three), and as the local answer the gold answer (or, for an unanswerable question, a
span of its paragraph). Each group is timed separately over the same (question, passages, answer)
triples, interleaved round by round so background load hits every group alike; the median per answer is
printed next to the whole ``extract_features`` call. The AUROC each signal adds is measured on a run by
``python -m eval calibrate`` (docs/eval/evaluator-signals.md); this script measures only the time.

Run: ``.venv/bin/python benchmarks/bench_evaluator.py [--rounds 5]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from assistant.answering import features as f
    from assistant.answering.judge.answer_type import type_match
    from assistant.local.backend import Generation
    from index.embedding import get_embedder
    from index.retrieval import Passage

    data = json.loads((REPO / "tests" / "data" / "squad2-mini.json").read_text())
    paragraphs = [p for article in data["data"] for p in article["paragraphs"]]
    triples = []
    for i, paragraph in enumerate(paragraphs):
        passages = [
            Passage(f"p{j}", "squad", paragraphs[j % len(paragraphs)]["context"], 0.6 - 0.05 * k)
            for k, j in enumerate(range(i, i + 3))
        ]
        for qa in paragraph["qas"]:
            answer = qa["answers"][0]["text"] if qa["answers"] else paragraph["context"].split(".")[0][-30:]
            triples.append((qa["question"], passages, f"{answer} [1]"))
    embedder = get_embedder()
    embedder.embed(["warm up"])

    def generation(answer: str) -> Generation:
        return Generation(answer, prompt_tokens=520, completion_tokens=6, token_logprobs=[-0.2] * 6)

    groups: dict[str, Callable[[str, list[Passage], str], object]] = {
        "extract_features (all)": lambda q, ps, a: f.extract_features(q, ps, generation(a), embedder),
        "lexical + question support (today)": lambda q, ps, a: (
            f.lexical_support(q, a, ps),
            f.question_support(q, ps),
        ),
        "answer_verbatim_rank": lambda q, ps, a: f.answer_verbatim_rank(a, ps),
        "answer_sentence_qcov": lambda q, ps, a: f.answer_sentence_qcov(q, f.answer_sentence(a, ps)),
        "embedding_support (answer vs passages)": lambda q, ps, a: f.embedding_support(a, ps[:1], embedder),
        "sentence cosines (one MiniLM batch)": lambda q, ps, a: f.sentence_cosines(
            q, a, f.answer_sentence(a, ps), ps, embedder
        ),
        "type_match": lambda q, ps, a: type_match(q, a),
        "dense_bm25_agree": lambda q, ps, a: f.dense_bm25_agree(ps),
    }
    timings: dict[str, list[float]] = {name: [] for name in groups}
    for _ in range(args.rounds):
        for question, passages, answer in triples:
            for name, run in groups.items():
                started = time.perf_counter()
                run(question, passages, answer)
                timings[name].append((time.perf_counter() - started) * 1000)
    total = statistics.median(timings["extract_features (all)"])
    print(f"{len(triples)} answers x {args.rounds} rounds, 3 passages each; median ms per answer:")
    for name, values in timings.items():
        median = statistics.median(values)
        print(f"  {name:<38} {median:8.2f} ms  ({100 * median / total:5.1f} % of all features)")
    print(
        f"against a local answer of 3,200-7,000 ms on this CPU, all features add "
        f"{total / 7000:.1%}-{total / 3200:.1%}"
    )


if __name__ == "__main__":
    main()
