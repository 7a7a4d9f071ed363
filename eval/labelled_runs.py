"""The labelled answers a fit reads: a run's complete, judged records, their labels, and copies of them
with other probabilities. Shared by :mod:`eval.calibrate` and :mod:`eval.synthetic_report`, so a fit and a
comparison read the same records the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from eval.errors import RunError
from eval.records import QuestionRecord, load_records
from eval.summaries import local_correct_labels

if TYPE_CHECKING:
    from assistant.calibration import Calibration


def run_records(run_dir: Path, refresh: bool) -> tuple[list[QuestionRecord], list[bool]]:
    """One run's complete, judged records and their "local correct" labels."""
    calls = run_dir / "calls.jsonl"
    if not calls.exists():
        raise RunError(f"{calls} not found: pass the --out directory of an `eval run` (or its results.jsonl)")
    records = [r for r in load_records(calls) if r.complete]
    # A question re-asked after a partial record appears twice: keep its last complete record.
    records = list({r.id: r for r in records}.values())
    if refresh:
        import json

        meta = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        records = refresh_features(records, meta["collection"])
    return training_set(records)


def refresh_features(records: Sequence[QuestionRecord], collection: str) -> list[QuestionRecord]:
    """Copies of ``records`` with the text features they lack (features added after the run) computed
    from their stored question and local answer, on the passages the same retrieval returns again.

    Generation is what a run pays for; a new evidence feature should not need it again. Only missing
    features are filled: the stored ones are what the service computed live. A question whose retrieval
    ranks other passages today is read on the recorded ones, fetched by id; one whose recorded passages
    are gone from the collection is an error, not a silent mismatch.
    """
    from assistant.answering.judge.features import FEATURES, OPTIONAL_FEATURES, text_features
    from assistant.service import Penny
    from assistant.settings import get_settings

    penny = Penny(get_settings())
    retriever = penny.retriever(collection)
    out = []
    for r in records:
        if (
            r.judgement is None
            or r.local is None
            or not (missing := set(FEATURES) - set(OPTIONAL_FEATURES) - set(r.judgement.features))
        ):
            out.append(r)
            continue
        passages = retriever.search(r.question)
        if [p.id for p in passages] != r.retrieved_ids:  # ranked otherwise now: read the recorded ones
            passages = retriever.by_ids(r.retrieved_ids)
        if [p.id for p in passages] != r.retrieved_ids:
            raise RunError(
                f"question {r.id}: the recorded passages are no longer in the collection; re-run it"
            )
        fresh = text_features(r.question, passages, r.local.answer, penny.embedder)
        features = {**r.judgement.features, **{name: fresh[name] for name in missing if name in fresh}}
        out.append(replace(r, judgement=replace(r.judgement, features=features)))
    return out


def training_set(records: Sequence[QuestionRecord]) -> tuple[list[QuestionRecord], list[bool]]:
    usable = [r for r in records if r.local is not None and r.judgement is not None and r.judgement.features]
    labels, _ = local_correct_labels(usable)
    return usable, labels


def rescored(
    records: Sequence[QuestionRecord],
    p_correct: Sequence[float],
    p_answerable: Sequence[float | None] | None = None,
    p_paid_helps: Sequence[float | None] | None = None,
) -> list[QuestionRecord]:
    """Copies of ``records`` whose evaluator probabilities are replaced, for re-deriving cascade configs."""
    gate = list(p_answerable) if p_answerable is not None else [None] * len(records)
    helps = list(p_paid_helps) if p_paid_helps is not None else [None] * len(records)
    return [
        replace(r, judgement=replace(r.judgement, p_correct=p, p_answerable=a, p_paid_helps=h))
        if r.judgement
        else r
        for r, p, a, h in zip(records, p_correct, gate, helps, strict=True)
    ]


def judged_by(records: Sequence[QuestionRecord], calibration: Calibration) -> list[QuestionRecord]:
    """Copies of ``records`` whose three probabilities are ``calibration``'s on their stored features
    (a record without a judgement is kept as it is)."""
    judgements = [r.judgement for r in records]
    return rescored(
        records,
        [0.0 if j is None else calibration.probability(j.features) for j in judgements],
        [None if j is None else calibration.p_answerable(j.features) for j in judgements],
        [
            None if j is None else calibration.p_paid_helps(j.features, local_abstained=j.local_abstained)
            for j in judgements
        ],
    )
