"""A stored eval run judged again by another calibration at other prices, without generating again.

The natural-question runs here were asked while the calibration they were then judged by was the one
being replaced; the answers do not depend on it except where a second local try was kept or dropped
(decision.better), which this counts. Writes ``report.md`` and the plots for the run re-derived.

    python docs/eval/natural/rejudge.py RUN_DIR CALIBRATION.json --wrong-answer-usd W --abstain-usd A \
        --out DIR
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from assistant.calibration import Calibration
from eval.configs import parse_configs
from eval.labelled_runs import judged_by
from eval.records import load_records
from eval.report import write_report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("calibration", type=Path)
    parser.add_argument("--wrong-answer-usd", type=float, required=True)
    parser.add_argument("--abstain-usd", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    records = [r for r in load_records(args.run / "calls.jsonl") if r.complete]
    records = judged_by(list({r.id: r for r in records}.values()), Calibration.load(args.calibration))
    records = [
        replace(
            r, policy=replace(r.policy, wrong_answer_usd=args.wrong_answer_usd, abstain_usd=args.abstain_usd)
        )
        if r.policy
        else r
        for r in records
    ]
    kept = sum("retried" in (r.local.reason if r.local else "") for r in records)
    meta = json.loads((args.run / "run.json").read_text(encoding="utf-8"))
    meta["default_rule"] = (
        f"{args.calibration.name} at a wrong answer ${args.wrong_answer_usd:g}, an abstention "
        f"${args.abstain_usd:g} (re-judged; {kept} local answers had a second try, chosen under the "
        "calibration of the time)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    configs = parse_configs(["local", "paid", "cascade", "frontier"])
    report, _ = write_report(args.out, records, configs, meta)
    print(report)


if __name__ == "__main__":
    main()
