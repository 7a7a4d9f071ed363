"""How each config is derived from one question's calls: which answer is served and which calls are paid."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from assistant.answering.decision import Decision, Policy
from assistant.answering.judge.evaluator import Judgement
from assistant.settings import CascadeSettings
from eval.configs import PRICE_GRID, Config, derive, parse_configs
from eval.errors import RunError
from eval.records import QuestionRecord, TierCall

LOCAL = TierCall("Normandy is in France [1].", "l1", "local", cost_micro_usd=20, latency_ms=800.0)
PAID = TierCall("France [1]", "p1", "paid", cost_micro_usd=300, latency_ms=1500.0)
POLICY = Policy.from_settings(CascadeSettings())  # the local model abstained: escalate


def record(
    judgement: Judgement,
    answers: tuple[str, ...] = ("France",),
    *,
    policy: Policy = POLICY,
    route: Decision | None = None,
) -> QuestionRecord:
    return QuestionRecord(
        "q",
        "Where is Normandy?",
        list(answers),
        "ctx",
        ["ctx"],
        10.0,
        LOCAL,
        judgement,
        PAID,
        policy=policy,
        route=route,
    )


def cascade(threshold: float) -> Config:
    return Config(f"cascade@{threshold:.2f}", "cascade", threshold)


def test_threshold_picks_local_or_escalates_and_pays_both() -> None:
    confident = record(Judgement(p_correct=0.7))
    kept = derive(confident, cascade(0.6))
    # local kept: F1 of "Normandy is in France" vs "France" = 2·(1/4)·1/(1/4+1) = 0.4
    assert (kept["tier"], kept["cost_micro_usd"], kept["latency_ms"], kept["f1"]) == ("local", 20, 810.0, 0.4)
    escalated = derive(confident, cascade(0.8))
    assert escalated["tier"] == "paid" and escalated["escalated"] and escalated["paid_call"]
    assert escalated["cost_micro_usd"] == 20 + 300  # the local call was made before escalating
    assert escalated["latency_ms"] == 10.0 + 800.0 + 1500.0
    assert escalated["request_ids"] == ["l1", "p1"] and escalated["em"] == 1.0
    assert derive(confident, cascade(0.7))["tier"] == "local"  # P ≥ T stays local


def test_evaluator_decisions_that_no_threshold_changes() -> None:
    # Retrieval found nothing: abstain before generating, so nothing is spent at all.
    nothing = Decision("abstain", "retrieval_empty top=0.12<0.25")
    routed_abstain = derive(record(Judgement(0.9), route=nothing), cascade(0.0))
    assert (routed_abstain["tier"], routed_abstain["cost_micro_usd"], routed_abstain["prediction"]) == (
        "none",
        0,
        "",
    )
    # ... or straight to the paid tier: only the paid call is paid for.
    straight_to_paid = Decision("escalate", "retrieval_empty top=0.12<0.25")
    routed_paid = derive(record(Judgement(0.9), route=straight_to_paid), cascade(0.0))
    assert (routed_paid["tier"], routed_paid["cost_micro_usd"]) == ("paid", 300)
    # The local model abstained and policy escalates: both calls, whatever T.
    forced = derive(record(Judgement(0.99, local_abstained=True)), cascade(0.0))
    assert (forced["tier"], forced["cost_micro_usd"]) == ("paid", 320)
    # Policy trusts the abstention: an abstention is served (right only on NoAns), local cost paid.
    trusting = replace(POLICY, on_local_abstain="abstain")
    trusted = derive(record(Judgement(0.99, local_abstained=True), (), policy=trusting), cascade(0.5))
    assert (trusted["tier"], trusted["cost_micro_usd"], trusted["em"], trusted["f1"]) == (
        "none",
        20,
        1.0,
        1.0,
    )


def test_answerable_gate_abstains_after_the_local_call() -> None:
    unlikely = Judgement(0.99, p_answerable=0.2, abstain_below=0.5)
    gated = derive(record(unlikely, answers=()), cascade(0.0))
    # The gate needs the local answer's features, so the local call is paid; nothing else is.
    assert (gated["tier"], gated["cost_micro_usd"], gated["em"], gated["paid_call"]) == (
        "none",
        20,
        1.0,
        False,
    )
    # A config may override the run's gate: 0 switches it off, a higher one gates more.
    assert derive(record(unlikely), Config("c", "cascade", 0.5, abstain_below=0.0))["tier"] == "local"
    likely = Judgement(0.2, p_answerable=0.6, abstain_below=0.5)
    assert derive(record(likely), cascade(0.5))["tier"] == "paid"
    assert derive(record(likely), Config("c", "cascade", 0.5, abstain_below=0.7))["tier"] == "none"
    # Without an answerable model (p_answerable None) no gate applies.
    assert derive(record(Judgement(0.9, abstain_below=0.5)), cascade(0.5))["tier"] == "local"


def test_a_cascade_config_without_threshold_uses_the_run_policy() -> None:
    threshold_rule = replace(POLICY, wrong_answer_usd=None)
    unsure = record(Judgement(0.7), policy=replace(threshold_rule, escalate_below=0.8))
    assert derive(unsure, Config("cascade", "cascade"))["tier"] == "paid"
    assert (
        derive(record(Judgement(0.7), policy=threshold_rule), Config("cascade", "cascade"))["tier"] == "local"
    )


def test_expected_loss_configs_weigh_the_paid_cost_the_ledger_recorded() -> None:
    """PAID cost $0.0003. P(local right) 0.7, P(paid helps) 0.9: escalating saves 0.3·0.9·W − $0.0003,
    worth it from W = $0.00111; abstaining (A = W/2, P(answerable) 1) never beats serving here."""
    unsure = record(Judgement(0.7, p_answerable=1.0, p_paid_helps=0.9))
    cheap, dear = (
        Config("w=0.001", "cascade", wrong_answer_usd=0.001),
        Config("w=0.002", "cascade", wrong_answer_usd=0.002),
    )
    assert derive(unsure, cheap)["tier"] == "local"
    assert derive(unsure, dear)["tier"] == "paid" and derive(unsure, dear)["cost_micro_usd"] == 320
    # The run's own policy: W = $0.005 by default.
    assert derive(unsure, Config("cascade", "cascade"))["tier"] == "paid"
    hopeless = record(Judgement(0.2, p_answerable=0.1, p_paid_helps=0.05), answers=())
    ratio = Config("w=0.01 a=0.5", "cascade", wrong_answer_usd=0.01, abstain_ratio=0.5)
    assert derive(hopeless, ratio)["tier"] == "none"  # unanswerable: neither serve nor pay
    assert derive(hopeless, ratio)["cost_micro_usd"] == 20  # the local call was made, nothing more


def test_a_record_of_the_first_format_loads_and_derives_as_it_did() -> None:
    """calls.jsonl lines written when the judgement held ``route`` and ``forced`` and no policy."""
    features = {"retrieval_top": 0.7, "abstained": 1.0}
    line = {
        "id": "q",
        "question": "Where is Normandy?",
        "answers": ["France"],
        "context_id": "ctx",
        "retrieved_ids": ["ctx"],
        "retrieval_ms": 10.0,
        "local": LOCAL.__dict__,
        "judgement": {
            "p_correct": 0.99,
            "features": features,
            "route": "generate",
            "forced": "escalate",
            "reason": "mode=local; local_abstained",
            "p_answerable": None,
            "abstain_below": 0.0,
        },
        "paid": PAID.__dict__,
        "complete": True,
    }
    old = QuestionRecord.from_dict(json.loads(json.dumps(line)))
    assert old.judgement == Judgement(0.99, None, 0.0, features, local_abstained=True)
    assert old.route is None and old.policy is not None and old.policy.on_local_abstain == "escalate"
    assert derive(old, cascade(0.0))["request_ids"] == ["l1", "p1"]
    assert QuestionRecord.from_dict(json.loads(old.to_json())) == old  # and it is written in the new one

    routed = {**line, "judgement": {**line["judgement"], "route": "abstain", "reason": "retrieval_empty"}}
    before = QuestionRecord.from_dict(routed)
    assert before.route == Decision("abstain", "retrieval_empty")
    assert derive(before, cascade(0.0))["request_ids"] == []


def test_baselines_and_missing_tiers() -> None:
    r = record(Judgement(0.1))
    assert derive(r, Config("local", "local"))["request_ids"] == ["l1"]
    assert derive(r, Config("paid", "paid"))["request_ids"] == ["p1"]
    local_only = QuestionRecord("q", "?", ["x"], None, [], 1.0, LOCAL, Judgement(0.1), None)
    with pytest.raises(RunError, match="needs a tier this run did not call"):
        derive(local_only, cascade(0.5))


def test_config_names() -> None:
    configs = parse_configs(["local", "cascade", "cascade@0.6", "sweep", "cascade@0.60", "cascade:w=0.01"])
    names = [c.name for c in configs]
    assert names[:3] == ["local", "cascade", "cascade@0.60"]
    assert len(names) == len(set(names)) == 3 + 20 + 1  # the sweep's 0.60 is the one already asked for
    assert configs[1].threshold is None and configs[1].wrong_answer_usd is None  # the recorded policy
    assert [c.threshold for c in configs if c.sweep][:3] == [0.0, 0.05, 0.1]
    assert configs[-1].name == "cascade:w=0.01" and configs[-1].wrong_answer_usd == 0.01
    frontier = parse_configs(["frontier"])
    assert [c.wrong_answer_usd for c in frontier] == list(PRICE_GRID) and all(c.sweep for c in frontier)
    with pytest.raises(RunError, match="unknown config"):
        parse_configs(["fast"])
    with pytest.raises(RunError, match="price after w="):
        parse_configs(["cascade:w=cheap"])
