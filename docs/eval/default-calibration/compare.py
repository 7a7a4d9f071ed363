"""The default calibration before and after its rebuild by the recipe (`make calibration`), on stored runs
neither was fitted on, at the service's default prices (a wrong answer $0.005, an abstention $0.01).

    python docs/eval/default-calibration/compare.py

Each run's stored local and paid answers are judged again by each calibration (the stand-in paid model, so
P(paid helps) is each file's own fit) and the cascade re-derived; P(local correct) AUROC is against the
verdict labels eval uses now. Output: compare-output.txt.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from assistant.calibration import Calibration, auroc  # noqa: E402
from eval.configs import Config  # noqa: E402
from eval.labelled_runs import judged_by  # noqa: E402
from eval.records import load_records  # noqa: E402
from eval.summaries import local_correct_labels, summarize  # noqa: E402

HERE = Path(__file__).parent
FITS = {
    "2026-12-05 (fit-2026-12-05.json)": Calibration.load(HERE / "fit-2026-12-05.json"),
    "rebuilt (assistant/data/calibration.json)": Calibration.load(REPO / "assistant/data/calibration.json"),
}
RUNS = ("natural/postgres-heldout", "pydoc-human", "nodejs-human", "natural/samples", "squad-heldout")
CONFIGS = [Config("cascade", "cascade")]


def main() -> None:
    for run in RUNS:
        records = [r for r in load_records(REPO / "docs/eval" / run / "calls.jsonl") if r.complete]
        records = list({r.id: r for r in records}.values())
        records = [
            replace(r, policy=replace(r.policy, wrong_answer_usd=0.005, abstain_usd=0.01)) if r.policy else r
            for r in records
        ]
        has_paid = all(r.paid is not None for r in records)
        print(f"{run} ({len(records)} questions{'' if has_paid else ', no paid answers'})")
        for name, calibration in FITS.items():
            judged = judged_by(records, calibration)
            labels, scores = local_correct_labels(judged)
            line = f"  {name:<44} P(local correct) AUROC {auroc(labels, scores) or 0:.3f}"
            if has_paid:
                (c,) = summarize(judged, CONFIGS)
                t = c.truth
                assert t is not None
                line += (
                    f"; cascade truthfulness {t.score:+.2f} ({t.right} right / {t.missed} missed / {t.wrong} "
                    f"wrong), F1 {c.quality.f1:.1f}, escalates {100 * c.paid_call_rate:.0f} %"
                )
            print(line)


if __name__ == "__main__":
    main()
