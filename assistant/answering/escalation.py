"""Escalation: carrying out "ask the paid tier", with its money held in the ledger throughout.

The worst case is reserved before the call, released if the call fails or the caller goes away, and
charged with the answer's record when it succeeds. A failed escalation never raises to the caller: it
serves the local answer marked ``degraded`` (generated now if routing skipped it). The one exception that
escapes is the ledger's ``BudgetExceeded`` when the budget policy says "refuse" (HTTP 429 in the API).
Also here: what an escalation is expected to cost and how much budget is left for it, which the decision
weighs before choosing one. Apart from the cascade because this changes with the paid tier and the ledger.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from assistant.answering.charged import ledger_usage
from assistant.answering.delivery import Delivery, attribution_tail
from assistant.local.backend import Generation, final_generation
from assistant.paid import PaidError, PaidResult, describe

if TYPE_CHECKING:
    from assistant.answering.answer import CascadeAnswer
    from assistant.answering.decision import Decision
    from assistant.answering.request import Request
    from assistant.ledger import Ledger, Reservation
    from assistant.paid import PaidClient
    from index.retrieval import Passage

# The cascade's local generation for a request (its prompt built once, citations numbered as this turn's).
GenerateLocally = Callable[["Request", Sequence["Passage"]], Iterator[str | Generation]]


@dataclass
class Pending:
    """An escalation waiting for a batch (assistant.answering.batch): the request, what the paid tier is
    sent, and the local answer (None when there is none yet) served if the batch does not answer."""

    req: Request
    passages: list[Passage]
    messages: list[dict[str, str]]
    decision: Decision
    generation: Generation | None


class Escalation:
    """Asks the paid tier for the cascade, or falls back to the local answer when it cannot."""

    def __init__(
        self,
        *,
        paid: PaidClient | None,
        ledger: Ledger | None,
        delivery: Delivery,
        generate_locally: GenerateLocally,
        budget_policy: Literal["local_only", "refuse"] = "local_only",
    ) -> None:
        """``generate_locally`` is the cascade's, so a fallback answer is asked and numbered as a live one."""
        self.paid = paid
        self.ledger = ledger
        self.delivery = delivery
        self.generate_locally = generate_locally
        self.budget_policy = budget_policy

    def expected_cost_usd(self, messages: list[dict[str, str]], completion_tokens: int) -> float:
        """What escalating this prompt is expected to cost, from the price table: the prompt counted by
        tiktoken and an answer of ``completion_tokens``. 0 without a ledger (no prices); infinite without a
        paid tier, so the expected-loss rule never picks an escalation that cannot happen."""
        if self.paid is None:
            return math.inf
        if self.ledger is None:
            return 0.0
        from assistant.ledger import Usage

        usage = Usage(self.paid.estimate_prompt_tokens(messages), completion_tokens)
        return self.ledger.prices.cost_micro_usd(self.paid.model, usage) / 1e6

    def budget_share_left(self, req: Request) -> float | None:
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

    def escalate(
        self,
        req: Request,
        passages: Sequence[Passage],
        messages: list[dict[str, str]],
        decision: Decision,
        generation: Generation | None,
    ) -> Iterator[str | CascadeAnswer]:
        """Paid deltas as they arrive (when ``req.stream``), then the final answer (module docstring)."""
        delivery = self.delivery
        if req.batch is not None and self.paid is not None:  # --batch: asked later, with the others
            req.batch.append(Pending(req, list(passages), messages, decision, generation))
            return
        if self.paid is None:
            yield from delivery.emit(
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
                    prompt_tokens=self.paid.reserve_prompt_tokens(messages),
                    max_completion_tokens=req.paid_max_tokens,
                    sent=True,  # the call follows at once: one commit, not reserve + mark_sent
                )
            except BudgetExceeded:
                if self.budget_policy == "refuse":
                    raise
                yield from delivery.emit(
                    req, self._fallback(req, passages, decision, generation, "budget_exhausted")
                )
                return

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
                yield delivery.finish(req, failed)
            else:
                yield from delivery.emit(req, failed)
            return
        except BaseException:  # the caller went away mid-stream, or a bug: never leave money held
            if reservation is not None:
                self._release(reservation, "cancelled")
            raise
        assert result is not None
        try:
            answer = self._paid_answer(req, passages, decision, generation, result, reservation)
            if req.stream:
                yield from attribution_tail(result.text, answer.answer)  # the rest was streamed live
                yield delivery.finish(req, answer)
            else:
                yield from delivery.emit(req, answer)
        finally:
            self._settle_unrecorded(req)

    def answered(
        self,
        req: Request,
        passages: Sequence[Passage],
        decision: Decision,
        generation: Generation | None,
        result: PaidResult,
        reservation: Reservation | None,
    ) -> CascadeAnswer:
        """A paid result obtained outside :meth:`escalate` (a batch): assembled, charged and recorded as a
        live one is, the charge with the answer's record in one transaction."""
        answer = self._paid_answer(req, passages, decision, generation, result, reservation)
        try:
            return self.delivery.finish(req, answer)
        finally:
            self._settle_unrecorded(req)

    def not_answered(
        self,
        req: Request,
        passages: Sequence[Passage],
        decision: Decision,
        generation: Generation | None,
        failure: str,
    ) -> CascadeAnswer:
        """An escalation whose paid answer never came (a batch failed, expired, or was cancelled): the local
        answer, degraded, recorded; its reservation is the caller's to release."""
        return self.delivery.finish(req, self._fallback(req, passages, decision, generation, failure))

    def _paid_answer(
        self,
        req: Request,
        passages: Sequence[Passage],
        decision: Decision,
        generation: Generation | None,
        result: PaidResult,
        reservation: Reservation | None,
    ) -> CascadeAnswer:
        paid_cost = 0
        if reservation is not None and self.ledger is not None:
            # Charged in one transaction with the answer's record (Delivery._record); the cost is the one
            # settle charges a fresh reservation.
            usage = ledger_usage(result)
            paid_cost = self.ledger.prices.cost_micro_usd(reservation.model, usage)
            req.unsettled = (reservation, usage)
        return self.delivery.assemble(
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

    def _settle_unrecorded(self, req: Request) -> None:
        if req.unsettled is not None and self.ledger is not None:  # never recorded (client gone): charge
            self.ledger.settle(*req.unsettled)

    def _release(self, reservation: Reservation, reason: str) -> None:
        assert self.ledger is not None
        self.ledger.release(reservation, reason)

    def _fallback(
        self,
        req: Request,
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
            generation = final_generation(self.generate_locally(req, passages))
        fallback = replace(decision, reason=reason)
        if generation is None:
            answer = self.delivery.abstain(req, passages, fallback)
        else:
            answer = self.delivery.local(req, passages, generation, fallback)
        answer.degraded = True
        answer.escalated = True
        return answer
