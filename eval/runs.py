"""The eval run: ask every question once per tier, derive every config from those same calls.

Per question: retrieval once (the same passages for every config), the local answer with the evaluator's
judgement, the routing policy in force and the pre-generation route, and the paid answer on the same
sources. Each config is then a pure function of that record (``derive``): ``local`` and ``paid`` take one
answer; ``cascade@T`` applies the service's own rules (:mod:`assistant.answering.decision`) with threshold
T. Costs are the ledger's numbers for the calls a config would make (an escalated cascade answer pays
both), never recomputed here.

Files in the run directory:
- ``calls.jsonl``: one raw record per question (append-only, fsynced); a crashed run resumes from it.
- ``results.jsonl``: one line per question per config, rewritten from ``calls.jsonl``.
- ``run.json``: the run's questions and configs, so a resume over different questions is refused.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from assistant.answering.decision import Decision, Judgement, Policy, decide
from assistant.answering.prompts import ABSTAIN_PHRASE
from eval.datasets import Dataset, EvalQuestion
from eval.metrics import score, to_prediction
from index.retrieval import Passage

SWEEP_GRID: tuple[float, ...] = tuple(round(i * 0.05, 2) for i in range(21))
# Prices of a wrong answer for the expected-loss frontier, in USD: from "barely worth a paid call" to
# "worth many" (a paid answer costs ~$0.002 at gpt-4o prices).
PRICE_GRID: tuple[float, ...] = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.1,
)
CORRECT_F1 = 0.5  # "the local answer is correct" for AUROC and calibration: F1 ≥ this (NoAns: abstained)


class RunError(RuntimeError):
    """The run cannot start or continue as asked; the message says what to change."""


# ---------------------------------------------------------------------------------------------- records


@dataclass
class TierCall:
    """One answer from one tier, with the cost the ledger recorded for its request id."""

    answer: str
    request_id: str
    tier: str  # who actually answered: local | paid | cache | none
    cost_micro_usd: int
    latency_ms: float  # the tier's own time, retrieval excluded (retrieval is counted once per question)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    degraded: bool = False  # the paid tier failed and the service fell back to the local answer
    reason: str = ""


@dataclass
class QuestionRecord:
    """One line of ``calls.jsonl``: everything every config needs for one question.

    With the local call come the evaluator's ``judgement`` of it, the ``policy`` in force, and ``route``:
    what the service decides before generation (retrieval found nothing relevant: abstain or escalate
    without spending local compute), None when it generates.
    """

    id: str
    question: str
    answers: list[str]
    context_id: str | None
    retrieved_ids: list[str]
    retrieval_ms: float
    local: TierCall | None = None
    judgement: Judgement | None = None
    paid: TierCall | None = None
    complete: bool = True
    policy: Policy | None = None
    route: Decision | None = None

    @property
    def has_answer(self) -> bool:
        return bool(self.answers)

    @property
    def spent_micro_usd(self) -> int:
        return sum(c.cost_micro_usd for c in (self.local, self.paid) if c is not None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuestionRecord:
        data = dict(data)
        if data.get("judgement") and "route" in data["judgement"]:
            data |= _from_first_format(data["judgement"])
        for key in ("local", "paid"):
            data[key] = TierCall(**data[key]) if data.get(key) else None
        data["judgement"] = Judgement(**data["judgement"]) if data.get("judgement") else None
        data["policy"] = Policy(**data["policy"]) if data.get("policy") else None
        data["route"] = _decision(data["route"]) if data.get("route") else None
        return cls(**data)


def _decision(data: dict[str, Any]) -> Decision:
    judgement = data.get("judgement")
    return Decision(
        action=data["action"],
        reason=data["reason"],
        judgement=Judgement(**judgement) if judgement else None,
        features=dict(data.get("features") or {}),
    )


def _from_first_format(old: dict[str, Any]) -> dict[str, Any]:
    """Fields of a record written before the judgement followed the service's decision module.

    That judgement held the route ("generate", "abstain", "escalate") and ``forced`` (the policy's answer
    to a local abstention) but no policy: the settings' defaults stand in for what it does not say, and
    the threshold default is the 0.5 derive then assumed.
    """
    from assistant.settings import CascadeSettings

    features = dict(old.get("features") or {})
    route = old.get("route", "generate")
    policy = Policy.from_settings(CascadeSettings())
    policy = replace(
        policy,
        escalate_below=0.5,
        on_empty_retrieval=route if route != "generate" else policy.on_empty_retrieval,
        on_local_abstain=old.get("forced") or policy.on_local_abstain,
    )
    return {
        "judgement": {
            "p_correct": old["p_correct"],
            "p_answerable": old.get("p_answerable"),
            "abstain_below": old.get("abstain_below", 0.0),
            "features": features,
            "local_abstained": old.get("forced") is not None or bool(features.get("abstained")),
        },
        "policy": asdict(policy),
        "route": None if route == "generate" else {"action": route, "reason": old.get("reason", "")},
    }


# ---------------------------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class Config:
    """One way of answering, derived from the run's calls.

    A cascade decides by the policy recorded in the run, unless the config names a ``threshold`` (the
    threshold rule) or a ``wrong_answer_usd`` (the expected-loss rule at that price of a wrong answer,
    abstaining priced at ``abstain_ratio`` of it).
    """

    name: str
    kind: str  # local | paid | cascade
    threshold: float | None = None
    sweep: bool = False
    abstain_below: float | None = None  # None: the calibration's own answerable gate
    wrong_answer_usd: float | None = None
    abstain_ratio: float | None = None  # None: the recorded policy's abstain_usd


def threshold_name(threshold: float) -> str:
    return f"cascade@{threshold:.2f}"


def price_name(wrong_answer_usd: float) -> str:
    return f"cascade:w={wrong_answer_usd:g}"


def parse_configs(names: Sequence[str]) -> list[Config]:
    """``local``, ``paid``, ``cascade`` (the recorded policy), ``cascade@T`` (threshold rule),
    ``cascade:w=W`` (expected loss at W USD per wrong answer), ``sweep`` (T on a grid) and ``frontier``
    (W on a grid)."""
    configs: dict[str, Config] = {}
    for raw in names:
        name = raw.strip().lower()
        if name in ("local", "paid"):
            configs[name] = Config(name, name)
        elif name == "cascade":
            configs[name] = Config(name, "cascade")
        elif name.startswith("cascade:w="):
            try:
                price = float(name.split("=", 1)[1])
            except ValueError:
                price = -1.0
            if not price >= 0:
                raise RunError(f"config {raw!r}: the price after w= must be a number of USD ≥ 0")
            configs.setdefault(
                price_name(price), Config(price_name(price), "cascade", wrong_answer_usd=price)
            )
        elif name == "frontier":
            for price in PRICE_GRID:
                config = Config(price_name(price), "cascade", sweep=True, wrong_answer_usd=price)
                configs.setdefault(config.name, config)
        elif name.startswith("cascade@"):
            try:
                threshold = float(name.split("@", 1)[1])
            except ValueError:
                threshold = -1.0
            if not 0.0 <= threshold <= 1.0:
                raise RunError(f"config {raw!r}: the threshold after @ must be a number in [0, 1]")
            config = Config(threshold_name(threshold), "cascade", threshold)
            configs.setdefault(config.name, config)
        elif name == "sweep":
            for threshold in SWEEP_GRID:
                config = Config(threshold_name(threshold), "cascade", threshold, sweep=True)
                configs.setdefault(config.name, config)
        else:
            raise RunError(
                f"unknown config {raw!r}: use local, paid, cascade, cascade@T (0≤T≤1), cascade:w=USD, sweep "
                "or frontier"
            )
    if not configs:
        raise RunError("no config given: pass --config local/paid/cascade/cascade@T/cascade:w=USD/sweep")
    return list(configs.values())


def needed_tiers(configs: Iterable[Config]) -> tuple[bool, bool]:
    """(local, paid): which tiers the run must call. A local-only run never touches the paid tier."""
    kinds = {c.kind for c in configs}
    return bool(kinds & {"local", "cascade"}), bool(kinds & {"paid", "cascade"})


# ---------------------------------------------------------------------------------------------- derive


def is_correct(record_has_answer: bool, em: float, f1: float) -> bool:
    return f1 >= CORRECT_F1 if record_has_answer else em == 1.0


def derive(record: QuestionRecord, config: Config) -> dict[str, Any]:
    """The answer, cost and latency that ``config`` would have given on this question."""
    calls: list[TierCall]
    served: TierCall | None  # the call whose answer is served; None: the service abstains
    judgement, escalated, paid = record.judgement, False, record.paid
    if config.kind == "local":
        served = _need(record.local, config, record)
        calls = [served]
    elif config.kind == "paid":
        served = _need(paid, config, record)
        calls = [served]
    else:
        local, paid = _need(record.local, config, record), _need(paid, config, record)
        if record.route is not None:  # decided before generation: the local call would not be made
            local_calls: list[TierCall] = []
            action = record.route.action
        else:
            if judgement is None or record.policy is None:
                raise RunError(f"question {record.id} has a local answer but no judgement or policy")
            local_calls = [local]
            action = decide_config(record, judgement, record.policy, config, paid).action
        if action == "abstain":
            calls, served = local_calls, None
        elif action == "escalate":
            calls, served, escalated = [*local_calls, paid], paid, True
        else:
            calls, served = local_calls, local
    answer = served.answer if served else ABSTAIN_PHRASE
    prediction = to_prediction(answer)
    em, f1 = score(prediction, record.answers)
    return {
        "config": config.name,
        "id": record.id,
        "has_answer": record.has_answer,
        "prediction": prediction,
        "em": em,
        "f1": f1,
        "tier": served.tier if served else "none",
        "escalated": escalated,
        "paid_call": any(c is paid for c in calls),
        "degraded": bool(served and served.degraded),
        "cost_micro_usd": sum(c.cost_micro_usd for c in calls),
        "latency_ms": round(record.retrieval_ms + sum(c.latency_ms for c in calls), 1),
        "p_correct": judgement.p_correct if judgement else None,
        "request_ids": [c.request_id for c in calls],
    }


def decide_config(
    record: QuestionRecord, judgement: Judgement, policy: Policy, config: Config, paid: TierCall
) -> Decision:
    """The service's decision under ``config``. The paid call's expected cost is what the ledger charged
    for it in this run (the service estimates it from the price table before the call)."""
    if config.abstain_ratio is not None and config.wrong_answer_usd is not None:
        policy = replace(policy, abstain_usd=config.abstain_ratio * config.wrong_answer_usd)
    return decide(
        judgement,
        policy,
        threshold=config.threshold,
        abstain_below=config.abstain_below,
        paid_cost_usd=paid.cost_micro_usd / 1e6,
        wrong_answer_usd=config.wrong_answer_usd,
    )


def _need(call: TierCall | None, config: Config, record: QuestionRecord) -> TierCall:
    if call is None:
        raise RunError(
            f"config {config.name} needs a tier this run did not call for question {record.id}; "
            "re-run with that config in --config so both tiers are asked"
        )
    return call


# ---------------------------------------------------------------------------------------------- answerer


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


# ---------------------------------------------------------------------------------------------- run loop


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
    ) -> None:
        self.questions = list(questions)
        # Paid answers of an earlier run, reused for a question retrieved to the same passages: the paid
        # tier sees whole passages, so a change to the local tier or the evaluator need not pay again.
        self.paid_from = {r.id: r for r in paid_from if r.paid is not None}
        self.answerer = answerer
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
                for question in remaining:
                    if self.max_cost_micro_usd is not None and spent >= self.max_cost_micro_usd:
                        stopped = _stop_message(question, spent, 0, self.max_cost_micro_usd)
                        break
                    record, stop = self._ask(question, need_local, need_paid, spent)
                    spent += record.spent_micro_usd
                    _append(calls, record.to_json())
                    if stop:
                        stopped = stop
                        break
                    done[record.id] = record
                    for config in self.configs:
                        _append(results, json.dumps(derive(record, config), ensure_ascii=False))
                    asked += 1
                    bar.update(1)
                    bar.set_postfix(spent=f"${spent / 1e6:.4f}")
        finally:
            bar.close()
        records = [done[q.id] for q in self.questions if q.id in done]
        write_results(self.results_path, records, self.configs)
        return RunOutcome(self.out_dir, records, self.configs, asked, spent, stopped)

    def _ask(
        self, question: EvalQuestion, need_local: bool, need_paid: bool, spent: int
    ) -> tuple[QuestionRecord, str | None]:
        started = time.perf_counter()
        passages = self.answerer.retrieve(question.question)
        record = QuestionRecord(
            id=question.id,
            question=question.question,
            answers=list(question.answers),
            context_id=question.context_id,
            retrieved_ids=[p.id for p in passages],
            retrieval_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        if need_local:
            record.local, record.judgement, record.route = self.answerer.answer_local(
                question.question, passages, _request_id(question, "local")
            )
            record.policy = self.answerer.policy
        earlier = self.paid_from.get(question.id)
        if need_paid and earlier is not None and earlier.retrieved_ids == record.retrieved_ids:
            record.paid = earlier.paid
        elif need_paid:
            if self.max_cost_micro_usd is not None:
                worst = self.answerer.paid_worst_case_micro_usd(question.question, passages)
                so_far = spent + record.spent_micro_usd
                if so_far + worst > self.max_cost_micro_usd:
                    record.complete = False
                    return record, _stop_message(question, so_far, worst, self.max_cost_micro_usd)
            record.paid = self.answerer.answer_paid(
                question.question, passages, _request_id(question, "paid")
            )
        return record, None

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
        _atomic_write(self.meta_path, json.dumps(meta, indent=2, ensure_ascii=False))


def _request_id(question: EvalQuestion, tier: str) -> str:
    # A fresh suffix per attempt: a resumed question is a new request in the ledger, never a replay.
    return f"eval-{tier}-{question.id}-{uuid.uuid4().hex[:8]}"


def _stop_message(question: EvalQuestion, spent: int, worst: int, limit: int) -> str:
    return (
        f"stopped before question {question.id}: spent ${spent / 1e6:.6f}"
        + (f" + paid worst case ${worst / 1e6:.6f}" if worst else "")
        + f" would exceed --max-cost-usd ${limit / 1e6:.6f}"
    )


def _append(handle: Any, line: str) -> None:
    handle.write(line + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    """Append one row durably (fsync), for files read back with :func:`read_jsonl`."""
    with path.open("a", encoding="utf-8") as handle:
        _append(handle, json.dumps(row, ensure_ascii=False))


def read_jsonl(path: Path, what: str = "JSON") -> list[dict[str, Any]]:
    """Rows of an append-only JSONL file; a line torn by a crash is cut off so appends stay well-formed."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    rows: list[dict[str, Any]] = []
    good_end = 0
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break  # torn tail: the process died mid-write
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise RunError(f"{path} line {len(rows) + 1} is not {what} ({exc}); move it aside") from exc
        good_end += len(line)
    if good_end < len(raw):
        with path.open("r+b") as handle:
            handle.truncate(good_end)
    return rows


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load_records(path: Path) -> list[QuestionRecord]:
    """Records from ``calls.jsonl`` (a torn last line is cut off, see :func:`read_jsonl`).

    A question that appears more than once (re-asked after a partial record) keeps its last record for
    results, but every record's spend counts.
    """
    records: list[QuestionRecord] = []
    for number, row in enumerate(read_jsonl(path, "a calls record"), start=1):
        try:
            records.append(QuestionRecord.from_dict(row))
        except (TypeError, KeyError) as exc:
            raise RunError(f"{path} line {number} is not a calls record ({exc}); move it aside") from exc
    return records


def write_results(path: Path, records: Sequence[QuestionRecord], configs: Sequence[Config]) -> None:
    """Rewrite ``results.jsonl`` (per question per config) from the complete records."""
    lines = [json.dumps(derive(r, c), ensure_ascii=False) for c in configs for r in records]
    _atomic_write(path, "".join(line + "\n" for line in lines))


def read_results(path: Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def questions_from(dataset: Dataset, limit: int | None, seed: int) -> list[EvalQuestion]:
    return dataset.sample(limit, seed).questions
