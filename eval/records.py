"""The record of one question asked in a run (``calls.jsonl``), and its JSON both ways.

A :class:`QuestionRecord` holds each tier's answer (:class:`TierCall`), the evaluator's judgement and the
service's route: everything a config is derived from (:mod:`eval.configs`). This module only stores and
reads them; a record written by an older version is read into the current shape here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from assistant.answering.decision import Decision, Policy
from assistant.answering.judge.evaluator import Judgement
from eval.errors import RunError
from eval.jsonl import read_jsonl


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
    kind: str | None = None  # natural-question sets: the question's kind (eval.verdicts.KINDS)
    key_facts: list[list[str]] | None = None  # natural-question sets: what a right answer must hold

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
