"""AUROC of the tenth probe's signals, alone and added to the shipped models' features, out of fold.

Run: ``python docs/eval/answer-pmi/analyse.py RUN_DIR ANSWER_LOGPROBS [RUN_DIR ANSWER_LOGPROBS ...]``
(logistic regression, C = 0.3, standardised, 5 shuffles of 5 stratified folds).
"""

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from eval.labelled_runs import run_records

SHIPPED = json.loads((Path(__file__).resolve().parents[3] / "assistant/data/calibration.json").read_text())
CORRECT_NAMES, ANSWERABLE_NAMES = SHIPPED["features"], SHIPPED["answerable"]["features"]
NEW = ["pmi_generic", "pmi_generic_sum", "pmi_generic_min", "pmi_bare"]
NEW += ["generic_mean", "bare_mean", "real_mean"]


def load(run_dir: str, probe: str) -> tuple[list[dict[str, float]], np.ndarray, np.ndarray]:
    records, correct = run_records(Path(run_dir), False)
    with open(probe, encoding="utf-8") as lines:
        scored = {row["question"]: row for row in map(json.loads, lines)}
    rows, y_correct, y_answerable = [], [], []
    for record, label in zip(records, correct, strict=True):
        probed = scored.get(record.question, {})
        if not all(probed.get(k) for k in ("real", "generic", "bare")):
            continue  # an empty answer, or a prompt too long to score
        real, generic, bare = (np.array(probed[k]) for k in ("real", "generic", "bare"))
        row = dict(record.judgement.features)
        row |= {
            "pmi_generic": real.mean() - generic.mean(),
            "pmi_generic_sum": real.sum() - generic.sum(),
            "pmi_generic_min": (real - generic).min(),
            "pmi_bare": real.mean() - bare.mean(),
            "generic_mean": generic.mean(),
            "bare_mean": bare.mean(),
            "real_mean": real.mean(),
        }
        rows.append(row)
        y_correct.append(label)
        y_answerable.append(record.has_answer)
    return rows, np.array(y_correct), np.array(y_answerable)


def out_of_fold(rows: list[dict[str, float]], y: np.ndarray, names: list[str], shuffles: int = 5) -> float:
    x = np.array([[row.get(n, np.nan) for n in names] for row in rows], dtype=float)
    x = np.where(np.isnan(x), np.nanmean(x, axis=0), x)
    scores = []
    for seed in range(shuffles):
        p = np.zeros(len(y))
        for train, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y):
            model = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=2000))
            p[test] = model.fit(x[train], y[train]).predict_proba(x[test])[:, 1]
        scores.append(roc_auc_score(y, p))
    return float(np.mean(scores))


def report(run_dir: str, probe: str) -> None:
    rows, correct, answerable = load(run_dir, probe)
    has = answerable.astype(bool)
    has_rows = [row for row, h in zip(rows, has, strict=True) if h]
    print(f"== {run_dir}: {len(rows)} answers, {has.sum()} answerable, {correct.sum()} correct")
    print(f"{'signal alone':<26} {'answerable':>10} {'correct':>8} {'corr|has':>8}")
    for name in [*NEW, "mean_logprob", "question_logprob"]:
        v = np.array([row.get(name, np.nan) for row in rows], dtype=float)
        ok = ~np.isnan(v)
        cases = ((answerable, ok), (correct, ok), (correct, has & ok))
        aurocs = [roc_auc_score(y[m], v[m]) for y, m in cases]
        print(f"{name:<26} {aurocs[0]:10.3f} {aurocs[1]:8.3f} {aurocs[2]:8.3f}")
    print("out of fold, the shipped models' features + …")
    for added in [[], *([n] for n in NEW[:4]), ["pmi_generic", "pmi_bare"]]:
        a = out_of_fold(rows, answerable, ANSWERABLE_NAMES + added)
        c = out_of_fold(rows, correct, CORRECT_NAMES + added)
        h = out_of_fold(has_rows, correct[has], CORRECT_NAMES + added)
        print(f"{'+'.join(added) or '(nothing)':<26} {a:10.3f} {c:8.3f} {h:8.3f}")


if __name__ == "__main__":
    for run_dir, probe in zip(sys.argv[1::2], sys.argv[2::2], strict=True):
        report(run_dir, probe)
