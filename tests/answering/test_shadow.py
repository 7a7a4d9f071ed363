"""Shadow sampling against the fake paid upstream and a real ledger (SQLite and PostgreSQL): the rate, the
system budget, never on the user's bill, a failing upstream, the stored label, and a refit from the ledger
that the service then picks up for that collection."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pytest

from assistant.answering.answer import CascadeAnswer
from assistant.answering.judge.features import FEATURES
from assistant.answering.prompt.grounded import ABSTAIN_PHRASE
from assistant.answering.shadow import SHADOW_ACCOUNT, ShadowSampler, agreement_f1
from assistant.calibration import Calibration, Calibrations, collection_calibration_path, refit_from_ledger
from assistant.ledger import Ledger
from assistant.paid import PaidClient
from tests.support.fake_paid import FakePaid, Reply

pytest_plugins = ["tests.support.ledger"]  # fixtures: ledger, ledger_url, prices

MESSAGES = [
    {"role": "user", "content": "Sources: [1] Normandy is in France.\n\nQuestion: Where is Normandy?"}
]


@pytest.fixture
def fake(paid_server: tuple[FakePaid, str]) -> FakePaid:
    paid_server[0].reset()
    paid_server[0].default = Reply(text="France", prompt_tokens=40, completion_tokens=2)
    return paid_server[0]


def paid_client(base_url: str) -> PaidClient:
    return PaidClient(base_url, "gpt-4o-mini", "sk-test", timeout_s=2, max_retries=0, max_tokens=16)


def sampler(ledger: Ledger, base_url: str, **kwargs: object) -> ShadowSampler:
    options: dict[str, object] = {"rate": 1.0, "budget_usd": 1.0, "window": 50, **kwargs}
    return ShadowSampler(paid_client(base_url), ledger, **options)  # type: ignore[arg-type]


def local_answer(text: str = "France", request_id: str = "req-1", p: float = 0.8) -> CascadeAnswer:
    features = {name: float(i) / 10 for i, name in enumerate(FEATURES)}
    return CascadeAnswer(
        answer=text, sources=[], tier="local", latency_ms=1.0, request_id=request_id, confidence=p,
        features=features,
    )  # fmt: skip


def check(shadow: ShadowSampler, answer: CascadeAnswer, collection: str = "docs") -> bool:
    future = shadow.maybe_check(
        request_id=answer.request_id, collection=collection, messages=MESSAGES, answer=answer
    )
    if future is None:
        return False
    future.result(timeout=10)
    return True


def test_agreement_is_squad_f1_and_abstentions_agree_only_with_each_other() -> None:
    assert agreement_f1("France [1]", "France.") == 1.0
    assert agreement_f1("northern France", "France") == pytest.approx(2 / 3)
    assert agreement_f1(ABSTAIN_PHRASE, ABSTAIN_PHRASE) == 1.0
    assert agreement_f1("France", ABSTAIN_PHRASE) == 0.0


def test_a_sampled_answer_is_checked_and_its_label_stored(
    ledger: Ledger, fake: FakePaid, paid_server
) -> None:  # type: ignore[no-untyped-def]
    shadow = sampler(ledger, paid_server[1])
    assert check(shadow, local_answer("France [1]"))
    [label] = ledger.shadow_labels()
    assert label.request_id == "req-1" and label.collection == "docs"
    assert label.paid_answer == "France" and label.agreed and label.agreement_f1 == 1.0
    assert not label.paid_abstained and label.confidence == 0.8
    assert set(label.features) == set(FEATURES) and label.paid_cost_micro_usd > 0
    assert fake.requests[0].body["messages"] == MESSAGES  # the same grounded prompt the user's answer had
    assert shadow.precision() == 1.0
    shadow.close()


def test_the_rate_decides_which_answers_are_sampled(ledger: Ledger, fake: FakePaid, paid_server) -> None:  # type: ignore[no-untyped-def]
    draws = itertools.cycle([0.01, 0.5, 0.9, 0.03])  # below 0.05 twice in four
    shadow = sampler(ledger, paid_server[1], rate=0.05, draw=lambda: next(draws))
    sampled = [check(shadow, local_answer(request_id=f"r{i}")) for i in range(8)]
    assert sampled == [True, False, False, True] * 2
    assert len(fake.requests) == 4 and len(ledger.shadow_labels()) == 4
    off = sampler(ledger, paid_server[1], rate=0.0)
    assert not check(off, local_answer(request_id="never"))
    not_local = local_answer(request_id="paid-answer")
    not_local.tier = "paid"
    assert not check(shadow, not_local)  # only locally served answers are checked
    shadow.close()
    off.close()


def test_checks_are_charged_to_the_shadow_account_never_the_user(
    ledger: Ledger, fake: FakePaid, paid_server
) -> None:  # type: ignore[no-untyped-def]
    ledger.add_user("alice")
    ledger.set_budget("alice", 1_000_000, "day")
    alice = ledger.budget_status(ledger.authenticate(ledger.create_key("alice")[1]))  # type: ignore[arg-type]
    shadow = sampler(ledger, paid_server[1])
    assert check(shadow, local_answer())
    shadow_user = ledger.system_account(SHADOW_ACCOUNT)
    spent = ledger.budget_status(shadow_user)
    assert (
        spent is not None and spent.committed_micro_usd == ledger.shadow_labels()[0].paid_cost_micro_usd > 0
    )
    again = ledger.budget_status(ledger.authenticate(ledger.create_key("alice")[1]))  # type: ignore[arg-type]
    assert alice is not None and again is not None
    assert again.committed_micro_usd == alice.committed_micro_usd == 0
    shadow.close()


def test_the_daily_shadow_budget_caps_the_checks(ledger: Ledger, fake: FakePaid, paid_server) -> None:  # type: ignore[no-untyped-def]
    shadow = sampler(ledger, paid_server[1], budget_usd=0.000001)  # 1 micro-USD: below any call's worst case
    assert check(shadow, local_answer())
    assert fake.requests == [] and ledger.shadow_labels() == []  # refused before any call
    budget = ledger.budget_status(ledger.system_account(SHADOW_ACCOUNT))
    assert budget is not None and budget.budget.limit_micro_usd == 1 and budget.budget.window == "day"
    shadow.close()


@pytest.mark.parametrize(
    "reply", [Reply(kind="status", status=500), Reply(kind="malformed"), Reply(delay_s=3)]
)
def test_a_failing_upstream_stores_nothing_and_holds_no_money(
    ledger: Ledger, fake: FakePaid, paid_server, reply: Reply, caplog
) -> None:  # type: ignore[no-untyped-def]
    fake.queue(reply)
    shadow = sampler(ledger, paid_server[1])
    with caplog.at_level(logging.WARNING, logger="penny.shadow"):
        assert check(shadow, local_answer())
    assert ledger.shadow_labels() == []
    status = ledger.budget_status(ledger.system_account(SHADOW_ACCOUNT))
    assert status is not None and status.committed_micro_usd == 0  # the reservation was released
    assert "shadow check of req-1 failed" in caplog.text
    shadow.close()


def test_low_precision_logs_a_warning_once(ledger: Ledger, fake: FakePaid, paid_server, caplog) -> None:  # type: ignore[no-untyped-def]
    fake.default = Reply(text="Italy")
    shadow = sampler(ledger, paid_server[1], min_precision=0.6)
    with caplog.at_level(logging.WARNING, logger="penny.shadow"):
        for i in range(21):
            check(shadow, local_answer("France", request_id=f"r{i}"))
    assert shadow.precision() == 0.0 and shadow.label_count() == 21
    assert caplog.text.count("estimated precision of local answers is 0.00") == 1
    fresh = sampler(ledger, paid_server[1])  # a restarted process starts from the ledger's labels
    assert fresh.label_count() == 21 and fresh.precision() == 0.0
    shadow.close()
    fresh.close()


def test_escalation_rate_over_the_window() -> None:
    from prometheus_client import generate_latest

    from assistant.api.metrics import ServiceMetrics

    metrics = ServiceMetrics(window=4)
    assert "penny_escalation_rate NaN" in generate_latest(metrics.registry).decode()
    for escalated in (True, False, False, False, True, True):
        answer = local_answer()
        answer.escalated = escalated
        metrics.observe_answer(answer)
    cached = local_answer()
    cached.tier = "cache"
    metrics.observe_answer(cached)  # not the cascade's decision: left out
    assert "penny_escalation_rate 0.5" in generate_latest(metrics.registry).decode()  # the last four: F F T T


def test_refit_from_the_ledger_round_trips_into_the_service(
    ledger: Ledger, ledger_url: str, tmp_path: Path, fake: FakePaid, paid_server, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from assistant.settings import Settings

    shadow = sampler(ledger, paid_server[1])
    for i in range(30):  # the paid tier agrees when the answer was "confident"
        agree = i % 3 != 0
        fake.queue(Reply(text="France" if agree else "Italy"))
        answer = local_answer("France", request_id=f"r{i}")
        answer.features = {name: (1.0 if agree else 0.0) + 0.01 * i for name in FEATURES}
        check(shadow, answer)
    shadow.close()
    monkeypatch.setenv("PENNY_CONFIG", str(tmp_path / "absent.toml"))
    settings = Settings(data_dir=tmp_path / "data", ledger={"db_url": ledger_url})
    refit = refit_from_ledger(settings, collection="docs", min_labels=30)
    assert refit.counts.shadow == 30 and refit.counts.synthetic == 0
    assert refit.path == collection_calibration_path(settings.calibration_dir, "docs")
    assert refit.auroc["local_correct"] is not None and refit.auroc["local_correct"] > 0.9
    calibrations = Calibrations(Calibration.load(), settings.calibration_dir)
    fitted = calibrations.for_collection("docs")
    assert fitted is not calibrations.default and fitted.meta["shadow_labels"] == 30
    assert fitted.paid_helps is not None  # kept from the default: shadow labels cannot say
    # every row carries every feature, but each model reads what the default's does: a feature the default
    # left out (question_logprob, by --exclude) stays out
    default = calibrations.default
    assert "question_logprob" not in default.features and fitted.features == default.features
    assert default.answerable is not None and fitted.answerable is not None
    assert fitted.answerable.features == default.answerable.features
    agreeing = {name: 1.2 for name in FEATURES}
    disagreeing = {name: 0.1 for name in FEATURES}
    assert fitted.probability(agreeing) > 0.5 > fitted.probability(disagreeing)
    assert calibrations.for_collection("other") is calibrations.default


def test_metrics_export_the_live_estimates(ledger: Ledger, fake: FakePaid, paid_server) -> None:  # type: ignore[no-untyped-def]
    from prometheus_client import generate_latest

    from assistant.api.metrics import ServiceMetrics

    shadow = sampler(ledger, paid_server[1])
    metrics = ServiceMetrics()
    metrics.watch_shadow(shadow)
    before = generate_latest(metrics.registry).decode()
    assert "penny_local_precision_estimate NaN" in before and "penny_shadow_labels 0.0" in before
    fake.queue(Reply(text="France"), Reply(text="Italy"))
    for i in range(2):
        answer = local_answer("France", request_id=f"m{i}")
        metrics.observe_answer(answer)
        check(shadow, answer)
    after = generate_latest(metrics.registry).decode()
    assert "penny_local_precision_estimate 0.5" in after
    assert "penny_escalation_rate 0.0" in after and "penny_shadow_labels 2.0" in after
    shadow.close()
