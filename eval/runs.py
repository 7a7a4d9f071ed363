"""The eval run: ask every question once per tier, and keep what came back so each config can be derived.

Per question: retrieval once (the same passages for every config), the local answer with the evaluator's
judgement, the routing policy in force and the pre-generation route, and the paid answer on the same
sources. The record types are :mod:`eval.records`; each config is then a pure function of a record
(:func:`eval.configs.derive`).

Files in the run directory:
- ``calls.jsonl``: one raw record per question (append-only, fsynced); a crashed run resumes from it.
- ``results.jsonl``: one line per question per config, rewritten from ``calls.jsonl``.
- ``run.json``: the run's questions and configs, so a resume over different questions is refused.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from assistant.answering.decision import Decision, Policy
from assistant.answering.judge.evaluator import Judgement
from eval.configs import Config, derive, needed_tiers
from eval.datasets import Dataset, EvalQuestion
from eval.errors import RunError
from eval.jsonl import append_line, atomic_write
from eval.records import QuestionRecord, TierCall, load_records
from index.retrieval import Passage


class Answerer(Protocol):
    """What the run loop needs from Penny. ``eval.answerer`` wires the real cascade and ledger."""

    policy: Policy

    def retrieve(self, question: str) -> list[Passage]: ...

    def answer_local(
        self, question: str, passages: Sequence[Passage], request_id: str
    ) -> tuple[TierCall, Judgement, Decision | None]:
        """The local call, the evaluator's judgement of it, and the route before generation (None:
        generate)."""
        ...

    def paid_worst_case_micro_usd(self, question: str, passages: Sequence[Passage]) -> int: ...

    def answer_paid(self, question: str, passages: Sequence[Passage], request_id: str) -> TierCall: ...

    def answer_paid_batch(self, calls: Sequence[tuple[str, Sequence[Passage], str]]) -> list[TierCall]:
        """Paid answers to (question, passages, request id) calls, asked as one batch; in their order."""
        ...


@dataclass
class RunOutcome:
    out_dir: Path
    records: list[QuestionRecord]
    configs: list[Config]
    asked: int  # questions asked in this invocation (the rest were resumed from calls.jsonl)
    spent_micro_usd: int  # total over the run directory, partial questions included
    stopped: str | None = None  # why the run stopped early (cost limit), None when complete

    @property
    def complete(self) -> bool:
        return self.stopped is None


class EvalRun:
    """A resumable run over ``questions`` into ``out_dir``."""

    def __init__(
        self,
        questions: Sequence[EvalQuestion],
        answerer: Answerer,
        out_dir: Path,
        configs: Sequence[Config],
        *,
        max_cost_micro_usd: int | None = None,
        progress: bool = True,
        meta: dict[str, Any] | None = None,
        paid_from: Sequence[QuestionRecord] = (),
        batch: bool = False,
    ) -> None:
        self.questions = list(questions)
        # Paid answers of an earlier run, reused for a question retrieved to the same passages: the paid
        # tier sees whole passages, so a change to the local tier or the evaluator need not pay again.
        self.paid_from = {r.id: r for r in paid_from if r.paid is not None}
        self.answerer = answerer
        # Ask every question locally first, then all the paid calls as one batch (Batch API prices).
        self.batch = batch
        self.out_dir = Path(out_dir)
        self.configs = list(configs)
        self.max_cost_micro_usd = max_cost_micro_usd
        self.progress = progress
        self.meta = dict(meta or {})
        self.calls_path = self.out_dir / "calls.jsonl"
        self.results_path = self.out_dir / "results.jsonl"
        self.meta_path = self.out_dir / "run.json"

    def run(self) -> RunOutcome:
        from tqdm import tqdm

        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._check_and_write_meta()
        all_records = load_records(self.calls_path)
        done = {r.id: r for r in all_records if r.complete}
        spent = sum(r.spent_micro_usd for r in all_records)
        write_results(self.results_path, [done[q.id] for q in self.questions if q.id in done], self.configs)
        need_local, need_paid = needed_tiers(self.configs)
        remaining = [q for q in self.questions if q.id not in done]
        asked, stopped = 0, None
        bar = tqdm(
            total=len(self.questions),
            initial=len(self.questions) - len(remaining),
            desc="eval",
            unit="q",
            disable=not self.progress,
        )
        try:
            with (
                self.calls_path.open("a", encoding="utf-8") as calls,
                self.results_path.open("a", encoding="utf-8") as results,
            ):
                if self.batch and need_paid:
                    finished, spent, stopped = self._run_batched(remaining, need_local, spent, calls, bar)
                    for record in finished:
                        done[record.id] = record
                        for config in self.configs:
                            append_line(results, json.dumps(derive(record, config), ensure_ascii=False))
                    asked = len(finished)
                    remaining = []
                for question in remaining:
                    if self.max_cost_micro_usd is not None and spent >= self.max_cost_micro_usd:
                        stopped = _stop_message(question, spent, 0, self.max_cost_micro_usd)
                        break
                    record, stop = self._ask(question, need_local, need_paid, spent)
                    spent += record.spent_micro_usd
                    append_line(calls, record.to_json())
                    if stop:
                        stopped = stop
                        break
                    done[record.id] = record
                    for config in self.configs:
                        append_line(results, json.dumps(derive(record, config), ensure_ascii=False))
                    asked += 1
                    bar.update(1)
                    bar.set_postfix(spent=f"${spent / 1e6:.4f}")
        finally:
            bar.close()
        records = [done[q.id] for q in self.questions if q.id in done]
        write_results(self.results_path, records, self.configs)
        return RunOutcome(self.out_dir, records, self.configs, asked, spent, stopped)

    def _run_batched(
        self, remaining: Sequence[EvalQuestion], need_local: bool, spent: int, calls: Any, bar: Any
    ) -> tuple[list[QuestionRecord], int, str | None]:
        """``--batch``: every question locally first, then all their paid calls as one batch at batch
        prices. Returns the complete records, the spend so far and why the run stopped early (None).

        A question whose paid worst case would pass ``--max-cost-usd`` is written incomplete (its local
        spend counted) and asked again on resume; the records are written once the batch has answered."""
        stopped = None
        asked: list[tuple[EvalQuestion, QuestionRecord, list[Passage]]] = []
        for question in remaining:
            if self.max_cost_micro_usd is not None and spent >= self.max_cost_micro_usd:
                stopped = _stop_message(question, spent, 0, self.max_cost_micro_usd)
                break
            record, passages = self._ask_local(question, need_local)
            spent += record.spent_micro_usd
            asked.append((question, record, passages))
            bar.set_postfix(local=len(asked), spent=f"${spent / 1e6:.4f}")
        held = spent  # spend plus the worst case of every paid call sent
        batch: list[tuple[QuestionRecord, EvalQuestion, list[Passage]]] = []
        for question, record, passages in asked:
            if record.paid is not None or self._reuse_paid(record):
                continue
            stop = stopped or self._over_limit(question, passages, held)
            if stop is not None:
                stopped, record.complete = stop, False
                continue
            held += self.answerer.paid_worst_case_micro_usd(question.question, passages)
            batch.append((record, question, passages))
        calls_asked = [(q.question, p, _request_id(q, "paid")) for _, q, p in batch]
        for (record, _, _), paid in zip(batch, self.answerer.answer_paid_batch(calls_asked), strict=True):
            record.paid = paid
            spent += paid.cost_micro_usd
        for _, record, _ in asked:
            append_line(calls, record.to_json())
            if record.complete:
                bar.update(1)
        return [record for _, record, _ in asked if record.complete], spent, stopped

    def _ask(
        self, question: EvalQuestion, need_local: bool, need_paid: bool, spent: int
    ) -> tuple[QuestionRecord, str | None]:
        record, passages = self._ask_local(question, need_local)
        if need_paid and not self._reuse_paid(record):
            stop = self._over_limit(question, passages, spent + record.spent_micro_usd)
            if stop is not None:
                record.complete = False
                return record, stop
            record.paid = self.answerer.answer_paid(
                question.question, passages, _request_id(question, "paid")
            )
        return record, None

    def _ask_local(self, question: EvalQuestion, need_local: bool) -> tuple[QuestionRecord, list[Passage]]:
        started = time.perf_counter()
        passages = self.answerer.retrieve(question.question)
        record = QuestionRecord(
            id=question.id,
            question=question.question,
            answers=list(question.answers),
            context_id=question.context_id,
            retrieved_ids=[p.id for p in passages],
            retrieval_ms=round((time.perf_counter() - started) * 1000, 1),
            kind=question.kind,
            key_facts=[list(group) for group in question.key_facts] or None,
        )
        if need_local:
            record.local, record.judgement, record.route = self.answerer.answer_local(
                question.question, passages, _request_id(question, "local")
            )
            record.policy = self.answerer.policy
        return record, passages

    def _reuse_paid(self, record: QuestionRecord) -> bool:
        """Take an earlier run's paid answer where the question retrieves the same passages (a failed,
        degraded one is asked again)."""
        earlier = self.paid_from.get(record.id)
        if earlier is None or earlier.paid is None or earlier.paid.degraded:
            return False
        if earlier.retrieved_ids != record.retrieved_ids:
            return False
        record.paid = earlier.paid
        return True

    def _over_limit(self, question: EvalQuestion, passages: Sequence[Passage], so_far: int) -> str | None:
        """Why the paid call's worst case would take the run past ``--max-cost-usd``, or None."""
        if self.max_cost_micro_usd is None:
            return None
        worst = self.answerer.paid_worst_case_micro_usd(question.question, passages)
        if so_far + worst > self.max_cost_micro_usd:
            return _stop_message(question, so_far, worst, self.max_cost_micro_usd)
        return None

    def _check_and_write_meta(self) -> None:
        ids = [q.id for q in self.questions]
        if self.meta_path.exists():
            previous = json.loads(self.meta_path.read_text(encoding="utf-8"))
            if previous.get("question_ids") != ids:
                raise RunError(
                    f"{self.out_dir} holds a run over different questions (dataset, --limit or --seed "
                    "changed); use a new --out directory, or the same arguments to resume it"
                )
        meta = {
            **self.meta,
            "question_ids": ids,
            "configs": [asdict(c) for c in self.configs],
            "default_rule": self.answerer.policy.rule,
            "policy": asdict(self.answerer.policy),
            "max_cost_micro_usd": self.max_cost_micro_usd,
        }
        atomic_write(self.meta_path, json.dumps(meta, indent=2, ensure_ascii=False))


def _request_id(question: EvalQuestion, tier: str) -> str:
    # A fresh suffix per attempt: a resumed question is a new request in the ledger, never a replay.
    return f"eval-{tier}-{question.id}-{uuid.uuid4().hex[:8]}"


def _stop_message(question: EvalQuestion, spent: int, worst: int, limit: int) -> str:
    return (
        f"stopped before question {question.id}: spent ${spent / 1e6:.6f}"
        + (f" + paid worst case ${worst / 1e6:.6f}" if worst else "")
        + f" would exceed --max-cost-usd ${limit / 1e6:.6f}"
    )


def write_results(path: Path, records: Sequence[QuestionRecord], configs: Sequence[Config]) -> None:
    """Rewrite ``results.jsonl`` (per question per config) from the complete records."""
    lines = [json.dumps(derive(r, c), ensure_ascii=False) for c in configs for r in records]
    atomic_write(path, "".join(line + "\n" for line in lines))


def read_results(path: Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def questions_from(dataset: Dataset, limit: int | None, seed: int) -> list[EvalQuestion]:
    return dataset.sample(limit, seed).questions
