"""The AUROC of the decisions a local-only run can label (local answer correct, answerable) under several
calibration files, on the same stored answers, and a paired bootstrap of the first two's difference.

Run: ``.venv/bin/python docs/eval/squad-heldout/decision_auroc.py RUN_DIR CALIBRATION.json OTHER.json ...``
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from assistant.calibration import Calibration, auroc
from eval.labelled_runs import judged_by
from eval.records import load_records
from eval.summaries import local_correct_labels


def main(run: Path, calibrations: list[Path], resamples: int = 1000) -> None:
    records = [r for r in {r.id: r for r in load_records(run / "calls.jsonl") if r.complete}.values()]
    records = [r for r in records if r.judgement]
    correct, _ = local_correct_labels(records)
    answerable = [r.has_answer for r in records]
    has = [i for i, r in enumerate(records) if r.has_answer]
    scores = {}
    for path in calibrations:
        judged = judged_by(records, Calibration.load(path))
        p_correct = [r.judgement.p_correct if r.judgement else 0.0 for r in judged]
        p_answerable = [r.judgement.p_answerable if r.judgement else 0.0 for r in judged]
        scores[path] = (p_correct, p_answerable)
        on_has = auroc([correct[i] for i in has], [p_correct[i] for i in has])
        print(
            f"{path}: {len(records)} questions; local answer correct {auroc(correct, p_correct):.3f} "
            f"(answerable questions only {on_has:.3f}); answerable {auroc(answerable, p_answerable):.3f}"
        )
    first, second = calibrations[:2]
    rng = random.Random(0)
    for name, k, labels in (("local answer correct", 0, correct), ("answerable", 1, answerable)):
        diffs = []
        for _ in range(resamples):
            idx = [rng.randrange(len(records)) for _ in records]
            ys = [labels[i] for i in idx]
            a = auroc(ys, [scores[first][k][i] for i in idx]) or 0.0
            b = auroc(ys, [scores[second][k][i] for i in idx]) or 0.0
            diffs.append(b - a)
        diffs.sort()
        low, high = diffs[int(0.025 * resamples)], diffs[int(0.975 * resamples) - 1]
        print(f"  {name}, second minus first: 95 % interval {low:+.3f} .. {high:+.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(a) for a in sys.argv[2:]])
