"""Batch escalation: work that needs no answer now (eval runs, ``penny ask --batch``) sends its escalations
to the paid tier's Batch API as one batch, at batch prices, instead of one live call each.

The questions are answered locally first (:meth:`BatchEscalation.local_first`: the cascade as usual, its
escalation left pending; eval's paid calls have no local answer); what would be escalated is collected as
:class:`~assistant.answering.escalation.Pending`, each one's batch worst case is reserved (model
``<paid>:batch``, priced by the table's ``batch_input``/``batch_output``), and the batch is sent and
waited for. Then every escalation
ends as a live one does (:class:`~assistant.answering.escalation.Escalation`): a result is charged at batch
price with its answer's record in one transaction; a request the batch did not answer (failed, expired,
cancelled, malformed) releases its reservation and serves the local answer, degraded, with the reason.
The prompt is the live call's and the answer is assembled by the same code, so a batch answer is the
answer the live path would have given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from assistant.answering.decision import Decision
from assistant.answering.escalation import Pending
from assistant.paid import BatchRequest, PaidBatchFailed, PaidError, describe

if TYPE_CHECKING:
    from assistant.answering.answer import CascadeAnswer
    from assistant.answering.cascade import Cascade
    from assistant.ledger import Principal, Reservation
    from assistant.paid import BatchClient, BatchOutcome
    from index.retrieval import Passage

log = logging.getLogger("penny.answering")

BATCH_REASON = "batch"  # prefixed to a batch escalation's reason, so its answer row says how it was asked


class BatchEscalation:
    """Sends a cascade's pending escalations as one batch, with their money held in the ledger."""

    def __init__(self, cascade: Cascade, batch: BatchClient) -> None:
        self.cascade = cascade
        self.batch = batch

    def paid_call(
        self,
        question: str,
        passages: Sequence[Passage],
        *,
        request_id: str,
        collection: str | None = None,
        principal: Principal | None = None,
    ) -> Pending:
        """What ``Cascade.answer(mode="paid", passages=...)`` would send for this question (eval's call)."""
        req = self.cascade.new_request(
            question,
            collection=collection,
            history=(),
            mode="paid",
            threshold=None,
            principal=principal,
            request_id=request_id,
            max_tokens=None,
            passages=passages,
            route_before_generation=True,
            stream=False,
        )
        req.messages = self.cascade.prompt_builder.grounded(question, passages, ())
        return Pending(req, list(passages), req.messages, Decision("escalate", "mode=paid"), None)

    def local_first(
        self,
        question: str,
        *,
        request_id: str,
        collection: str | None = None,
        principal: Principal | None = None,
        threshold: float | None = None,
        history: Sequence[dict[str, str]] = (),
    ) -> CascadeAnswer | Pending:
        """The cascade's answer to ``question`` when it needs no paid call; else the escalation it would
        make, pending for :meth:`run` (with the local answer, if one was generated, to fall back on)."""
        req = self.cascade.new_request(
            question,
            collection=collection,
            history=history,
            mode="cascade",
            threshold=threshold,
            principal=principal,
            request_id=request_id,
            max_tokens=None,
            passages=None,
            route_before_generation=True,
            stream=False,
        )
        req.batch = []
        answers = [item for item in self.cascade.run(req) if not isinstance(item, str)]
        return answers[-1] if answers else req.batch[-1]

    def run(self, pending: Sequence[Pending]) -> list[CascadeAnswer]:
        """Reserve, send one batch, wait, and end each escalation; the answers in ``pending``'s order."""
        escalation = self.cascade.escalation
        ledger, paid = escalation.ledger, self.cascade.paid
        if paid is None:
            return [self._not_answered(p, "upstream_failed: not_configured") for p in pending]
        model = ledger.prices.batch_model(paid.model) if ledger is not None else paid.model
        answers: dict[str, CascadeAnswer] = {}
        reserved: dict[str, Reservation | None] = {}
        try:
            for p in pending:
                try:
                    reserved[p.req.request_id] = self._reserve(p, model)
                except _OverBudget:
                    answers[p.req.request_id] = self._not_answered(p, "budget_exhausted")
        except BaseException:  # refused (budget policy "refuse") or stopped: nothing was sent yet
            self._release_all(reserved, "cancelled")
            raise
        sending = [p for p in pending if p.req.request_id in reserved]
        if sending:
            outcome = self._send(sending, reserved)
            for p in sending:
                answers[p.req.request_id] = self._end(p, reserved[p.req.request_id], outcome, model)
        return [answers[p.req.request_id] for p in pending]

    def _reserve(self, p: Pending, model: str) -> Reservation | None:
        """The batch worst case, held before anything is uploaded; ``sent``: a crash from here on is
        charged the worst case by recovery and flagged for reconciliation, never silently released."""
        ledger, paid = self.cascade.escalation.ledger, self.cascade.paid
        if ledger is None or paid is None:
            return None
        from assistant.ledger import BudgetExceeded

        try:
            return ledger.reserve(
                request_id=p.req.request_id,
                principal=p.req.principal,  # type: ignore[arg-type]  # set from system_user() when absent
                model=model,
                prompt_tokens=paid.reserve_prompt_tokens(p.messages),
                max_completion_tokens=_max_tokens(p, self.cascade),
                sent=True,
            )
        except BudgetExceeded:
            if self.cascade.escalation.budget_policy == "refuse":
                raise
            raise _OverBudget from None

    def _send(
        self, sending: Sequence[Pending], reserved: dict[str, Reservation | None]
    ) -> BatchOutcome | str:
        """The batch's outcome, or why nothing came back. A failure before the batch exists, or a batch that
        failed whole, releases every hold (nothing is charged for either); one after it exists (polling
        broke) leaves them open: the batch may still run and bill, so recovery charges the worst case."""
        requests = [BatchRequest(p.req.request_id, p.messages, _max_tokens(p, self.cascade)) for p in sending]
        started = time.perf_counter()
        try:
            batch_id = self.batch.submit(requests)
        except PaidError as exc:
            self._release_all(reserved, exc.reason)
            return describe(exc)
        try:
            ledger, held = self.cascade.escalation.ledger, [r.request_id for r in reserved.values() if r]
            # Holds outlive the reservation TTL while the batch runs; recovery takes them only once this
            # process stops polling (it died): a batch's calls may still be billed.
            keep_open = (lambda: ledger.keep_open(held)) if ledger is not None else None
            batch = self.batch.wait(batch_id, on_poll=keep_open)
            return self.batch.collect(batch, requests, time.perf_counter() - started)
        except PaidBatchFailed as exc:
            log.warning("%s", exc)
            self._release_all(reserved, exc.reason)
            return describe(exc)
        except PaidError as exc:
            log.error("lost track of batch %s (%s): its holds stay open for recovery", batch_id, exc)
            return describe(exc)

    def _end(
        self, p: Pending, reservation: Reservation | None, outcome: BatchOutcome | str, model: str
    ) -> CascadeAnswer:
        decision = replace(p.decision, reason=f"{BATCH_REASON} ({p.decision.reason})")
        if isinstance(outcome, str):
            return self._not_answered(p, outcome)
        result = outcome.results.get(p.req.request_id)
        if result is None:
            reason = outcome.not_answered.get(p.req.request_id, "not_answered")
            self._release(reservation, reason)
            return self._not_answered(p, f"upstream_failed: {reason}")
        # Recorded under the batch model's name, as its charge is: `penny usage --by model` tells them apart.
        result = replace(result, model=model)
        return self.cascade.escalation.answered(
            p.req, p.passages, decision, p.generation, result, reservation
        )

    def _not_answered(self, p: Pending, failure: str) -> CascadeAnswer:
        decision = replace(p.decision, reason=f"{BATCH_REASON} ({p.decision.reason})")
        return self.cascade.escalation.not_answered(p.req, p.passages, decision, p.generation, failure)

    def _release(self, reservation: Reservation | None, reason: str) -> None:
        ledger = self.cascade.escalation.ledger
        if reservation is not None and ledger is not None:
            ledger.release(reservation, reason)

    def _release_all(self, reserved: dict[str, Reservation | None], reason: str) -> None:
        for reservation in reserved.values():
            self._release(reservation, reason)


def _max_tokens(p: Pending, cascade: Cascade) -> int:
    """The request's paid token limit: what is reserved is what the batch line asks for."""
    assert cascade.paid is not None
    return p.req.paid_max_tokens or cascade.paid.max_tokens


class _OverBudget(Exception):
    """This escalation's worst case does not fit the budget (policy local_only): it keeps its local answer."""
