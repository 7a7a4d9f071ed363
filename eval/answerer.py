"""The real answerer for eval runs: Penny's own Cascade, paid client and ledger, wired by its factory.

Each question is retrieved once; the Cascade is then asked twice over those same passages, ``mode="local"``
and ``mode="paid"``, each under its own request id. The local answer is always generated (the ``local``
config and calibration need it); what the service would have decided before generating is recorded with
:func:`assistant.answering.decision.route` and applied in ``derive``. The cost of each call is read back from
the ledger's answer row for that request id, never recomputed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from assistant.answering.decision import Decision, Policy, route
from assistant.answering.judge.evaluator import Judgement
from assistant.answering.judge.features import retrieval_top_and_margin
from assistant.answering.prompt.grounded import PROMPT_VERSION, grounded_messages
from eval.configs import needed_tiers, parse_configs
from eval.errors import RunError
from eval.records import TierCall

if TYPE_CHECKING:
    from assistant.answering.answer import CascadeAnswer
    from assistant.answering.cascade import Cascade
    from assistant.ledger import Ledger, Principal
    from assistant.paid import BatchClient, PaidClient
    from assistant.settings import Settings
    from eval.datasets import Dataset
    from index.retrieval import Passage, Retriever


class CascadeAnswerer:
    """Implements ``eval.runs.Answerer`` over a real :class:`Cascade` and :class:`Ledger`."""

    def __init__(
        self,
        cascade: Cascade,
        retriever: Retriever,
        ledger: Ledger,
        paid: PaidClient | None,
        *,
        collection: str,
        principal: Principal | None = None,
        batch: BatchClient | None = None,
    ) -> None:
        self.cascade = cascade
        self.retriever = retriever
        self.ledger = ledger
        self.paid = paid
        self.collection = collection
        self.principal = principal  # charged for the run's calls; None: the system user
        self.batch = batch  # --batch: paid calls go through the Batch API, at its prices

    @property
    def policy(self) -> Policy:
        return self.cascade.policy

    def retrieve(self, question: str) -> list[Passage]:
        return self.retriever.search(question)

    def answer_local(
        self, question: str, passages: Sequence[Passage], request_id: str
    ) -> tuple[TierCall, Judgement, Decision | None]:
        answer = self.cascade.answer(
            question,
            collection=self.collection,
            mode="local",
            request_id=request_id,
            principal=self.principal,
            passages=passages,
            route_before_generation=False,
        )
        assert answer.judgement is not None  # route_before_generation=False: the answer is always judged
        top, _margin = retrieval_top_and_margin(passages)
        return self._call(answer, request_id), answer.judgement, route(top, bool(passages), self.policy)

    def paid_worst_case_micro_usd(self, question: str, passages: Sequence[Passage]) -> int:
        if self.paid is None:
            return 0
        messages = grounded_messages(question, passages, self.cascade.prompt_builder.answer_style)
        prompt_tokens = self.paid.reserve_prompt_tokens(messages)
        model = self.paid.model if self.batch is None else self.ledger.prices.batch_model(self.paid.model)
        return self.ledger.prices.worst_case_micro_usd(model, prompt_tokens, self.paid.max_tokens)

    def answer_paid(self, question: str, passages: Sequence[Passage], request_id: str) -> TierCall:
        answer = self.cascade.answer(
            question,
            collection=self.collection,
            mode="paid",
            request_id=request_id,
            passages=passages,
            principal=self.principal,
        )
        return self._call(answer, request_id)

    def answer_paid_batch(self, calls: Sequence[tuple[str, Sequence[Passage], str]]) -> list[TierCall]:
        """The paid answers to ``calls`` (question, passages, request id), asked as one batch: the same
        prompts and answer assembly as :meth:`answer_paid`, charged at batch prices."""
        from assistant.answering.batch import BatchEscalation

        if self.batch is None:
            raise RunError("--batch needs the paid tier: set PENNY_PAID__BASE_URL")
        escalation = BatchEscalation(self.cascade, self.batch)
        pending = [
            escalation.paid_call(
                question, passages, request_id=rid, collection=self.collection, principal=self.principal
            )
            for question, passages, rid in calls
        ]
        answers = escalation.run(pending)
        return [self._call(answer, rid) for answer, (_, _, rid) in zip(answers, calls, strict=True)]

    def _call(self, answer: CascadeAnswer, request_id: str) -> TierCall:
        row = self.ledger.answer(request_id)
        if row is None:
            raise RunError(
                f"the ledger has no answer row for request {request_id}; is the cascade recording?"
            )
        return TierCall(
            answer=answer.answer,
            request_id=request_id,
            tier=str(row["tier"]),
            cost_micro_usd=int(row["local_cost_micro_usd"] or 0) + int(row["paid_cost_micro_usd"] or 0),
            latency_ms=round(answer.latency_ms, 1),
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
            degraded=answer.degraded,
            reason=answer.reason,
        )


def build_answerer(
    settings: Settings,
    dataset: Dataset,
    collection: str | None,
    config_names: Sequence[str],
    *,
    batch: bool = False,
) -> tuple[CascadeAnswerer, dict[str, Any]]:
    """Wire the Cascade from settings the way the service does, on the dataset's eval collection; with
    ``batch``, paid calls go through the paid tier's Batch API.

    Returns the answerer and run metadata (models, collection) for the report.
    """
    from assistant.answering.factory import build_cascade
    from assistant.ledger import open_ledger
    from assistant.paid import PaidClient
    from assistant.service import Penny
    from eval.datasets import ingest_contexts
    from index.store import get_collection

    need_local, need_paid = needed_tiers(parse_configs(config_names))
    paid = PaidClient.from_settings(settings.paid) if need_paid else None
    if need_paid and paid is None:
        raise RunError(
            "configs paid/cascade need the paid tier: set PENNY_PAID__BASE_URL (offline: run "
            "`penny paid serve` and PENNY_PAID__MODEL=qwen2.5-1.5b), or run only --config local"
        )
    penny = Penny(settings)
    if collection is None:
        if not dataset.contexts:
            raise RunError(
                f"{dataset.name} has no contexts to index; pass --collection with the documents' collection"
            )
        collection = dataset.collection_name
        added = ingest_contexts(dataset, get_collection(penny.chroma, collection), penny.embedder)
        if added:
            print(f"indexed {added} paragraphs into collection {collection!r}")
    ledger = open_ledger(settings, paid_models=(settings.paid.model,) if need_paid else ())
    cascade = build_cascade(
        settings,
        retriever=penny.retriever,
        local=penny.local_model,
        ledger=ledger,
        embedder=penny.embedder,
        paid=paid,
        cache=None,  # each question once per tier: a cache would only blur the tiers' costs
    )
    batch_client = None
    if batch and paid is not None:
        from assistant.ledger import UnknownModelPrice
        from assistant.paid import BatchClient

        try:
            ledger.prices.batch_model(paid.model)  # no batch price: refused before anything is asked
        except UnknownModelPrice as exc:
            raise RunError(str(exc)) from exc
        batch_client = BatchClient(
            paid,
            poll_interval_s=settings.paid.batch_poll_interval_s,
            max_wait_s=settings.paid.batch_max_wait_s,
        )
    answerer = CascadeAnswerer(
        cascade, penny.retriever(collection), ledger, paid, collection=collection, batch=batch_client
    )
    meta = {
        "collection": collection,
        "local_model": settings.models.local if need_local else None,
        "local_model_sha256": penny.registry.sha256(settings.models.local) if need_local else None,
        "paid_model": settings.paid.model if need_paid else None,
        "paid_batch": batch_client is not None,
        "retrieval_mode": settings.index.retrieval_mode,
        "top_k": settings.index.top_k,
        "answer_style": settings.cascade.answer_style,
        "prompt_version": PROMPT_VERSION,
        "date": datetime.now(UTC).date().isoformat(),  # the day it was (last) answered: the stamp's date
        "calibration_file": str(settings.cascade.calibration_file or "bundled"),
        "ledger": settings.db_url.split("://", 1)[0],
    }
    return answerer, meta
