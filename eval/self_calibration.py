"""``penny calibrate``: fit the evaluator on a collection's own documents, and refit from live traffic.

From a collection: the paid tier writes questions from its chunks (:mod:`eval.synthetic`), each runs the
real path (the cascade's retrieval, the local answer, the paid answer) as an eval run, and the evaluator's
three models are fitted on those labels (:func:`eval.calibrate.calibrate`). The file lands where the
service looks for that collection's calibration, so the next question on it uses the new fit.

From the ledger: shadow labels (a served local answer checked by the paid tier) are added to the synthetic
ones (:func:`synthetic_labels`) and the two label-bearing models refitted
(:func:`assistant.calibration.refit_from_ledger`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.calibration import LabelledAnswers, collection_work_dir
from eval.configs import Config
from eval.errors import RunError
from eval.runs import EvalRun

if TYPE_CHECKING:
    from assistant.settings import Settings
    from eval.calibration_outcome import CalibrationOutcome
    from eval.synthetic import GenerationOutcome


RUN_CONFIGS = (Config("local", "local"), Config("paid", "paid"), Config("cascade", "cascade"))


@dataclass
class CollectionCalibration:
    collection: str
    work_dir: Path  # questions, attempts and the eval run: rerun the same command to resume
    generation: GenerationOutcome
    path: Path | None = None  # the calibration written, None when stopped short
    fit: CalibrationOutcome | None = None
    run_spent_micro_usd: int = 0
    stopped: str | None = None
    serves: bool = True  # written where the service looks for this collection (not to --out elsewhere)

    @property
    def spent_micro_usd(self) -> int:
        return self.generation.spent_micro_usd + self.run_spent_micro_usd

    def lines(self) -> list[str]:
        g = self.generation
        kinds: dict[str, int] = {}
        for q in g.questions:
            kinds[q.kind] = kinds.get(q.kind, 0) + 1
        out = [
            f"collection {self.collection}: {len(g.questions)} questions kept of {g.attempts} drawn ("
            + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
            + ")",
        ]
        if g.rejected:
            out.append("  rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(g.rejected.items())))
        out.append(
            f"spent ${self.spent_micro_usd / 1e6:.6f} (writing ${g.spent_micro_usd / 1e6:.6f}, answering "
            f"${self.run_spent_micro_usd / 1e6:.6f}), charged to the system account"
        )
        if self.fit is not None:
            out.extend(self.fit.lines())
        if self.path is not None and self.serves:
            out.append(f"the service now uses {self.path} for questions on {self.collection}")
        if self.stopped:
            out.append(f"{self.stopped}; rerun the same command (with a higher --max-cost-usd) to go on")
        return out


def calibrate_collection(
    settings: Settings,
    collection: str,
    *,
    questions: int = 300,
    max_cost_micro_usd: int | None = None,
    seed: int = 0,
    progress: bool = True,
    work_dir: Path | None = None,
    out: Path | None = None,
    synthetic_gate: bool = False,
    batch: bool = False,
) -> CollectionCalibration:
    """Write ``questions`` synthetic questions from ``collection``, answer them on the real path, fit, and
    write the collection's calibration (default: where the service looks, see
    :func:`assistant.calibration.collection_calibration_path`).

    P(answerable), the gate that makes the cascade abstain, is kept from the default calibration unless
    ``synthetic_gate``: swapped-entity probes do not stand in for real unanswerable questions (on SQuAD the
    synthetic gate ranked real questions near chance and abstained on most of them; see
    docs/eval/synthetic-squad). Shadow labels (``--from-ledger``) refit the gate from real traffic.
    """
    from assistant.calibration import Calibration, collection_calibration_path
    from assistant.ledger import open_ledger
    from assistant.paid import PaidClient
    from assistant.service import Penny
    from eval.answerer import build_answerer
    from eval.calibrate import calibrate
    from eval.datasets import Dataset, EvalQuestion
    from eval.synthetic import CALIBRATION_ACCOUNT, QuestionWriter, collection_chunks
    from index.store import get_collection

    paid = PaidClient.from_settings(settings.paid)
    if paid is None:
        raise RunError(
            "calibrating a collection needs the paid tier to write questions: set PENNY_PAID__BASE_URL "
            "(offline: `penny paid serve` and PENNY_PAID__MODEL=qwen2.5-1.5b)"
        )
    target = out or collection_calibration_path(settings.calibration_dir, collection)
    work = work_dir or collection_work_dir(settings, collection)
    penny = Penny(settings)
    chunks = collection_chunks(get_collection(penny.chroma, collection), seed)
    if not chunks:
        raise RunError(f"collection {collection!r} is empty: ingest documents first (`penny ingest`)")
    ledger = open_ledger(settings, paid_models=(settings.paid.model,))
    retriever = penny.retriever(collection)
    writer = QuestionWriter(
        paid,
        ledger,
        chunks,
        retriever.search,
        work,
        seed=seed,
        max_cost_micro_usd=max_cost_micro_usd,
        progress=progress,
        retrieval_floor=settings.cascade.retrieval_floor,
    )
    generation = writer.run(questions)
    serves = target == collection_calibration_path(settings.calibration_dir, collection)
    result = CollectionCalibration(collection, work, generation, stopped=generation.stopped, serves=serves)
    if generation.stopped:
        return result
    dataset = Dataset(
        f"calibrate-{collection}",
        [
            EvalQuestion(q.id, q.question, q.answers, q.chunk_id if q.answers else None)
            for q in generation.questions
        ],
    )
    # ``batch``: the run's paid answers go as one batch (Batch API prices); writing the questions cannot,
    # each one's round trip decides the next chunk drawn.
    answerer, meta = build_answerer(settings, dataset, collection, [c.name for c in RUN_CONFIGS], batch=batch)
    answerer.principal = ledger.system_account(CALIBRATION_ACCOUNT)
    remaining = None if max_cost_micro_usd is None else max_cost_micro_usd - generation.spent_micro_usd
    _forget_question_set(work / "run", [q.id for q in dataset.questions])
    run = EvalRun(
        dataset.questions,
        answerer,
        work / "run",
        RUN_CONFIGS,
        max_cost_micro_usd=remaining,
        progress=progress,
        meta=meta | {"dataset": f"synthetic questions from collection {collection}", "seed": seed},
        batch=batch,
    ).run()
    result.run_spent_micro_usd = run.spent_micro_usd
    if run.stopped:
        result.stopped = run.stopped
        return result
    try:
        default = Calibration.load(settings.cascade.calibration_file)
        result.fit = calibrate(work / "run", out=target, seed=seed, features_of=default)
    except RunError as exc:
        raise RunError(
            f"collection {collection}: cannot fit the evaluator on {len(dataset.questions)} questions "
            f"({str(exc).split(': ', 1)[-1].split(' — ')[0]}); write more with a larger --questions, and "
            "rerun: answers already recorded are kept"
        ) from exc
    if not synthetic_gate:
        fitted = Calibration.load(target)
        fitted.answerable, fitted.abstain_below = default.answerable, default.abstain_below
        fitted.meta["answerable"] = "from the default calibration (synthetic probes do not fit the gate)"
        fitted.save(target)
    result.path = target
    return result


def _forget_question_set(run_dir: Path, ids: Sequence[str]) -> None:
    """A resumed calibration may have written more questions than the run saw: let the run take the new
    set. Answers already recorded are kept and reused by question id (``calls.jsonl`` is untouched)."""
    import json

    meta = run_dir / "run.json"
    if meta.exists() and json.loads(meta.read_text(encoding="utf-8")).get("question_ids") != list(ids):
        meta.unlink()


def synthetic_labels(settings: Settings, collection: str) -> LabelledAnswers | None:
    """The labelled answers of ``collection``'s calibration run, for a refit from the ledger
    (:func:`assistant.calibration.refit_from_ledger`); None before ``penny calibrate --collection`` ran."""
    from eval.labelled_runs import training_set
    from eval.records import load_records

    calls = collection_work_dir(settings, collection) / "run" / "calls.jsonl"
    if not calls.exists():
        return None
    usable, correct = training_set([r for r in load_records(calls) if r.complete])
    return LabelledAnswers(
        [r.judgement.features for r in usable if r.judgement], correct, [r.has_answer for r in usable]
    )
