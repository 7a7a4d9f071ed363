"""The cascade: answer locally when the local answer is good, pay for the paid tier only when it is not.

One request goes: semantic cache (optional) -> retrieval (or the caller's passages) -> pre-generation
routing (nothing relevant retrieved: abstain or go straight to the paid tier, without local compute) ->
local answer -> evaluator's judgement -> serve locally, abstain, or escalate with the SAME sources and
prompt. What to do at each fork is :mod:`assistant.answering.decision`'s; this module carries it out.
What the local model reads (transcript layout, prompt diet) is :mod:`assistant.answering.local_prompt`'s;
the sources, the evaluator and the paid tier see whole passages.

The cascade never raises to its caller for a paid-tier problem: a failed escalation serves the local answer
marked ``degraded`` with the reason. The only exception that escapes is the ledger's ``BudgetExceeded`` when
the budget policy says "refuse" (the API turns it into HTTP 429).

Streaming: deltas are yielded as they are produced, then one final :class:`CascadeAnswer`, which is
authoritative. In cascade mode the local answer must be judged whole before anyone sees it, so local text
is yielded only once it is kept (in one piece); a paid answer streams live. If a paid stream breaks midway,
the final answer is the degraded local one.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from assistant.answering.answer import CascadeAnswer, Source
from assistant.answering.cache import SemanticCache, content_hash
from assistant.answering.charged import ledger_usage
from assistant.answering.compression import Diet
from assistant.answering.decision import Decision, Policy, decide, route
from assistant.answering.evaluator import Evaluator
from assistant.answering.features import ensure_citation, retrieval_features
from assistant.answering.local_prompt import LocalPromptBuilder
from assistant.answering.prompts import ABSTAIN_PHRASE, AnswerStyle, is_abstention
from assistant.answering.transcript import Transcript
from assistant.local.backend import Generation, LocalBackend, final_generation
from assistant.paid import PaidClient, PaidError, PaidResult, describe
from assistant.paid.tokens import count_messages

if TYPE_CHECKING:
    from assistant.answering.shadow import ShadowSampler
    from assistant.ledger import Ledger, Principal, Reservation, Usage
    from index.retrieval import Passage, Retriever

Mode = Literal["cascade", "local", "paid"]
MODES: tuple[str, ...] = ("cascade", "local", "paid")


@dataclass
class _Request:
    question: str
    collection: str
    history: Sequence[dict[str, str]]
    mode: Mode
    threshold: float | None
    principal: Principal | None
    request_id: str
    stream: bool
    started: float
    passages: Sequence[Passage] | None  # the caller's: retrieval (and the cache) skipped
    route_before_generation: bool
    local_max_tokens: int
    paid_max_tokens: int | None  # None without a paid tier
    messages: list[dict[str, str]] | None = None  # the grounded prompt, once built
    local_prompt: Transcript | None = None  # the local tier's prompt and its sources (local_prompt.py)
    unsettled: tuple[Reservation, Usage] | None = None  # a paid call settled with its answer's record


class Cascade:
    def __init__(
        self,
        *,
        retriever: Callable[[str | None], Retriever],
        local: LocalBackend,
        evaluator: Evaluator,
        policy: Policy,
        paid: PaidClient | None = None,
        cache: SemanticCache | None = None,
        ledger: Ledger | None = None,
        shadow: ShadowSampler | None = None,
        default_collection: str = "default",
        local_model_name: str = "local",
        max_tokens: int = 256,
        budget_policy: Literal["local_only", "refuse"] = "local_only",
        answer_style: AnswerStyle = "concise",
        transcript_window_turns: int = 4,
        local_context_tokens: int = 4096,
        diet: Diet | None = None,
    ) -> None:
        self.retriever = retriever
        self.local = local
        self.evaluator = evaluator
        self.policy = policy
        self.paid = paid
        self.cache = cache
        self.ledger = ledger
        self.shadow = shadow
        self.default_collection = default_collection
        self.local_model_name = local_model_name
        self.max_tokens = max_tokens
        self.budget_policy = budget_policy
        self._retrievers: dict[str, Retriever] = {}
        self._retrievers_lock = threading.Lock()
        self.prompt_builder = LocalPromptBuilder(
            retriever=self._retriever,
            embedder=lambda: self.evaluator.embedder,
            answer_style=answer_style,
            transcript_window_turns=transcript_window_turns,
            context_tokens=local_context_tokens,
            diet=diet,
        )

    # ---------------------------------------------------------------------------- prompt settings
    # Kept on the prompt builder, and still settable here: tests, eval and benchmarks switch them on a
    # built cascade, where a plain attribute would silently change nothing.

    @property
    def answer_style(self) -> AnswerStyle:
        return self.prompt_builder.answer_style

    @answer_style.setter
    def answer_style(self, style: AnswerStyle) -> None:
        self.prompt_builder.answer_style = style

    @property
    def transcript_window_turns(self) -> int:
        return self.prompt_builder.transcript_window_turns

    @transcript_window_turns.setter
    def transcript_window_turns(self, turns: int) -> None:
        self.prompt_builder.transcript_window_turns = turns

    @property
    def diet(self) -> Diet | None:
        return self.prompt_builder.diet

    @diet.setter
    def diet(self, diet: Diet | None) -> None:
        self.prompt_builder.diet = diet

    # ------------------------------------------------------------------------------------ public

    def answer(
        self,
        question: str,
        *,
        collection: str | None = None,
        history: Sequence[dict[str, str]] = (),
        mode: Mode = "cascade",
        threshold: float | None = None,
        principal: Principal | None = None,
        request_id: str | None = None,
        max_tokens: int | None = None,
        passages: Sequence[Passage] | None = None,
        route_before_generation: bool = True,
    ) -> CascadeAnswer:
        """Answer ``question``. ``max_tokens`` lowers (never raises) each tier's configured limit.

        ``passages`` answers from those instead of retrieving (no cache either: a hit would not come from
        them). ``route_before_generation=False`` runs the local model even when retrieval found nothing
        relevant, so its answer can be judged (eval).
        """
        request = self._request(
            question,
            collection=collection,
            history=history,
            mode=mode,
            threshold=threshold,
            principal=principal,
            request_id=request_id,
            max_tokens=max_tokens,
            passages=passages,
            route_before_generation=route_before_generation,
            stream=False,
        )
        final: CascadeAnswer | None = None
        for item in self._run(request):
            if isinstance(item, CascadeAnswer):
                final = item
        assert final is not None
        return final

    def stream(
        self,
        question: str,
        *,
        collection: str | None = None,
        history: Sequence[dict[str, str]] = (),
        mode: Mode = "cascade",
        threshold: float | None = None,
        principal: Principal | None = None,
        request_id: str | None = None,
        max_tokens: int | None = None,
        passages: Sequence[Passage] | None = None,
        route_before_generation: bool = True,
    ) -> Iterator[str | CascadeAnswer]:
        """Text deltas, then one final :class:`CascadeAnswer` (see the module docstring, and :meth:`answer`
        for the arguments)."""
        yield from self._run(
            self._request(
                question,
                collection=collection,
                history=history,
                mode=mode,
                threshold=threshold,
                principal=principal,
                request_id=request_id,
                max_tokens=max_tokens,
                passages=passages,
                route_before_generation=route_before_generation,
                stream=True,
            )
        )

    # ------------------------------------------------------------------------------------ flow

    def _request(
        self,
        question: str,
        *,
        collection: str | None,
        history: Sequence[dict[str, str]],
        mode: Mode,
        threshold: float | None,
        principal: Principal | None,
        request_id: str | None,
        max_tokens: int | None,
        passages: Sequence[Passage] | None,
        route_before_generation: bool,
        stream: bool,
    ) -> _Request:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        if principal is None and self.ledger is not None:
            principal = self.ledger.system_user()
        paid_max_tokens = None if self.paid is None else _capped(self.paid.max_tokens, max_tokens)
        return _Request(
            question=question,
            collection=collection or self.default_collection,
            history=history,
            mode=mode,
            threshold=threshold,
            principal=principal,
            request_id=request_id or uuid.uuid4().hex,
            stream=stream,
            started=time.perf_counter(),
            passages=passages,
            route_before_generation=route_before_generation,
            local_max_tokens=_capped(self.max_tokens, max_tokens),
            paid_max_tokens=paid_max_tokens,
        )

    def _retriever(self, collection: str) -> Retriever:
        """One retriever per collection, kept: a retriever holds its BM25 index, costly to rebuild."""
        with self._retrievers_lock:
            if collection not in self._retrievers:
                self._retrievers[collection] = self.retriever(collection)
            return self._retrievers[collection]

    def _run(self, req: _Request) -> Iterator[str | CascadeAnswer]:
        if req.passages is not None:
            passages: Sequence[Passage] = list(req.passages)
        else:
            retriever = self._retriever(req.collection)
            if self.cache is not None and req.mode != "paid" and not req.history:
                hit = self._cache_lookup(req, retriever)
                if hit is not None:
                    if req.stream:
                        yield hit.answer
                    yield self._finish(req, hit)
                    return
            passages = retriever.search(req.question)
        self.prompt_builder.remember(req.collection, req.question, passages)
        messages = req.messages = self.prompt_builder.grounded(req.question, passages, req.history)

        if req.mode == "paid":  # the caller chose the tier: nothing to decide
            yield from self._escalate(req, passages, messages, Decision("escalate", "mode=paid"), None)
            return

        routed = self._route(req, passages) if req.route_before_generation else None
        if routed is not None:
            if routed.action == "abstain":
                yield from self._emit(req, self._abstain(req, passages, routed))
            else:
                yield from self._escalate(req, passages, messages, routed, None)
            return

        generation: Generation | None = None
        streamed: list[str] = []
        local_stream = self._generate_locally(req, passages)  # here: the diet embeds, routing need not wait
        try:
            for item in local_stream:
                if isinstance(item, Generation):
                    generation = item
                elif req.stream and req.mode == "local":
                    streamed.append(item)
                    yield item  # local mode: nothing to judge, stream live
        except GeneratorExit:
            # The client hung up mid-stream: stop generating, and still account for what was produced.
            local_stream.close()
            assert req.local_prompt is not None  # built before the first delta
            self._record_disconnect(req, passages, req.local_prompt.messages, streamed)
            raise
        if generation is None:
            raise RuntimeError("a LocalBackend must end its stream with a Generation")

        judgement = self.evaluator.judge(req.question, passages, generation, req.collection)
        decision = decide(
            judgement,
            self.policy,
            threshold=req.threshold,
            local_only=req.mode == "local",
            paid_cost_usd=self._expected_paid_cost_usd(messages),
            budget_share_left=self._budget_share_left(req) if self.policy.budget_pressure else None,
        )
        if req.mode == "local":
            answer = self._local_answer(req, passages, generation, decision)
            yield from _attribution_tail("".join(streamed), answer.answer)  # the rest was streamed live
            yield self._finish(req, answer)
            return
        if decision.action == "local":
            yield from self._emit(req, self._local_answer(req, passages, generation, decision))
        elif decision.action == "abstain":
            yield from self._emit(req, self._abstain(req, passages, decision, generation))
        else:
            yield from self._escalate(req, passages, messages, decision, generation)

    def _expected_paid_cost_usd(self, messages: list[dict[str, str]]) -> float:
        """What escalating this prompt is expected to cost, from the price table: the prompt counted by
        tiktoken and an answer of the policy's expected length. 0 without a ledger (no prices); infinite
        without a paid tier, so the expected-loss rule never picks an escalation that cannot happen."""
        if self.paid is None:
            return math.inf
        if self.ledger is None:
            return 0.0
        from assistant.ledger import Usage

        usage = Usage(self.paid.estimate_prompt_tokens(messages), self.policy.expected_paid_completion_tokens)
        return self.ledger.prices.cost_micro_usd(self.paid.model, usage) / 1e6

    def _budget_share_left(self, req: _Request) -> float | None:
        """The share not yet committed of the tighter budget the paid call would draw on (the user's, or
        the team's when the collection asked belongs to one), or None when neither has a budget."""
        if self.ledger is None or req.principal is None:
            return None
        statuses = [self.ledger.budget_status(req.principal)]
        if req.principal.team_name is not None:
            statuses.append(self.ledger.team_budget_status(req.principal.team_name))
        shares = [
            max(0.0, status.remaining_micro_usd / status.budget.limit_micro_usd)
            for status in statuses
            if status is not None and status.budget.limit_micro_usd > 0
        ]
        return min(shares, default=None)

    def _route(self, req: _Request, passages: Sequence[Passage]) -> Decision | None:
        retrieval = retrieval_features(passages)
        routed = route(
            retrieval["retrieval_top"], bool(passages), self.policy, local_only=req.mode == "local"
        )
        return None if routed is None else replace(routed, features=retrieval)

    def _generate_locally(
        self, req: _Request, passages: Sequence[Passage]
    ) -> Generator[str | Generation, None, None]:
        """The local tier's answer: text deltas, then the :class:`Generation`, its ``[n]`` numbered as this
        turn's sources. The prompt is built once per request and kept on ``req`` (the disconnect record
        counts it); one home, so a live answer and a fallback one are asked and numbered alike."""
        if req.local_prompt is None:
            req.local_prompt = self.prompt_builder.build(
                req.question,
                passages,
                req.history,
                collection=req.collection,
                max_tokens=req.local_max_tokens,
            )
        backend_stream = self.local.stream_chat(req.local_prompt.messages, max_tokens=req.local_max_tokens)
        try:
            for item in backend_stream:
                if isinstance(item, Generation):
                    yield self.prompt_builder.in_turn_numbering(req.local_prompt, passages, item)
                else:
                    yield item
        except GeneratorExit:
            backend_stream.close()  # type: ignore[attr-defined]  # the caller hung up: stop generating
            raise

    def _emit(self, req: _Request, answer: CascadeAnswer) -> Iterator[str | CascadeAnswer]:
        if req.stream and answer.answer:
            yield answer.answer
        yield self._finish(req, answer)

    # ---------------------------------------------------------------------------------- escalation

    def _escalate(
        self,
        req: _Request,
        passages: Sequence[Passage],
        messages: list[dict[str, str]],
        decision: Decision,
        generation: Generation | None,
    ) -> Iterator[str | CascadeAnswer]:
        if self.paid is None:
            yield from self._emit(
                req,
                self._fallback(req, passages, decision, generation, "upstream_failed: not_configured"),
            )
            return
        reservation = None
        if self.ledger is not None:
            from assistant.ledger import BudgetExceeded

            try:
                reservation = self.ledger.reserve(
                    request_id=req.request_id,
                    principal=req.principal,  # type: ignore[arg-type]  # set from system_user() when absent
                    model=self.paid.model,
                    prompt_tokens=self.paid.estimate_prompt_tokens(messages),
                    max_completion_tokens=req.paid_max_tokens,
                )
            except BudgetExceeded:
                if self.budget_policy == "refuse":
                    raise
                yield from self._emit(
                    req, self._fallback(req, passages, decision, generation, "budget_exhausted")
                )
                return
            self.ledger.mark_sent(reservation)

        result: PaidResult | None = None
        streamed = False
        try:
            if req.stream:
                for item in self.paid.stream_chat(messages, max_tokens=req.paid_max_tokens):
                    if isinstance(item, PaidResult):
                        result = item
                    else:
                        streamed = True
                        yield item
            else:
                result = self.paid.chat(messages, max_tokens=req.paid_max_tokens)
        except PaidError as exc:
            if reservation is not None:
                self._release(reservation, exc.reason)
            failed = self._fallback(req, passages, decision, generation, describe(exc))
            if streamed:  # part of a paid answer is out: the final answer says what to keep
                yield self._finish(req, failed)
            else:
                yield from self._emit(req, failed)
            return
        except BaseException:  # the caller went away mid-stream, or a bug: never leave money held
            if reservation is not None:
                self._release(reservation, "cancelled")
            raise
        assert result is not None
        paid_cost = 0
        if reservation is not None and self.ledger is not None:
            # Charged in one transaction with the answer's record (``_record``); the cost is the one
            # settle charges a fresh reservation.
            usage = ledger_usage(result)
            paid_cost = self.ledger.prices.cost_micro_usd(reservation.model, usage)
            req.unsettled = (reservation, usage)
        try:
            answer = self._answer(
                req,
                text=result.text,
                passages=passages,
                tier="paid",
                decision=decision,
                generation=generation,
                escalated=True,
                paid=result,
                paid_cost=paid_cost,
            )
            if req.stream:
                yield from _attribution_tail(result.text, answer.answer)  # the rest was streamed live
                yield self._finish(req, answer)
            else:
                yield from self._emit(req, answer)
        finally:
            if req.unsettled is not None and self.ledger is not None:  # never recorded (client gone): charge
                self.ledger.settle(*req.unsettled)

    def _release(self, reservation: Reservation, reason: str) -> None:
        assert self.ledger is not None
        self.ledger.release(reservation, reason)

    def _fallback(
        self,
        req: _Request,
        passages: Sequence[Passage],
        decision: Decision,
        generation: Generation | None,
        failure: str,
    ) -> CascadeAnswer:
        """The escalation failed: serve the local answer, degraded. Without one (pre-generation routing or
        paid mode), generate it now if retrieval found something, else abstain."""
        reason = f"{failure} (escalation: {decision.reason})"
        retrieval_empty = decision.reason.startswith("retrieval_empty")
        if generation is None and not retrieval_empty:
            generation = final_generation(self._generate_locally(req, passages))
        fallback = replace(decision, reason=reason)
        if generation is None:
            answer = self._abstain(req, passages, fallback)
        else:
            answer = self._local_answer(req, passages, generation, fallback)
        answer.degraded = True
        answer.escalated = True
        return answer

    # ---------------------------------------------------------------------------------- answers

    def _local_answer(
        self, req: _Request, passages: Sequence[Passage], generation: Generation, decision: Decision
    ) -> CascadeAnswer:
        return self._answer(
            req,
            text=generation.text,
            passages=passages,
            tier="local",
            decision=decision,
            generation=generation,
        )

    def _abstain(
        self,
        req: _Request,
        passages: Sequence[Passage],
        decision: Decision,
        generation: Generation | None = None,
    ) -> CascadeAnswer:
        return self._answer(
            req, text=ABSTAIN_PHRASE, passages=passages, tier="none", decision=decision, generation=generation
        )

    def _answer(
        self,
        req: _Request,
        *,
        text: str,
        passages: Sequence[Passage],
        tier: str,
        decision: Decision,
        generation: Generation | None,
        escalated: bool = False,
        paid: PaidResult | None = None,
        paid_cost: int = 0,
    ) -> CascadeAnswer:
        local_cost = 0
        if generation is not None and self.ledger is not None:
            local_cost = self.ledger.local_cost_micro_usd(generation.seconds)
        produced_by = paid.usage if paid is not None else generation
        if tier in ("local", "paid"):
            text = ensure_citation(req.question, text, passages)
        return CascadeAnswer(
            answer=text,
            sources=[Source.from_passage(p) for p in passages],
            tier=tier,
            latency_ms=0.0,
            prompt_tokens=produced_by.prompt_tokens if produced_by is not None else 0,
            completion_tokens=produced_by.completion_tokens if produced_by is not None else 0,
            request_id=req.request_id,
            escalated=escalated,
            reason=decision.reason,
            confidence=decision.confidence,
            answerable=decision.answerable,
            paid_helps=decision.judgement.p_paid_helps if decision.judgement else None,
            action=decision.action,
            expected_cost_usd=decision.expected_cost_usd,
            expected_loss_usd=dict(decision.expected_loss_usd),
            low_confidence=decision.low_confidence,
            features=dict(decision.features),
            cost_micro_usd=local_cost + paid_cost,
            local_cost_micro_usd=local_cost,
            paid_cost_micro_usd=paid_cost,
            local_model=self.local_model_name if generation is not None else None,
            paid_model=paid.model if paid is not None else None,
            local_generation=generation,
            paid_generation=paid,
            judgement=decision.judgement,
        )

    def _finish(self, req: _Request, answer: CascadeAnswer) -> CascadeAnswer:
        """Stamp latency, record the answer in the ledger, and cache it if the cascade itself chose it
        (a paid answer, or a local one judged good enough: not one forced by mode=local, nor degraded)."""
        answer.latency_ms = (time.perf_counter() - req.started) * 1000
        if self.ledger is not None:
            self._record(req, answer)
        if self.shadow is not None:
            self._shadow(req, answer)
        if (
            self.cache is not None
            and (answer.tier == "paid" or (answer.tier == "local" and req.mode == "cascade"))
            and not answer.degraded
            and not req.history
            and req.passages is None  # the caller's passages are not what retrieval would find
            and not is_abstention(answer.answer)
        ):
            self.cache.put(
                req.collection,
                req.question,
                {
                    "answer": answer.answer,
                    "sources": [s.__dict__ for s in answer.sources],
                    "tier": answer.tier,
                    "confidence": answer.confidence,
                },
                [(s.id, content_hash(s.text)) for s in answer.sources],
            )
        return answer

    def _shadow(self, req: _Request, answer: CascadeAnswer) -> None:
        """Maybe queue a paid check of the answer: only a local answer the cascade itself chose to serve,
        on retrieval it ran (the caller's passages are not)."""
        assert self.shadow is not None
        if (
            req.mode == "cascade"
            and answer.tier == "local"
            and not answer.degraded
            and req.passages is None
            and req.messages is not None
        ):
            self.shadow.maybe_check(
                request_id=req.request_id, collection=req.collection, messages=req.messages, answer=answer
            )

    def _record_disconnect(
        self, req: _Request, passages: Sequence[Passage], messages: list[dict[str, str]], streamed: list[str]
    ) -> None:
        """Record a local answer cut short by a client disconnect. Its token counts are estimates: prompt
        tokens by tiktoken, completion tokens by streamed deltas (llama.cpp sends one per token)."""
        elapsed = time.perf_counter() - req.started
        partial = Generation(
            text="".join(streamed),
            prompt_tokens=count_messages(messages),
            completion_tokens=len(streamed),
            finish_reason="client_disconnected",
            seconds=elapsed,
        )
        decision = Decision("local", "client_disconnected")
        self._finish(req, self._local_answer(req, passages, partial, decision))

    def _record(self, req: _Request, answer: CascadeAnswer) -> None:
        # LEAD: field names follow assistant.ledger.records.AnswerRecord as of this writing.
        from assistant.ledger import AnswerRecord

        assert self.ledger is not None and req.principal is not None
        local: Generation | None = answer.local_generation
        paid: PaidResult | None = answer.paid_generation
        record = AnswerRecord(
            request_id=req.request_id,
            principal=req.principal,
            tier=answer.tier,  # type: ignore[arg-type]
            collection=req.collection,
            escalated=answer.escalated,
            reason=answer.reason,
            confidence=answer.confidence,
            local_prompt_tokens=local.prompt_tokens if local else 0,
            local_completion_tokens=local.completion_tokens if local else 0,
            paid_prompt_tokens=paid.usage.prompt_tokens if paid else 0,
            paid_cached_prompt_tokens=paid.usage.cached_prompt_tokens if paid else 0,
            paid_completion_tokens=paid.usage.completion_tokens if paid else 0,
            paid_usage_estimated=paid.usage.estimated if paid else False,
            local_cost_micro_usd=answer.local_cost_micro_usd,
            paid_cost_micro_usd=answer.paid_cost_micro_usd,
            latency_ms=answer.latency_ms,
            local_model=answer.local_model,
            paid_model=answer.paid_model,
        )
        if req.unsettled is None:
            self.ledger.record_answer(record)
            return
        reservation, usage = req.unsettled
        req.unsettled = None
        self.ledger.settle(reservation, usage, answer=record)

    # ---------------------------------------------------------------------------------- cache

    def _cache_lookup(self, req: _Request, retriever: Retriever) -> CascadeAnswer | None:
        assert self.cache is not None

        def current_hashes(ids: Sequence[str]) -> dict[str, str]:
            found = retriever.collection.get(ids=list(ids), include=["documents"])
            return {
                pid: content_hash(text or "")
                for pid, text in zip(found["ids"], found["documents"] or [], strict=True)
            }

        hit = self.cache.lookup(req.collection, req.question, current_hashes)
        if hit is None:
            return None
        stored = hit.answer
        return CascadeAnswer(
            answer=stored["answer"],
            sources=[Source(**source) for source in stored["sources"]],
            tier="cache",
            latency_ms=0.0,
            request_id=req.request_id,
            reason=f"cache_hit sim={hit.similarity:.3f} (first answered by {stored['tier']})",
            confidence=stored.get("confidence"),
        )


def _attribution_tail(streamed: str, final: str) -> Iterator[str]:
    """The ``[n]`` that :func:`ensure_citation` appended after a live stream, as one last delta, so a
    streaming client ends with the same text as the final answer."""
    streamed = streamed.strip()
    if final.startswith(streamed) and len(final) > len(streamed):
        yield final[len(streamed) :]


def _capped(configured: int, requested: int | None) -> int:
    """A request may ask for fewer tokens than configured, never more (cost and latency stay bounded)."""
    return configured if requested is None else min(configured, requested)
