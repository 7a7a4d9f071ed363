"""P(paid helps) for the paid model that runs: a frontier model without labels is judged by its stated
prior, and the bundled samples' low-confidence local answers are escalated; the stand-in, with the
shipped calibration's fit for it, serves them locally. Decided on recorded rows: the features of the local
tier's (qwen2.5-0.5b) real answers to the natural questions on samples/ (docs/eval/natural/samples)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from assistant.answering.decision import Policy, decide
from assistant.answering.judge.evaluator import Evaluator, Judgement
from assistant.calibration import Calibration, PaidModel
from assistant.ledger import PriceTable, Usage
from assistant.settings import CascadeSettings
from tests.conftest import REPO

PRICES = PriceTable.load()
POLICY = Policy.from_settings(CascadeSettings())  # the service's defaults: W $0.005, A $0.01


def sample_answers() -> list[dict[str, Any]]:
    """The recorded samples run's judged local answers (decided after generation, with a paid answer)."""
    lines = (REPO / "docs/eval/natural/samples/calls.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    return [r for r in rows if r.get("judgement") and r.get("paid") and not r.get("route")]


def low_confidence(calibration: Calibration, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Answers the evaluator rates below the low-confidence bar but would still serve (not an abstention,
    not degenerate, not below never_serve_below): where the price of paying decides."""
    found = []
    for row in rows:
        features = row["judgement"]["features"]
        p = calibration.probability(features)
        if features["abstained"] or features.get("degenerate"):
            continue
        if POLICY.never_serve_below <= p < POLICY.low_confidence_below:
            found.append(row)
    return found


def decisions(calibration: Calibration, rows: list[dict[str, Any]], paid_model: str) -> list[str]:
    """Each answer's action with ``paid_model`` as the paid tier: q as the evaluator takes it for that
    model, the paid call priced from the price table for the prompt the run sent."""
    paid = PaidModel.from_prices(paid_model, PRICES)
    actions = []
    for row in rows:
        features = row["judgement"]["features"]
        q, source = calibration.paid_helps_for(features, paid)
        judgement = Judgement(
            p_correct=calibration.probability(features),
            p_answerable=calibration.p_answerable(features),
            features=features,
            p_paid_helps=q,
            paid_helps_source=source,
        )
        cost = PRICES.cost_micro_usd(paid_model, Usage(row["paid"]["prompt_tokens"], 32)) / 1e6
        actions.append(decide(judgement, POLICY, paid_cost_usd=cost).action)
    return actions


@pytest.fixture(scope="module")
def shipped() -> Calibration:
    return Calibration.load()


def test_a_frontier_models_prior_escalates_the_samples_low_confidence_answers(shipped: Calibration) -> None:
    rows = low_confidence(shipped, sample_answers())
    assert len(rows) >= 5  # real answers the local tier is unsure of
    assert decisions(shipped, rows, "gpt-4o") == ["escalate"] * len(rows)


def test_the_stand_in_with_its_fitted_model_serves_them_locally(shipped: Calibration) -> None:
    rows = low_confidence(shipped, sample_answers())
    actions = decisions(shipped, rows, "qwen2.5-1.5b")  # priced as gpt-4o: only q differs
    assert actions.count("local") >= 0.75 * len(rows)
    assert actions.count("escalate") <= 0.25 * len(rows)


def test_the_two_differ_only_in_where_q_comes_from(shipped: Calibration) -> None:
    features = low_confidence(shipped, sample_answers())[0]["judgement"]["features"]
    fitted, source = shipped.paid_helps_for(features, PaidModel.from_prices("qwen2.5-1.5b", PRICES))
    prior, prior_source = shipped.paid_helps_for(features, PaidModel.from_prices("gpt-4o", PRICES))
    assert source == "fitted for qwen2.5-1.5b" and prior_source.startswith("prior for gpt-4o")
    assert fitted is not None and prior == 0.798 > fitted
    assert PRICES.price("qwen2.5-1.5b").priced_as == "gpt-4o"  # the same price for the paid call


def test_the_evaluator_judges_with_the_running_paid_models_q(shipped: Calibration, embedder) -> None:  # type: ignore[no-untyped-def]
    from tests.support.answering import PASSAGES, QUESTION, generation

    answer = generation("It is in Portugal [3].", [-0.9, -1.4, -0.7])
    judged = {}
    for name in ("gpt-4o", "qwen2.5-1.5b"):
        evaluator = Evaluator(shipped, embedder, PaidModel.from_prices(name, PRICES))
        judged[name] = evaluator.judge(QUESTION, PASSAGES, answer)
    assert judged["gpt-4o"].p_paid_helps == 0.798
    assert judged["gpt-4o"].paid_helps_source.startswith("prior for gpt-4o")
    assert judged["qwen2.5-1.5b"].paid_helps_source == "fitted for qwen2.5-1.5b"
    assert judged["gpt-4o"].p_correct == judged["qwen2.5-1.5b"].p_correct  # only q depends on the paid model


def test_penny_ask_explain_says_where_q_comes_from(settings, paid_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The real path on the bundled samples: the tiny local model answers, the evaluator judges it with
    gpt-4o (the scripted paid server) as the paid tier, and --explain names the prior."""
    from click.testing import CliRunner

    import assistant.cli.core
    from assistant.cli.core import ask
    from assistant.service import Penny

    fake, base_url = paid_server
    fake.reset()
    frontier = settings.model_copy(
        update={"paid": settings.paid.model_copy(update={"base_url": base_url, "model": "gpt-4o"})}
    )
    assert Penny(frontier).ingester().ingest([REPO / "samples"]).ok
    monkeypatch.setattr(assistant.cli.core, "get_settings", lambda: frontier)
    result = CliRunner().invoke(ask, ["Who conquered England in 1066?", "--explain"])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("P(paid helps):"))
    assert "0.798  (prior for gpt-4o: DROP F1 79.8" in line
    full = next(x for x in result.output.splitlines() if x.startswith("full cost:")).split()
    parts = dict(zip(full[2::2], (float(usd.removeprefix("$")) for usd in full[3::2]), strict=True))
    assert list(parts) == ["paid", "local_generation", "retrieval", "evaluation", "ingest_amortised", "total"]
    assert parts["retrieval"] > 0 and parts["total"] == pytest.approx(sum(parts.values()) - parts["total"])
