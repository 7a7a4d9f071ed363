"""``penny calibrate``: fit the evaluator on a collection's own documents, and refit from live traffic.

From a collection: the paid tier writes questions from its chunks (:mod:`eval.synthetic`), each runs the
real path (the cascade's retrieval, the local answer, the paid answer) as an eval run, and the evaluator's
three models are fitted on those labels (:func:`eval.calibrate.calibrate`). The file lands where the
service looks for that collection's calibration, so the next question on it uses the new fit.

From the ledger: shadow labels (a served local answer checked by the paid tier) are added to the synthetic
ones and the two label-bearing models refitted (:func:`refit_from_ledger`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from eval.runs import Config, EvalRun, QuestionRecord, RunError

if TYPE_CHECKING:
    from assistant.answering.calibration import Calibration
    from assistant.settings import Settings
    from eval.calibrate import CalibrationOutcome
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
) -> CollectionCalibration:
    """Write ``questions`` synthetic questions from ``collection``, answer them on the real path, fit, and
    write the collection's calibration (default: where the service looks, see
    :func:`assistant.answering.calibration.collection_calibration_path`).

    P(answerable), the gate that makes the cascade abstain, is kept from the default calibration unless
    ``synthetic_gate``: swapped-entity probes do not stand in for real unanswerable questions (on SQuAD the
    synthetic gate scored AUROC 0.52 on real questions and abstained on most of them; see
    docs/eval/synthetic-squad). Shadow labels (``--from-ledger``) refit the gate from real traffic.
    """
    from assistant.answering.calibration import collection_calibration_path
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
    work = work_dir or settings.calibration_dir / f"{collection}.run"
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
    answerer, meta = build_answerer(settings, dataset, collection, [c.name for c in RUN_CONFIGS])
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
    ).run()
    result.run_spent_micro_usd = run.spent_micro_usd
    if run.stopped:
        result.stopped = run.stopped
        return result
    try:
        result.fit = calibrate(work / "run", out=target, seed=seed)
    except RunError as exc:
        raise RunError(
            f"collection {collection}: cannot fit the evaluator on {len(dataset.questions)} questions "
            f"({str(exc).split(': ', 1)[-1].split(' — ')[0]}); write more with a larger --questions, and "
            "rerun: answers already recorded are kept"
        ) from exc
    if not synthetic_gate:
        from assistant.answering.calibration import Calibration

        fitted = Calibration.load(target)
        default = Calibration.load(settings.cascade.calibration_file)
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


@dataclass
class LedgerRefit:
    path: Path
    shadow_labels: int
    synthetic_labels: int
    auroc: dict[str, float | None] = field(default_factory=dict)

    def lines(self) -> list[str]:
        scores = ", ".join(f"{k} {'–' if v is None else f'{v:.3f}'}" for k, v in self.auroc.items())
        return [
            f"refitted on {self.shadow_labels} shadow labels from the ledger and {self.synthetic_labels} "
            f"synthetic ones; out-of-fold AUROC: {scores or '–'}",
            f"calibration written to {self.path}",
        ]


def refit_from_ledger(
    settings: Settings,
    *,
    collection: str | None = None,
    since: datetime | None = None,
    out: Path | None = None,
    folds: int = 5,
    seed: int = 0,
) -> LedgerRefit:
    """Refit P(local correct) and P(answerable) on the ledger's shadow labels plus the collection's
    synthetic ones. A shadow label is the paid tier's verdict, not ground truth: "local correct" is
    agreement with the paid answer, "answerable" is the paid tier not abstaining. P(paid helps) has no
    such label (the paid answer is the reference), so it is kept from the current calibration."""
    from assistant.answering.calibration import Calibration, collection_calibration_path, fit
    from assistant.ledger import open_ledger
    from eval.calibrate import _training_set
    from eval.runs import load_records

    ledger = open_ledger(settings, paid_models=())
    labels = ledger.shadow_labels(collection=collection, since=since)
    rows: list[dict[str, float]] = [dict(label.features) for label in labels]
    correct: list[bool] = [label.agreed for label in labels]
    answerable: list[bool] = [not label.paid_abstained for label in labels]
    synthetic = 0
    if collection is not None:
        calls = settings.calibration_dir / f"{collection}.run" / "run" / "calls.jsonl"
        if calls.exists():
            usable, ys = _training_set([r for r in load_records(calls) if r.complete])
            rows += [r.judgement.features for r in usable if r.judgement]
            correct += ys
            answerable += [r.has_answer for r in usable]
            synthetic = len(usable)
    if len(rows) < 10 or len(set(correct)) < 2:
        raise RunError(
            f"{len(rows)} labelled answers ({sum(correct)} correct); a refit needs at least 10 with both "
            "outcomes: raise cascade.shadow_rate, or run `penny calibrate --collection` first"
        )
    target = out or (
        collection_calibration_path(settings.calibration_dir, collection)
        if collection
        else settings.calibration_dir / "ledger.json"
    )
    base = (
        Calibration.load(target) if target.exists() else Calibration.load(settings.cascade.calibration_file)
    )
    meta = {"source": "penny calibrate --from-ledger", "shadow_labels": len(labels), "synthetic": synthetic}
    model = fit(rows, correct, regularization_c=0.1, meta=meta)
    scores: dict[str, float | None] = {"local_correct": _oof_auroc(rows, correct, folds, seed)}
    if len(set(answerable)) == 2 and min(sum(answerable), len(answerable) - sum(answerable)) >= 3:
        model.answerable = fit(rows, answerable, regularization_c=0.1, meta={"label": "paid tier answered"})
        model.abstain_below = base.abstain_below
        scores["answerable"] = _oof_auroc(rows, answerable, folds, seed)
    model.paid_helps = base.paid_helps
    model.save(target)
    return LedgerRefit(target, len(labels), synthetic, scores)


def _oof_auroc(
    rows: Sequence[dict[str, float]], labels: Sequence[bool], folds: int, seed: int
) -> float | None:
    from eval.calibrate import out_of_fold
    from eval.metrics import auroc

    if min(sum(labels), len(labels) - sum(labels)) < 2:
        return None
    return auroc(labels, out_of_fold(rows, labels, folds, seed, 0.1))


@dataclass(frozen=True)
class DecisionComparison:
    name: str
    n: int
    auroc_synthetic: float | None  # the synthetic fit, scored on the real questions (never fitted on them)
    auroc_real_oof: float | None  # fitted on the real labels, out of fold

    @property
    def ratio(self) -> float | None:
        if self.auroc_synthetic is None or not self.auroc_real_oof:
            return None
        return self.auroc_synthetic / self.auroc_real_oof


def compare_on_real(
    records: Sequence[QuestionRecord], synthetic: Calibration, *, folds: int = 5, seed: int = 0
) -> tuple[list[DecisionComparison], list[QuestionRecord], list[QuestionRecord]]:
    """Each decision's AUROC on the real questions: the synthetic calibration's (fitted without a real
    label) against a fit on the real labels (out of fold, the best that data can do).

    Also returns the records rescored both ways, for the two cascade frontiers.
    """
    from eval.calibrate import (
        PAID_HELPS_FEATURES,
        _fit_decision,
        _training_set,
        paid_correct_labels,
        rescored,
    )
    from eval.metrics import auroc

    usable, labels = _training_set(records)
    features = [r.judgement.features for r in usable if r.judgement]
    has_answer = [r.has_answer for r in usable]
    paid_right = paid_correct_labels(usable)
    wrong = [i for i, y in enumerate(labels) if not y and paid_right[i] is not None]
    options = {"folds": folds, "seed": seed, "regularization_c": None}
    out: list[DecisionComparison] = []
    oof: dict[str, list[float]] = {}
    tasks = (
        ("local_correct", features, labels, synthetic, None),
        ("answerable", features, has_answer, synthetic.answerable, None),
        (
            "paid_helps",
            [features[i] for i in wrong],
            [bool(paid_right[i]) for i in wrong],
            synthetic.paid_helps,
            PAID_HELPS_FEATURES,
        ),
    )
    for name, rows, ys, model, names in tasks:
        fitted = _fit_decision(name, name, rows, ys, names=names, **options)  # type: ignore[arg-type]
        if fitted is not None:
            oof[name] = fitted[1]
            if name == "paid_helps":  # scored on local-right questions too, by the fit on all local-wrong
                helps: list[float | None] = [fitted[2].probability(f) for f in features]
                for i, p in zip(wrong, fitted[1], strict=True):
                    helps[i] = p
        score = None if model is None else auroc(ys, [model.probability(r) for r in rows])
        out.append(DecisionComparison(name, len(ys), score, fitted[0].auroc if fitted else None))
    synthetic_records = rescored(
        usable,
        [synthetic.probability(f) for f in features],
        [synthetic.p_answerable(f) for f in features],
        [synthetic.p_paid_helps(f) for f in features],
    )
    if "paid_helps" not in oof:
        helps = [None] * len(usable)
    real_records = rescored(usable, oof["local_correct"], oof.get("answerable"), helps)
    return out, synthetic_records, real_records


def write_synthetic_report(
    out_dir: Path,
    records: Sequence[QuestionRecord],
    synthetic: Calibration,
    meta: dict[str, object],
    *,
    seed: int = 0,
) -> tuple[Path, list[DecisionComparison]]:
    """``synthetic.md``: per decision, the synthetic fit's AUROC on the real questions against the
    real-label out-of-fold fit, and both cascades' frontiers (one row per price of a wrong answer)."""
    from eval.calibrate import price_configs
    from eval.report import summarize

    comparisons, synthetic_records, real_records = compare_on_real(records, synthetic, seed=seed)
    ratio = float(synthetic.meta.get("recommended_abstain_usd", 0.0)) / float(
        synthetic.meta.get("recommended_wrong_answer_usd", 1.0) or 1.0
    )
    configs = [Config("local", "local"), Config("paid", "paid"), *price_configs(ratios=(ratio or 1.0,))]
    rows_synthetic = summarize(synthetic_records, configs)
    rows_real = summarize(real_records, configs)
    paid_cost = rows_synthetic[1].mean_cost_micro_usd or 1.0

    def fmt(value: float | None, digits: int = 3) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    n_has = sum(r.has_answer for r in synthetic_records)
    lines = [
        f"# Synthetic calibration, scored on real questions: {meta.get('dataset', '')}",
        "",
        f"Fitted on {synthetic.meta.get('n', '?')} questions the paid tier wrote from the dataset's own "
        f"contexts (no real label used); scored on {len(synthetic_records)} real questions ({n_has} HasAns, "
        f"{len(synthetic_records) - n_has} NoAns). The real-label column is the best the real labels can do: "
        "each question scored by a model fitted on the other folds (5-fold).",
        "",
        "| decision | questions | AUROC, synthetic fit | AUROC, real labels (out of fold) | ratio |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {c.name} | {c.n} | {fmt(c.auroc_synthetic)} | {fmt(c.auroc_real_oof)} | "
            f"{'–' if c.ratio is None else f'{100 * c.ratio:.0f} %'} |"
            for c in comparisons
        ),
        "",
        f"## Cascade frontier (abstention priced at {ratio:g}× a wrong answer)",
        "",
        "| wrong answer | synthetic: F1 | HasAns | NoAns | cost vs paid | real labels: F1 | HasAns | NoAns "
        "| cost vs paid |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s, r in zip(rows_synthetic, rows_real, strict=True):
        name = s.config.name if s.config.wrong_answer_usd is None else f"${s.config.wrong_answer_usd:g}"
        lines.append(
            f"| {name} | {s.quality.f1:.1f} | {fmt(s.quality.has_ans_f1, 1)} | "
            f"{fmt(s.quality.no_ans_f1, 1)} | {100 * s.mean_cost_micro_usd / paid_cost:.0f} % | "
            f"{r.quality.f1:.1f} | "
            f"{fmt(r.quality.has_ans_f1, 1)} | {fmt(r.quality.no_ans_f1, 1)} | "
            f"{100 * r.mean_cost_micro_usd / paid_cost:.0f} % |"
        )
    path = Path(out_dir) / "synthetic.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, comparisons
