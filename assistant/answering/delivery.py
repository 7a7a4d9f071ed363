"""Delivery: what happens to an answer once the cascade has chosen it.

An answer is assembled the same way whichever tier produced it (sources, citation, costs, the decision's
numbers), handed out (whole, or as the last delta of a stream), and then accounted for: recorded in the
ledger, offered to the shadow sampler, and cached when the cascade itself chose it. Apart from the cascade
because this changes with the ledger, the cache and the shadow checks, not with how an answer is chosen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from assistant.answering.answer import CascadeAnswer, Source
from assistant.answering.cache import SemanticCache, content_hash
from assistant.answering.decision import Decision
from assistant.answering.judge.features import ensure_citation
from assistant.answering.prompt.grounded import ABSTAIN_PHRASE, is_abstention
from assistant.local.backend import Generation
from assistant.paid.tokens import count_messages, count_text
from index.retrieval import Passage

if TYPE_CHECKING:
    from assistant.answering.request import Request
    from assistant.answering.shadow import ShadowSampler
    from assistant.ledger import Ledger
    from assistant.paid import PaidResult
    from index.retrieval import Retriever


# The paid tier's prompt for a question, its passages and the conversation before it.
PaidPrompt = Callable[[str, Sequence["Passage"], Sequence[dict[str, str]]], list[dict[str, str]]]


class Delivery:
    """Assembles the cascade's answers and, once one is served, records, shadows and caches it."""

    def __init__(
        self,
        *,
        ledger: Ledger | None = None,
        cache: SemanticCache | None = None,
        shadow: ShadowSampler | None = None,
        local_model_name: str = "local",
        paid_model: str | None = None,
        paid_prompt: PaidPrompt | None = None,
    ) -> None:
        """``paid_model`` and ``paid_prompt`` (the paid tier's prompt for a question and its passages: the
        cascade's prompt builder) price what paid-only would have cost for each answer; without them that
        is unknown."""
        self.ledger = ledger
        self.cache = cache
        self.shadow = shadow
        self.local_model_name = local_model_name
        self.paid_model = paid_model
        self.paid_prompt = paid_prompt

    # ---------------------------------------------------------------------------------- assembly

    def local(
        self, req: Request, passages: Sequence[Passage], generation: Generation, decision: Decision
    ) -> CascadeAnswer:
        return self.assemble(
            req,
            text=generation.text,
            passages=passages,
            tier="local",
            decision=decision,
            generation=generation,
        )

    def abstain(
        self,
        req: Request,
        passages: Sequence[Passage],
        decision: Decision,
        generation: Generation | None = None,
    ) -> CascadeAnswer:
        return self.assemble(
            req, text=ABSTAIN_PHRASE, passages=passages, tier="none", decision=decision, generation=generation
        )

    def assemble(
        self,
        req: Request,
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
            local_cost = self.ledger.compute_cost_micro_usd(generation.seconds)
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
            paid_helps_source=decision.judgement.paid_helps_source if decision.judgement else "",
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

    def cached(self, req: Request, retriever: Retriever) -> CascadeAnswer | None:
        """The cached answer to a near-identical question, its sources unchanged; None without a cache."""
        if self.cache is None:
            return None

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

    # ---------------------------------------------------------------------------------- handing out

    def emit(self, req: Request, answer: CascadeAnswer) -> Iterator[str | CascadeAnswer]:
        """A whole answer: its text as one delta when streaming, then the final answer."""
        if req.stream and answer.answer:
            yield answer.answer
        yield self.finish(req, answer)

    def finish(self, req: Request, answer: CascadeAnswer) -> CascadeAnswer:
        """Stamp latency, record the answer in the ledger, and cache it if the cascade itself chose it
        (a paid answer, or a local one judged good enough: not one forced by mode=local, nor degraded)."""
        answer.latency_ms = (time.perf_counter() - req.started) * 1000
        if self.ledger is not None:
            self._price_compute(req, answer)
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

    def record_disconnect(
        self, req: Request, passages: Sequence[Passage], messages: list[dict[str, str]], streamed: list[str]
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
        self.finish(req, self.local(req, passages, partial, decision))

    # ---------------------------------------------------------------------------------- accounting

    def _shadow(self, req: Request, answer: CascadeAnswer) -> None:
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

    def _price_compute(self, req: Request, answer: CascadeAnswer) -> None:
        """The rest of the answer's full cost: its retrieval and evaluator seconds at the instance price, and
        its share of the collection's ingest so far (this answer included)."""
        assert self.ledger is not None
        answer.retrieval_cost_micro_usd = self.ledger.compute_cost_micro_usd(req.retrieval_seconds)
        answer.evaluation_cost_micro_usd = self.ledger.compute_cost_micro_usd(req.evaluation_seconds)
        answer.ingest_amortised_micro_usd = self.ledger.amortised_ingest_micro_usd(req.collection)

    def _record(self, req: Request, answer: CascadeAnswer) -> None:
        """One ledger row per answer; a paid call's charge is settled in the same transaction."""
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
            abstained=is_abstention(answer.answer),
            features=dict(answer.features) or None,  # a rating of this answer is a label for a refit
            paid_only_micro_usd=self.paid_only_micro_usd(req, answer),
            retrieval_seconds=req.retrieval_seconds,
            evaluation_seconds=req.evaluation_seconds,
            retrieval_micro_usd=answer.retrieval_cost_micro_usd,
            evaluation_micro_usd=answer.evaluation_cost_micro_usd,
        )
        if req.unsettled is None:
            self.ledger.record_answer(record)
            return
        reservation, usage = req.unsettled
        req.unsettled = None
        self.ledger.settle(reservation, usage, answer=record)

    def paid_only_micro_usd(self, req: Request, answer: CascadeAnswer) -> int | None:
        """What this answer would have cost had Penny sent every question to the paid tier: a paid answer's
        own charge; for any other, the paid prompt for this question (its sources, for a cache hit) and
        the answer's text counted by tiktoken, at the paid model's price. None (unknown, not 0) without
        a paid model, its price or (for a cache hit) its prompt."""
        if answer.tier == "paid":
            return answer.paid_cost_micro_usd
        if self.paid_model is None or self.ledger is None:
            return None
        from assistant.ledger import UnknownModelPrice, Usage

        messages = req.messages
        if messages is None:  # a cache hit, answered before any prompt was built
            if self.paid_prompt is None:
                return None
            shown = [Passage(s.id, s.source, s.text, s.score, {"title": s.title}) for s in answer.sources]
            messages = self.paid_prompt(req.question, shown, req.history)
        usage = Usage(count_messages(messages), count_text(answer.answer))
        try:
            return self.ledger.prices.cost_micro_usd(self.paid_model, usage)
        except UnknownModelPrice:
            return None


def attribution_tail(streamed: str, final: str) -> Iterator[str]:
    """The ``[n]`` that :func:`ensure_citation` appended after a live stream, as one last delta, so a
    streaming client ends with the same text as the final answer."""
    streamed = streamed.strip()
    if final.startswith(streamed) and len(final) > len(streamed):
        yield final[len(streamed) :]
