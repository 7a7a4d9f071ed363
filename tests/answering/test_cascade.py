"""The cascade end to end on real parts: SmolLM2 on llama.cpp, Chroma on disk with samples/, the MiniLM
embedder; only the paid upstream is a fake (a real HTTP server on loopback, scripted per test).

Whether the local answer is "confident" depends on the calibration, so tests set the threshold: 0.0 keeps
any non-abstaining local answer, 1.0 escalates every one. All local runs ask the same question, so
llama.cpp reuses the prompt's KV cache after the first run and the suite stays fast on 2 cores.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from assistant.answering.answer import CascadeAnswer
from assistant.answering.cache import SemanticCache
from assistant.answering.cascade import Cascade
from assistant.answering.decision import Policy
from assistant.answering.judge.evaluator import Evaluator
from assistant.answering.judge.features import FEATURES
from assistant.answering.prompt.compression import Diet
from assistant.answering.prompt.grounded import ABSTAIN_PHRASE, grounded_messages
from assistant.calibration import Calibration
from assistant.ledger import Ledger, PriceTable
from assistant.local.backend import Generation
from assistant.local.model import LocalModel
from assistant.paid import CircuitBreaker, PaidClient
from assistant.service import Penny
from assistant.settings import CascadeSettings, Settings
from tests.conftest import REPO
from tests.support.fake_paid import FakePaid, Reply

QUESTION = "In what country is Normandy located?"
OFF_TOPIC = "What is the boiling point of tungsten in Kelvin?"
PAID_TEXT = "Normandy is a region of northern France [1]."
POLICY = Policy.from_settings(CascadeSettings())


class CountingBackend:
    """The real local model, counting how often the cascade runs it, with which prompt and token limit."""

    def __init__(self, model: LocalModel) -> None:
        self.model = model
        self.calls = 0
        self.max_tokens: list[int] = []
        self.prompts: list[Sequence[dict[str, str]]] = []
        self.scored_tails: list[str | None] = []

    def stream_chat(
        self, messages: Sequence[dict[str, str]], max_tokens: int = 256, *, scored_tail: str | None = None
    ) -> Iterator[Any]:
        self.calls += 1
        self.max_tokens.append(max_tokens)
        self.prompts.append(messages)
        self.scored_tails.append(scored_tail)
        return self.model.stream_chat(messages, max_tokens=max_tokens, scored_tail=scored_tail)


@pytest.fixture
def fake(paid_server: tuple[FakePaid, str]) -> FakePaid:
    paid_server[0].reset()
    paid_server[0].default = Reply(text=PAID_TEXT, prompt_tokens=812, completion_tokens=11)
    return paid_server[0]


@pytest.fixture(scope="module")
def penny(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Penny:
    tmp = tmp_path_factory.mktemp("cascade")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PENNY_CONFIG", str(tmp / "absent.toml"))
        settings = Settings(
            data_dir=tmp / "data",
            models={"local": "smollm2-135m", "cache_dir": model_cache, "n_ctx": 2048, "max_tokens": 32},
        )
    penny = Penny(settings)
    assert penny.ingester().ingest([REPO / "samples"]).ok
    return penny


@pytest.fixture
def local(tiny_model: LocalModel) -> CountingBackend:
    return CountingBackend(tiny_model)


def build(
    penny: Penny,
    local: CountingBackend,
    base_url: str | None,
    *,
    cache: SemanticCache | None = None,
    breaker: CircuitBreaker | None = None,
    timeout_s: float = 5.0,
    max_retries: int = 0,
    ledger: Ledger | None = None,
    **policy: Any,
) -> Cascade:
    upstream = None
    if base_url:
        upstream = PaidClient(
            base_url,
            "gpt-4o-mini",
            "sk-test",
            timeout_s=timeout_s,
            max_retries=max_retries,
            backoff_base_s=0.01,
            breaker=breaker,
            max_tokens=64,
        )
    return Cascade(
        retriever=penny.retriever,
        local=local,
        evaluator=Evaluator(Calibration.load(), penny.embedder),
        policy=replace(POLICY, **policy),
        paid=upstream,
        cache=cache,
        ledger=ledger,
        local_model_name="smollm2-135m",
        max_tokens=32,
    )


def test_confident_local_answer_stays_local(penny, local, fake, paid_server) -> None:  # type: ignore[no-untyped-def]
    answer = build(penny, local, paid_server[1]).answer(QUESTION, threshold=0.0)
    assert answer.tier == "local" and not answer.escalated and not answer.degraded
    assert answer.answer and answer.answer != ABSTAIN_PHRASE
    assert answer.reason.startswith("confident p=") and answer.reason.endswith(">=0.00")
    assert answer.confidence is not None and 0.0 < answer.confidence < 1.0
    assert set(answer.features) == set(FEATURES)  # with the question's log-probability from the prefill
    assert local.scored_tails[-1] == QUESTION and answer.features["question_logprob"] < 0
    assert Path(answer.sources[0].source).name == "normans.md"
    assert isinstance(answer.local_generation, Generation) and answer.paid_generation is None
    assert answer.prompt_tokens == answer.local_generation.prompt_tokens > 100
    assert answer.local_model == "smollm2-135m" and answer.cost_micro_usd == 0  # no ledger: no prices
    assert fake.requests == [] and local.calls == 1
    assert answer.to_dict()["local_generation"]["completion_tokens"] == answer.completion_tokens


def test_low_confidence_escalates_with_the_same_sources(penny, local, fake, paid_server) -> None:  # type: ignore[no-untyped-def]
    answer = build(penny, local, paid_server[1]).answer(QUESTION, threshold=1.0)
    assert answer.tier == "paid" and answer.escalated and not answer.degraded
    assert answer.answer == PAID_TEXT
    assert answer.reason.startswith("low_confidence p=") and answer.reason.endswith("<1.00")
    assert (answer.prompt_tokens, answer.completion_tokens) == (812, 11)  # the upstream's usage
    assert answer.paid_generation.usage.estimated is False and answer.paid_model == "gpt-4o-mini"
    assert answer.local_generation is not None  # the local answer ran and was judged first
    [seen] = fake.requests
    passages = penny.retriever().search(QUESTION)
    assert seen.body["messages"] == grounded_messages(QUESTION, passages)
    assert [s.id for s in answer.sources] == [p.id for p in passages]


def test_streamed_escalation_streams_paid_text_and_estimates_missing_usage(
    penny, local, fake, paid_server
) -> None:  # type: ignore[no-untyped-def]
    fake.default = Reply(text=PAID_TEXT, usage=False)  # llama_cpp.server style: no usage when streaming
    *deltas, final = build(penny, local, paid_server[1]).stream(QUESTION, threshold=1.0)
    assert isinstance(final, CascadeAnswer) and final.tier == "paid"
    assert len(deltas) > 3 and "".join(deltas) == PAID_TEXT == final.answer  # type: ignore[arg-type]
    assert final.paid_generation.usage.estimated is True and final.completion_tokens > 5


def test_streamed_uncited_answer_gets_its_attribution_as_the_last_delta(
    penny, local, fake, paid_server
) -> None:  # type: ignore[no-untyped-def]
    # A concise answer names no source; the cascade attributes it after the stream, and the streaming
    # client must end with the same text as the final answer.
    fake.default = Reply(text="in France")
    *deltas, final = build(penny, local, paid_server[1]).stream(QUESTION, threshold=1.0)
    assert isinstance(final, CascadeAnswer) and final.tier == "paid"
    assert final.answer.startswith("in France [") and final.answer.endswith("]")
    assert "".join(deltas) == final.answer and deltas[-1] == final.answer[len("in France") :]  # type: ignore[arg-type]


def test_stream_of_a_kept_local_answer(penny, local, fake, paid_server) -> None:  # type: ignore[no-untyped-def]
    *deltas, final = build(penny, local, paid_server[1]).stream(QUESTION, threshold=0.0)
    assert isinstance(final, CascadeAnswer) and final.tier == "local"
    assert "".join(deltas) == final.answer  # type: ignore[arg-type]
    assert fake.requests == []


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(delay_s=1.5), "upstream_failed: timeout"),
        (Reply(kind="status", status=500), "upstream_failed: http_500"),
        (Reply(kind="status", status=429, headers={"Retry-After": "0.2"}), "upstream_failed: rate_limited"),
        (Reply(kind="malformed"), "upstream_failed: malformed_response"),
    ],
    ids=["timeout", "500", "429", "malformed-json"],
)
def test_upstream_failure_serves_the_local_answer_degraded(
    penny, local, fake, paid_server, reply: Reply, reason: str
) -> None:  # type: ignore[no-untyped-def]
    fake.default = reply
    cascade = build(penny, local, paid_server[1], timeout_s=0.5, max_retries=1)
    answer = cascade.answer(QUESTION, threshold=1.0)
    assert answer.tier == "local" and answer.degraded and answer.escalated
    assert answer.reason.startswith(reason) and "(escalation: low_confidence p=" in answer.reason
    # The local text is served as generated, plus a [n] attribution when the model cited nothing.
    assert answer.answer.startswith(answer.local_generation.text) and answer.answer
    assert answer.paid_generation is None and answer.paid_cost_micro_usd == 0
    assert len(fake.requests) == (
        1 if reason.endswith("malformed_response") else 2
    )  # 5xx/429/timeout retried


def test_429_retry_waits_for_retry_after_then_succeeds(penny, local, fake, paid_server) -> None:  # type: ignore[no-untyped-def]
    fake.queue(Reply(kind="status", status=429, headers={"Retry-After": "1"}))
    answer = build(penny, local, paid_server[1], max_retries=1).answer(QUESTION, threshold=1.0)
    assert answer.tier == "paid" and answer.paid_generation.attempts == 2
    assert fake.requests[1].at - fake.requests[0].at >= 0.95


def test_circuit_opens_after_failures_and_recovers(penny, local, fake, paid_server) -> None:  # type: ignore[no-untyped-def]
    now = [0.0]  # the breaker's clock, moved by hand: a local answer takes seconds on a busy 2-core box
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=30.0, clock=lambda: now[0])
    cascade = build(penny, local, paid_server[1], breaker=breaker)
    fake.default = Reply(kind="status", status=500)
    reasons = [cascade.answer(QUESTION, threshold=1.0).reason for _ in range(3)]
    assert [r.split(" (")[0] for r in reasons] == [
        "upstream_failed: http_500",
        "upstream_failed: http_500",
        "upstream_failed: circuit_open",
    ]
    assert len(fake.requests) == 2  # the open circuit did not call out
    now[0] += 29.0
    assert cascade.answer(QUESTION, threshold=1.0).reason.startswith("upstream_failed: circuit_open")
    now[0] += 1.0
    assert breaker.state == "half-open"
    fake.default = Reply(text=PAID_TEXT)
    recovered = cascade.answer(QUESTION, threshold=1.0)
    assert recovered.tier == "paid" and not recovered.degraded and breaker.state == "closed"


def test_no_upstream_configured_degrades_instead_of_failing(penny, local) -> None:  # type: ignore[no-untyped-def]
    answer = build(penny, local, None).answer(QUESTION, threshold=1.0)
    assert answer.tier == "local" and answer.degraded
    assert answer.reason.startswith("upstream_failed: not_configured")


def test_without_a_paid_tier_the_expected_loss_rule_never_picks_escalation(penny, local) -> None:  # type: ignore[no-untyped-def]
    cascade = _escalating(penny, local, None)  # escalates when a paid tier exists (the tests above)
    answer = cascade.answer(QUESTION)
    assert answer.action == "local" and answer.tier == "local" and not answer.degraded
    assert answer.low_confidence and "escalate" not in answer.expected_loss_usd


def test_an_answer_rated_almost_surely_wrong_is_never_served(penny, local) -> None:  # type: ignore[no-untyped-def]
    """P(correct) 0.05 is below never_serve_below (0.1): with no paid tier the cascade abstains, though
    serving it would cost less than abstaining at these prices."""
    cascade = _escalating(penny, local, None)
    cascade.policy = replace(cascade.policy, never_serve_below=0.1)
    answer = cascade.answer(QUESTION)
    assert answer.action == "abstain" and answer.tier == "none"
    assert set(answer.expected_loss_usd) == {"abstain"}  # serving is ruled out, paying impossible
    assert answer.reason.startswith("unanswerable")


def test_retrieval_empty_abstains_without_running_the_local_model(penny, local, fake, paid_server) -> None:  # type: ignore[no-untyped-def]
    answer = build(penny, local, paid_server[1]).answer(OFF_TOPIC)
    assert answer.tier == "none" and answer.answer == ABSTAIN_PHRASE
    assert answer.reason.startswith("retrieval_empty top=") and answer.reason.endswith("<0.25")
    assert local.calls == 0 and answer.local_generation is None and fake.requests == []


def test_retrieval_empty_can_escalate_directly(penny, local, fake, paid_server) -> None:  # type: ignore[no-untyped-def]
    cascade = build(penny, local, paid_server[1], on_empty_retrieval="escalate")
    answer = cascade.answer(OFF_TOPIC)
    assert answer.tier == "paid" and answer.escalated and answer.reason.startswith("retrieval_empty")
    assert local.calls == 0 and len(fake.requests) == 1

    fake.default = Reply(
        kind="status", status=503
    )  # and if that fails: abstain, degraded, still no local run
    failed = cascade.answer(OFF_TOPIC)
    assert failed.tier == "none" and failed.degraded and failed.answer == ABSTAIN_PHRASE
    assert failed.reason.startswith("upstream_failed: http_503") and local.calls == 0

    requests = len(fake.requests)
    local_only = cascade.answer(OFF_TOPIC, mode="local")  # local mode never pays, whatever the policy
    assert local_only.tier == "none" and local_only.reason.startswith("mode=local; retrieval_empty")
    assert len(fake.requests) == requests and local.calls == 0


def test_modes_local_and_paid(penny, local, fake, paid_server) -> None:  # type: ignore[no-untyped-def]
    cascade = build(penny, local, paid_server[1])
    kept = cascade.answer(QUESTION, mode="local", threshold=1.0)
    assert kept.tier == "local" and kept.reason.startswith("mode=local; low_confidence")
    assert fake.requests == [] and local.calls == 1

    paid = cascade.answer(QUESTION, mode="paid")
    assert paid.tier == "paid" and paid.reason == "mode=paid" and local.calls == 1  # local not run

    fake.default = Reply(kind="status", status=500)
    fallback = cascade.answer(QUESTION, mode="paid")
    assert fallback.tier == "local" and fallback.degraded and local.calls == 2
    assert fallback.reason == "upstream_failed: http_500 (escalation: mode=paid)"

    with pytest.raises(ValueError, match="unknown mode"):
        cascade.answer(QUESTION, mode="cheap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threshold"):
        cascade.answer(QUESTION, threshold=1.5)


def test_answer_style_sets_the_prompt_the_paid_tier_gets(penny, local, fake, paid_server) -> None:  # type: ignore[no-untyped-def]
    cascade = build(penny, local, paid_server[1])
    cascade.answer(QUESTION, mode="paid")
    cascade.prompt_builder.answer_style = "sentence"
    cascade.answer(QUESTION, mode="paid")
    concise, sentence = (seen.body["messages"][0]["content"] for seen in fake.requests)
    assert "shortest exact phrase" in concise and "[1]" not in concise  # a bare "[1]" answer otherwise
    assert "one or two short sentences" in sentence and "[1]" in sentence
    with pytest.raises(ValueError, match="unknown answer style"):
        grounded_messages(QUESTION, [], "haiku")  # type: ignore[arg-type]


def test_semantic_cache_hits_and_misses_when_sources_change(
    penny, local, fake, paid_server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(REPO / "samples" / "normans.md", docs / "normans.md")
    assert penny.ingester("cachetest").ingest([docs]).ok
    cache = SemanticCache(penny.embedder)
    cascade = build(penny, local, paid_server[1], cache=cache)

    first = cascade.answer(QUESTION, collection="cachetest", threshold=0.0)
    assert first.tier == "local" and len(cache) == 1 and local.calls == 1

    again = cascade.answer("in what country is Normandy located?", collection="cachetest")
    assert again.tier == "cache" and again.cost_micro_usd == 0 and again.answer == first.answer
    assert again.reason.startswith("cache_hit sim=") and local.calls == 1
    assert [s.id for s in again.sources] == [s.id for s in first.sources]

    # Guarded misses (negation, other entity or number) are covered in test_semantic_cache.py.
    with (docs / "normans.md").open("a") as handle:
        handle.write("\n\nNormandy is also known for Camembert cheese.\n")
    assert penny.ingester("cachetest").ingest([docs]).updated == 1
    changed = cascade.answer(QUESTION, collection="cachetest", threshold=0.0)
    assert changed.tier == "local" and cache.last_miss_reason == "sources changed" and local.calls == 2


def test_given_passages_replace_retrieval(penny, local, fake, paid_server) -> None:  # type: ignore[no-untyped-def]
    retrieved = penny.retriever().search(QUESTION)
    given = retrieved[1:2]  # not what retrieval would answer from
    cascade = build(penny, local, paid_server[1])
    answer = cascade.answer(QUESTION, passages=given, threshold=1.0)
    assert [s.id for s in answer.sources] == [given[0].id] != [p.id for p in retrieved]
    [seen] = fake.requests  # escalated with the same given sources
    assert seen.body["messages"] == grounded_messages(QUESTION, given)


def test_the_prompt_diet_shortens_only_the_local_prompt(penny, local, fake, paid_server) -> None:  # type: ignore[no-untyped-def]
    passages = penny.retriever().search(QUESTION)
    whole = grounded_messages(QUESTION, passages)
    cascade = build(penny, local, paid_server[1])
    cascade.prompt_builder.diet = Diet(budget_tokens=60)
    answer = cascade.answer(QUESTION, threshold=1.0)  # judged, then escalated
    [local_prompt] = local.prompts
    assert local_prompt[0] == whole[0] and local_prompt[-1]["content"].endswith(f"Question: {QUESTION}")
    assert len(local_prompt[-1]["content"]) < 0.6 * len(whole[-1]["content"])
    assert answer.local_generation is not None and set(answer.judgement.features) == set(FEATURES)
    [seen] = fake.requests  # the paid tier, the backstop, reads the whole passages
    assert seen.body["messages"] == whole
    assert [(s.id, s.text) for s in answer.sources] == [(p.id, p.text) for p in passages]

    local_only = cascade.answer(QUESTION, mode="local")  # and a local answer's sources are whole too
    assert [(s.id, s.text) for s in local_only.sources] == [(p.id, p.text) for p in passages]
    cascade.prompt_builder.diet = None
    assert cascade.answer(QUESTION, mode="local").prompt_tokens > local_only.prompt_tokens
    assert local.prompts[-1] == whole


def test_on_the_diet_a_follow_up_still_begins_with_the_previous_turns_prompt(penny, local) -> None:  # type: ignore[no-untyped-def]
    cascade = build(penny, local, None)
    cascade.prompt_builder.diet = Diet(budget_tokens=60)
    first = cascade.answer(QUESTION, mode="local")
    history = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": first.answer}]
    cascade.answer("Who was the duke in the battle of Hastings?", mode="local", history=history)
    opening, follow_up = local.prompts
    sources = opening[1]["content"].split("\n\nQuestion:")[0]
    assert follow_up[0] == opening[0] and follow_up[1]["content"].startswith(sources)
    whole = grounded_messages(QUESTION, penny.retriever().search(QUESTION))
    assert len(sources) < 0.6 * len(whole[1]["content"])


def test_route_before_generation_off_always_judges_the_local_answer(penny, local, fake, paid_server) -> None:  # type: ignore[no-untyped-def]
    cascade = build(penny, local, paid_server[1])
    weak = penny.retriever().search(OFF_TOPIC)
    answer = cascade.answer(OFF_TOPIC, passages=weak, mode="local", route_before_generation=False)
    assert local.calls == 1 and answer.tier == "local" and answer.local_generation is not None
    assert answer.judgement is not None and answer.confidence == answer.judgement.p_correct
    assert answer.reason.startswith("mode=local; ") and "retrieval_empty" not in answer.reason
    routed = cascade.answer(OFF_TOPIC, passages=weak, mode="local")  # the default routes first
    assert routed.reason.startswith("mode=local; retrieval_empty") and local.calls == 1
    assert routed.judgement is None and fake.requests == []


def test_max_tokens_lowers_each_tier_limit_and_the_paid_reservation(
    penny, local, fake, paid_server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from assistant.ledger.schema import reservations

    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", PriceTable.load())
    cascade = build(penny, local, paid_server[1], ledger=ledger)
    try:
        short = cascade.answer(QUESTION, threshold=1.0, max_tokens=2, request_id="short")
        long = cascade.answer(QUESTION, threshold=1.0, max_tokens=1000, request_id="long")
        with ledger.engine.connect() as conn:
            rows = conn.execute(sa.select(reservations.c.request_id, reservations.c.max_completion_tokens))
            held = {row.request_id: row.max_completion_tokens for row in rows}
    finally:
        ledger.close()
    assert local.max_tokens == [2, 32]  # the configured 32 is a ceiling, never raised by a request
    assert short.local_generation is not None and short.local_generation.completion_tokens <= 2
    assert [seen.body["max_tokens"] for seen in fake.requests] == [2, 64]
    assert held == {"short": 2, "long": 64}  # the reservation holds the worst case of the capped call
    assert long.tier == "paid"
    with pytest.raises(ValueError, match="max_tokens"):
        cascade.answer(QUESTION, max_tokens=0)


@pytest.mark.slow
def test_escalates_to_the_real_reference_upstream(penny, local, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`penny paid serve` (llama_cpp.server, Qwen2.5-Coder-1.5B) on a free port, escalated to."""
    import os
    import subprocess

    import httpx

    from tests.support.servers import free_port

    port = free_port()
    env = {**os.environ, "PENNY_CONFIG": str(REPO / "absent.toml")}
    log = (tmp_path / "upstream.log").open("w")  # a file, not a pipe: llama.cpp logs more than a pipe holds
    server = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "penny"), "paid", "serve", "--port", str(port), "--threads", "2"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None, (tmp_path / "upstream.log").read_text()[-2000:]
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the paid stand-in did not start in 300 s"
            time.sleep(1)
        upstream = PaidClient(base, "qwen2.5-1.5b", timeout_s=600, max_retries=0, max_tokens=48)
        cascade = Cascade(
            retriever=penny.retriever,
            local=local,
            evaluator=Evaluator(Calibration.load(), penny.embedder),
            policy=POLICY,
            paid=upstream,
            local_model_name="smollm2-135m",
            max_tokens=32,
        )
        answer = cascade.answer(QUESTION, threshold=1.0)
        assert answer.tier == "paid" and not answer.degraded, answer.reason
        assert "France" in answer.answer
        assert answer.paid_model == "qwen2.5-1.5b"
        usage = answer.paid_generation.usage
        assert usage.estimated is False and usage.prompt_tokens > 100 and usage.completion_tokens > 0

        *deltas, final = cascade.stream(QUESTION, threshold=1.0)
        assert isinstance(final, CascadeAnswer) and final.tier == "paid", final.reason
        assert "".join(deltas).strip() == final.answer  # type: ignore[arg-type]
        assert final.paid_generation.usage.completion_tokens > 0  # read, or counted and flagged estimated
        print(
            f"\npaid stand-in: {answer.answer!r} usage={usage} "
            f"stream usage={final.paid_generation.usage} paid seconds={answer.paid_generation.seconds:.1f}"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _constant_calibration(p_correct: float, p_answerable: float, p_paid_helps: float) -> Calibration:
    """Three models that ignore the features: the decision then depends only on prices and budget."""

    def constant(p: float) -> Calibration:
        import math

        return Calibration(["retrieval_top"], [0.0], math.log(p / (1 - p)), [0.0], [1.0])

    calibration = constant(p_correct)
    calibration.answerable, calibration.paid_helps = constant(p_answerable), constant(p_paid_helps)
    return calibration


def _escalating(penny, local, paid_url: str | None, ledger: Ledger | None = None) -> Cascade:  # type: ignore[no-untyped-def]
    """A cascade whose evaluator says: the local answer is likely wrong (0.05), the question answerable
    (0.95), and paying likely helps (0.9): with a paid tier and no budget pressure, it escalates."""
    cascade = build(
        penny,
        local,
        paid_url,
        ledger=ledger,
        wrong_answer_usd=0.001,
        abstain_usd=0.002,
        never_serve_below=0.0,
    )
    cascade.evaluator = Evaluator(_constant_calibration(0.05, 0.95, 0.9), penny.embedder)
    return cascade


def test_expected_loss_escalates_when_paying_helps_and_less_near_the_budget_limit(
    penny, local, fake, paid_server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from assistant.ledger import Principal, Usage
    from assistant.paid.tokens import count_messages

    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", PriceTable.load())
    cascade = _escalating(penny, local, paid_server[1], ledger)
    try:
        user = ledger.add_user("alice")
        alice = Principal(user.id, user.name)
        paid = cascade.answer(QUESTION, principal=alice, request_id="no-budget")
        passages = penny.retriever("default").search(QUESTION)
        tokens = count_messages(grounded_messages(QUESTION, passages, cascade.prompt_builder.answer_style))
        expected = ledger.prices.cost_micro_usd("gpt-4o-mini", Usage(tokens, 32)) / 1e6

        # A budget with ~5 % left: the paid call's cost weighs 20× more, and a wrong local answer at
        # $0.001 is no longer worth it.
        ledger.set_budget("alice", 10**9, "day")
        spent = ledger.budget_status(alice).committed_micro_usd  # type: ignore[union-attr]
        limit = int(spent / 0.95) + 1
        ledger.set_budget("alice", limit, "day")
        status = ledger.budget_status(alice)
        assert status is not None and 0 < status.remaining_micro_usd / limit < 0.1
        pressed = cascade.answer(QUESTION, principal=alice, request_id="pressed")
    finally:
        ledger.close()
    # Without a budget: losses local 0.95·W, escalate c + 0.95·0.1·W, abstain 0.95·2W → escalate.
    assert paid.action == "escalate" and paid.tier == "paid" and paid.reason.startswith("paid_helps ")
    assert paid.expected_cost_usd == pytest.approx(expected) and expected > 0
    assert paid.paid_helps == pytest.approx(0.9) and paid.answerable == pytest.approx(0.95)
    assert set(paid.expected_loss_usd) == {"local", "abstain", "escalate"}
    assert paid.expected_loss_usd["escalate"] < paid.expected_loss_usd["local"]
    block = paid.penny_block()
    assert block["action"] == "escalate" and block["paid_helps"] == pytest.approx(0.9)
    assert block["expected_cost_usd"] == pytest.approx(expected, abs=1e-6)
    # Near the limit the same question is served locally, marked low-confidence, and nothing is paid.
    assert pressed.action == "local" and pressed.tier == "local" and pressed.low_confidence
    assert pressed.reason.startswith("low_confidence ") and pressed.expected_cost_usd == 0.0
    assert len(fake.requests) == 1  # the first escalation only


def test_a_team_budget_near_its_limit_presses_like_the_users_own(
    penny, local, fake, paid_server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from assistant.ledger import Principal

    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", PriceTable.load())
    cascade = _escalating(penny, local, paid_server[1], ledger)
    try:
        user = ledger.add_user("alice")
        team = ledger.create_team("research")
        ledger.set_member("research", "alice")
        # alice has no budget of her own; the team she asks on behalf of has ~5 % of its budget left.
        alice = Principal(user.id, user.name, team_id=team.id, team_name=team.name)
        ledger.set_team_budget("research", 10**9, "day")
        first = cascade.answer(QUESTION, principal=alice, request_id="team-first")
        spent = ledger.team_budget_status("research").committed_micro_usd  # type: ignore[union-attr]
        ledger.set_team_budget("research", int(spent / 0.95) + 1, "day")
        pressed = cascade.answer(QUESTION, principal=alice, request_id="team-pressed")
    finally:
        ledger.close()
    assert spent > 0  # the first escalation was charged to the team
    assert first.action == "escalate" and first.tier == "paid"
    assert pressed.action == "local" and pressed.low_confidence and pressed.expected_cost_usd == 0.0
    assert len(fake.requests) == 1


def test_expected_loss_abstains_when_the_question_looks_unanswerable(penny, local, fake, paid_server) -> None:  # type: ignore[no-untyped-def]
    cascade = build(penny, local, paid_server[1], wrong_answer_usd=0.01, abstain_usd=0.005)
    cascade.evaluator = Evaluator(_constant_calibration(0.1, 0.05, 0.05), penny.embedder)
    answer = cascade.answer(QUESTION)
    # Paying buys a second wrong answer (P(paid helps) 0.05), serving is likely wrong: abstain.
    assert answer.action == "abstain" and answer.tier == "none" and answer.answer == ABSTAIN_PHRASE
    assert answer.reason.startswith("unanswerable ") and fake.requests == []


@pytest.mark.parametrize("failure", [None, Reply(kind="status", status=503)])
def test_a_shadow_check_never_changes_delays_or_bills_the_users_answer(
    penny, local, fake, paid_server, tmp_path: Path, failure: Reply | None
) -> None:  # type: ignore[no-untyped-def]
    from assistant.answering.shadow import SHADOW_ACCOUNT, ShadowSampler
    from assistant.ledger import Principal

    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", PriceTable.load())
    cascade = build(penny, local, paid_server[1], ledger=ledger)
    plain = cascade.answer(QUESTION, threshold=0.0, request_id="plain")
    fake.default = Reply(text=PAID_TEXT, delay_s=1.5)  # a slow paid tier: the answer must not wait for it
    if failure is not None:
        fake.queue(replace(failure, delay_s=1.5))
    assert cascade.paid is not None
    cascade.delivery.shadow = ShadowSampler(cascade.paid, ledger, rate=1.0, budget_usd=1.0)
    try:
        user = ledger.add_user("alice")
        alice = Principal(user.id, user.name)
        ledger.set_budget("alice", 10**6, "day")
        answer = cascade.answer(QUESTION, threshold=0.0, principal=alice, request_id="shadowed")
        pending = ledger.shadow_labels()  # the paid tier takes 1.5 s: the answer came back before it
        cascade.delivery.shadow.close(wait=True)  # let the background check finish
        labels = ledger.shadow_labels()
        shadow_spend = ledger.budget_status(ledger.system_account(SHADOW_ACCOUNT))
        alice_spend = ledger.budget_status(alice)
        row = ledger.answer("shadowed")
    finally:
        ledger.close()
    assert answer.tier == "local" and answer.answer == plain.answer and not answer.degraded
    assert pending == [] and len(fake.requests) == 1  # checked in the background, once
    assert alice_spend is not None and alice_spend.committed_micro_usd == 0
    assert row is not None and row["paid_cost_micro_usd"] == 0 and row["tier"] == "local"
    # what a rating of it will train on, and the id a client rates it by
    assert row["features"] == answer.features and row["abstained"] is False
    assert answer.penny_block()["request_id"] == "shadowed"
    assert shadow_spend is not None
    if failure is None:
        [label] = labels
        assert label.request_id == "shadowed" and label.paid_answer == PAID_TEXT
        assert shadow_spend.committed_micro_usd == label.paid_cost_micro_usd > 0
    else:
        assert labels == [] and shadow_spend.committed_micro_usd == 0


def test_paid_answer_is_charged_and_recorded_in_one_go_even_if_the_client_leaves(
    penny, local, fake, paid_server, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from assistant.ledger.schema import reservations

    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", PriceTable.load())
    cascade = build(penny, local, paid_server[1], ledger=ledger)
    fake.default = Reply(text="in France")  # uncited: its attribution is a tail after the paid stream
    try:
        answer = cascade.answer(QUESTION, threshold=1.0, request_id="whole")
        stream = cascade.stream(QUESTION, threshold=1.0, request_id="left")
        text = ""
        while text != "in France":
            text += next(stream)  # type: ignore[operator]
        assert str(next(stream)).startswith(" [")  # the paid stream is over: this is the attribution tail
        stream.close()  # the client goes before the final answer
        with ledger.engine.connect() as conn:
            rows = conn.execute(
                sa.select(reservations.c.request_id, reservations.c.state, reservations.c.cost_micro_usd)
            )
            held = {row.request_id: (row.state, row.cost_micro_usd) for row in rows}
        recorded = ledger.answer("whole")
        assert ledger.check_balances() == []
        assert ledger.answer("left") is None  # never finished, never recorded ...
    finally:
        ledger.close()
    assert held["whole"] == ("settled", answer.paid_cost_micro_usd) and answer.paid_cost_micro_usd > 0
    assert recorded is not None and recorded["paid_cost_micro_usd"] == answer.paid_cost_micro_usd
    assert recorded["features"] == answer.features and answer.features  # the local answer's, judged
    assert held["left"][0] == "settled"  # ... but the paid call it made is charged, not left held


def test_an_echo_is_asked_again_in_the_other_style_and_both_answers_are_paid_for(penny, local) -> None:  # type: ignore[no-untyped-def]
    """Three tokens of the tiny model ("Complexity theory is") add no word to the question: degenerate, so
    wrong whatever its logprobs say. The cascade asks once more in the other style, judges both, keeps the
    better by expected loss and charges both answers' compute; the usage is the served answer's."""
    from assistant.answering.prompt.grounded import SYSTEM_PROMPTS

    answer = build(penny, local, None).answer("What is complexity theory?", max_tokens=3)
    assert local.calls == 2 and "retried degenerate" in answer.reason
    first, second = local.prompts
    assert first[0]["content"] == SYSTEM_PROMPTS["sentence"]  # "what is X": sentences
    assert second[0]["content"] == SYSTEM_PROMPTS["concise"]  # the retry: the other style
    assert answer.local_generation is not None and answer.local_generation.completion_tokens <= 3
    assert answer.confidence == 0.0 or answer.features["degenerate"] == 0.0  # an echo is never trusted
    assert answer.action != "local" or answer.features["degenerate"] == 0.0
