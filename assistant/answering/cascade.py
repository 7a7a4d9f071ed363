"""The cascade: answer locally when the local answer is good, pay for the paid tier only when it is not.

One request goes: semantic cache (optional) -> retrieval (or the caller's passages) -> pre-generation
routing (nothing relevant retrieved: abstain or go straight to the paid tier, without local compute) ->
local answer -> evaluator's judgement -> serve locally, abstain, or escalate with the SAME sources and
prompt. This module is that flow and nothing else; each fork's parts live apart:

- what to do at each fork: :mod:`assistant.answering.decision`;
- what the local model reads (transcript layout, prompt diet): :mod:`assistant.answering.prompt.builder`
  (the sources, the evaluator and the paid tier see whole passages);
- asking the paid tier, with its money held in the ledger, and falling back when it fails:
  :mod:`assistant.answering.escalation`;
- assembling the answer, then recording, shadowing and caching it: :mod:`assistant.answering.delivery`.

The cascade never raises to its caller for a paid-tier problem: a failed escalation serves the local answer
marked ``degraded`` with the reason. The only exception that escapes is the ledger's ``BudgetExceeded`` when
the budget policy says "refuse" (the API turns it into HTTP 429).

Streaming: deltas are yielded as they are produced, then one final :class:`CascadeAnswer`, which is
authoritative. In cascade mode the local answer must be judged whole before anyone sees it, so local text
is yielded only once it is kept (in one piece); a paid answer streams live. If a paid stream breaks midway,
the final answer is the degraded local one.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Literal

from assistant.answering.answer import CascadeAnswer
from assistant.answering.decision import Decision, Policy, RetryReason, better, decide, retry_reason, route
from assistant.answering.delivery import Delivery, attribution_tail
from assistant.answering.escalation import Escalation
from assistant.answering.judge.evaluator import Evaluator, Judgement
from assistant.answering.judge.features import best_question_passage, retrieval_features
from assistant.answering.prompt.builder import LocalPromptBuilder
from assistant.answering.prompt.compression import Diet
from assistant.answering.prompt.grounded import StyleSetting, other_style, style_for
from assistant.answering.prompt.transcript import Transcript
from assistant.answering.request import MODES, Mode, Request
from assistant.local.backend import Generation, LocalBackend, final_generation
from assistant.paid import PaidClient

if TYPE_CHECKING:
    from assistant.answering.cache import SemanticCache
    from assistant.answering.shadow import ShadowSampler
    from assistant.ledger import Ledger, Principal
    from index.retrieval import Passage, Retriever


class Cascade:
    """Carries one request through the cascade; its parts (prompt builder, delivery, escalation) are public
    so a built cascade's settings can be changed where they live (tests, eval, benchmarks do)."""

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
        answer_style: StyleSetting = "auto",
        transcript_window_turns: int = 4,
        local_context_tokens: int = 4096,
        diet: Diet | None = None,
    ) -> None:
        self.retriever = retriever
        self.local = local
        self.evaluator = evaluator
        self.policy = policy
        self.paid = paid
        self.ledger = ledger
        self.default_collection = default_collection
        self.max_tokens = max_tokens
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
        self.delivery = Delivery(
            ledger=ledger,
            cache=cache,
            shadow=shadow,
            local_model_name=local_model_name,
            paid_model=paid.model if paid is not None else None,
            paid_prompt=self.prompt_builder.grounded,
        )
        self.escalation = Escalation(
            paid=paid,
            ledger=ledger,
            delivery=self.delivery,
            generate_locally=self._generate_locally,
            budget_policy=budget_policy,
        )

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
        request = self.new_request(
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
        for item in self.run(request):
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
        yield from self.run(
            self.new_request(
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

    def new_request(
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
    ) -> Request:
        """A request's state, checked; public for the batch path (assistant.answering.batch)."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        if principal is None and self.ledger is not None:
            principal = self.ledger.system_user()
        paid_max_tokens = None if self.paid is None else _capped(self.paid.max_tokens, max_tokens)
        return Request(
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

    def run(self, req: Request) -> Iterator[str | CascadeAnswer]:
        """Deltas, then the final answer; none when the escalation is left for a batch (``req.batch``)."""
        if req.passages is not None:
            passages: Sequence[Passage] = list(req.passages)
        else:
            retriever = self._retriever(req.collection)  # built once per process: set-up, not this answer's
            with req.timing("retrieval"):
                use_cache = req.mode != "paid" and not req.history
                hit = self.delivery.cached(req, retriever) if use_cache else None
                passages = retriever.search(req.question) if hit is None else []
            if hit is not None:
                if req.stream:
                    yield hit.answer
                yield self.delivery.finish(req, hit)
                return
        self.prompt_builder.remember(req.collection, req.question, passages)
        messages = req.messages = self.prompt_builder.grounded(req.question, passages, req.history)

        if req.mode == "paid":  # the caller chose the tier: nothing to decide
            yield from self.escalation.escalate(
                req, passages, messages, Decision("escalate", "mode=paid"), None
            )
            return

        routed = self._route(req, passages) if req.route_before_generation else None
        if routed is not None:
            if routed.action == "abstain":
                yield from self.delivery.emit(req, self.delivery.abstain(req, passages, routed))
            else:
                yield from self.escalation.escalate(req, passages, messages, routed, None)
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
            self.delivery.record_disconnect(req, passages, req.local_prompt.messages, streamed)
            raise
        if generation is None:
            raise RuntimeError("a LocalBackend must end its stream with a Generation")

        with req.timing("evaluation"):
            judgement = self.evaluator.judge(req.question, passages, generation, req.collection)
        decide_for = self._decider(req, messages)
        decision = decide_for(judgement)
        why = retry_reason(judgement, decision, self.policy)
        if why is not None and not (req.stream and req.mode == "local"):  # a live stream cannot be taken back
            generation, decision = self._retry(req, passages, generation, decision, why, decide_for)
        if req.mode == "local":
            answer = self.delivery.local(req, passages, generation, decision)
            yield from attribution_tail("".join(streamed), answer.answer)  # the rest was streamed live
            yield self.delivery.finish(req, answer)
            return
        if decision.action == "local":
            yield from self.delivery.emit(req, self.delivery.local(req, passages, generation, decision))
        elif decision.action == "abstain":
            yield from self.delivery.emit(req, self.delivery.abstain(req, passages, decision, generation))
        else:
            yield from self.escalation.escalate(req, passages, messages, decision, generation)

    def _decider(self, req: Request, messages: list[dict[str, str]]) -> Callable[[Judgement], Decision]:
        """``decide()`` for this request: the paid call's expected cost and the budget share left (a ledger
        read) are the request's, looked up once whichever local answer is judged."""
        return partial(
            decide,
            policy=self.policy,
            threshold=req.threshold,
            local_only=req.mode == "local",
            paid_cost_usd=self.escalation.expected_cost_usd(
                messages, self.policy.expected_paid_completion_tokens
            ),
            budget_share_left=self.escalation.budget_share_left(req) if self.policy.budget_pressure else None,
        )

    def _retry(
        self,
        req: Request,
        passages: Sequence[Passage],
        first: Generation,
        decision: Decision,
        why: RetryReason,
        decide_for: Callable[[Judgement], Decision],
    ) -> tuple[Generation, Decision]:
        """A second local answer (decision.retry_reason): a degenerate one is asked again in the other answer
        style, an abstention on the passage that best matches the question alone. The better of the two by
        the decision rule is kept; its usage is reported, the local cost (worker-seconds) is both answers'."""
        style = style_for(req.question, self.prompt_builder.answer_style)
        if why == "degenerate":
            shown, style = list(passages), other_style(style)
        else:
            shown = [passages[best_question_passage(req.question, passages, self.evaluator.embedder)]]
        prompt = self.prompt_builder.build(
            req.question,
            shown,
            req.history,
            collection=req.collection,
            max_tokens=req.local_max_tokens,
            style=style,
        )
        second = final_generation(self._generate_locally(req, passages, prompt=prompt))
        with req.timing("evaluation"):
            judgement = self.evaluator.judge(req.question, passages, second, req.collection)
        retried = decide_for(judgement)
        kept, chosen = (
            ("second", (second, retried)) if better(decision, retried) else ("first", (first, decision))
        )
        generation, chosen_decision = chosen
        # Usage is the served answer's (a client's max_tokens bounds what it gets); the cost is both tries'.
        generation = replace(generation, seconds=first.seconds + second.seconds)
        return generation, replace(
            chosen_decision, reason=f"{chosen_decision.reason}; retried {why}, kept {kept}"
        )

    def _route(self, req: Request, passages: Sequence[Passage]) -> Decision | None:
        retrieval = retrieval_features(passages)
        routed = route(
            retrieval["retrieval_top"], bool(passages), self.policy, local_only=req.mode == "local"
        )
        return None if routed is None else replace(routed, features=retrieval)

    def _generate_locally(
        self, req: Request, passages: Sequence[Passage], prompt: Transcript | None = None
    ) -> Generator[str | Generation, None, None]:
        """The local tier's answer: text deltas, then the :class:`Generation`, its ``[n]`` numbered as this
        turn's sources. The prompt is built once per request and kept on ``req`` (the disconnect record
        counts it); one home, so a live answer and a fallback one are asked and numbered alike."""
        if prompt is None:
            if req.local_prompt is None:
                req.local_prompt = self.prompt_builder.build(
                    req.question,
                    passages,
                    req.history,
                    collection=req.collection,
                    max_tokens=req.local_max_tokens,
                )
            prompt = req.local_prompt
        # The question ends the prompt: its likelihood given the passages comes from the same prefill.
        backend_stream = self.local.stream_chat(
            prompt.messages, max_tokens=req.local_max_tokens, scored_tail=req.question
        )
        try:
            for item in backend_stream:
                if isinstance(item, Generation):
                    yield self.prompt_builder.in_turn_numbering(prompt, passages, item)
                else:
                    yield item
        except GeneratorExit:
            backend_stream.close()  # type: ignore[attr-defined]  # the caller hung up: stop generating
            raise


def _capped(configured: int, requested: int | None) -> int:
    """A request may ask for fewer tokens than configured, never more (cost and latency stay bounded)."""
    return configured if requested is None else min(configured, requested)
