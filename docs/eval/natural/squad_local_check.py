"""Does the answer form change hurt the local tier on SQuAD spans? The shared sample's 240 questions
(docs/eval/default-calibration/squad-real) answered by today's local tier, against the same run's answers.

Decoding is greedy and the prompt is built the same way, so a question whose answer form and retry cannot
change (a factoid, whose stored answer is neither degenerate nor an abstention) gets the stored answer
again; only the others are asked again, on the recorded passages. Prints the local tier's HasAns F1 before
and after, the paired bootstrap interval of the change, and the before-run's own interval.

    PENNY_DATA_DIR=<a data dir holding eval-squad2-dev-sample> python docs/eval/natural/squad_local_check.py
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from assistant.answering.judge.features import is_degenerate
from assistant.answering.prompt.grounded import is_abstention
from assistant.answering.question import question_kind
from assistant.service import Penny
from assistant.settings import get_settings
from eval.metrics import score, to_prediction
from eval.records import load_records

RUN = Path(__file__).resolve().parents[1] / "default-calibration" / "squad-real" / "calls.jsonl"


def main() -> None:
    records = [r for r in load_records(RUN) if r.complete and r.local is not None]
    penny = Penny(get_settings())
    retriever = penny.retriever("eval-squad2-dev-sample")
    cascade = penny.cascade
    before, after, asked = [], [], 0
    for r in records:
        assert r.local is not None
        old = r.local.answer
        passages = retriever.by_ids(r.retrieved_ids)
        changes = (
            question_kind(r.question) != "factoid"
            or is_abstention(old)
            or is_degenerate(r.question, old, passages)
        )
        new = old
        if changes:
            asked += 1
            new = cascade.answer(
                r.question, mode="local", passages=passages, route_before_generation=False
            ).answer
            print(f"{r.id} {question_kind(r.question)}: {old!r} -> {new!r}", file=sys.stderr)
        if r.has_answer:
            before.append(score(to_prediction(old), r.answers)[1])
            after.append(score(to_prediction(new), r.answers)[1])
    rng = random.Random(0)
    n = len(before)
    diffs, levels = [], []
    for _ in range(2000):
        idx = [rng.randrange(n) for _ in range(n)]
        diffs.append(sum(after[i] - before[i] for i in idx) / n)
        levels.append(sum(before[i] for i in idx) / n)
    diffs.sort()
    levels.sort()
    print(f"asked again: {asked} of {len(records)} questions; HasAns: {n}")
    print(f"local HasAns F1 before {100 * sum(before) / n:.1f}, after {100 * sum(after) / n:.1f}")
    print(f"before's 95 % bootstrap interval: {100 * levels[50]:.1f} .. {100 * levels[1949]:.1f}")
    mean = 100 * sum(diffs) / len(diffs)
    print(f"paired change: {mean:+.1f} (95 %: {100 * diffs[50]:+.1f} .. {100 * diffs[1949]:+.1f})")


if __name__ == "__main__":
    main()
