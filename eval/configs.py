"""Configs: the ways of answering an eval compares, and what each would have given on a recorded question.

``local`` and ``paid`` take one answer; ``cascade`` decides with the service's own rules
(:mod:`assistant.answering.decision`) under the policy recorded in the run, ``cascade@T`` with threshold T,
``cascade:w=W`` by expected loss at W USD per wrong answer. :func:`derive` is a pure function of a
:class:`~eval.records.QuestionRecord` and a :class:`Config`. Costs are the ledger's numbers for the calls a
config would make (an escalated cascade answer pays both), never recomputed here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from assistant.answering.decision import Decision, Policy, decide
from assistant.answering.judge.evaluator import Judgement
from assistant.answering.prompt.grounded import ABSTAIN_PHRASE
from eval.errors import RunError
from eval.metrics import score, to_prediction
from eval.records import QuestionRecord, TierCall
from eval.verdicts import judge

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
    judged = judge(prediction, answerable=record.has_answer, key_facts=record.key_facts or (), f1=f1)
    return {
        "config": config.name,
        "id": record.id,
        "has_answer": record.has_answer,
        "prediction": prediction,
        "em": em,
        "f1": f1,
        "verdict": judged,  # right | missed | wrong (eval.verdicts): what users value
        "kind": record.kind,
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
