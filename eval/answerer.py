"""The real answerer for eval runs: Penny's own Cascade, evaluator, paid and ledger.

Each question is retrieved once; the Cascade is then asked twice, ``mode="local"`` and ``mode="paid"``,
over those same passages (the cascade's retriever is pinned to them), each under its own request id. The
cost of each call is read back from the ledger's answer row for that request id, never recomputed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from assistant.answering.prompts import grounded_messages
from eval.runs import Judgement, RunError, TierCall, needed_tiers, parse_configs

if TYPE_CHECKING:
    from assistant.answering.cascade import Cascade
    from assistant.answering.evaluator import Evaluator
    from assistant.ledger import Ledger
    from assistant.paid.client import PaidClient
    from assistant.settings import Settings
    from eval.datasets import Dataset
    from index.retrieval import Passage, Retriever


class _PinnedRetriever:
    """Stands in for the Retriever inside the Cascade: returns the passages eval already retrieved."""

    def __init__(self, retriever: Retriever) -> None:
        self.inner = retriever
        self.collection = retriever.collection
        self.passages: list[Passage] = []

    def search(self, query: str, k: int | None = None, where: Any = None, **_: Any) -> list[Passage]:
        return list(self.passages)


class CascadeAnswerer:
    """Implements ``eval.runs.Answerer`` over a real :class:`Cascade` and :class:`Ledger`."""

    def __init__(
        self,
        cascade: Cascade,
        retriever: Retriever,
        ledger: Ledger,
        evaluator: Evaluator,
        paid: PaidClient | None,
        *,
        collection: str,
        default_threshold: float,
    ) -> None:
        self.cascade = cascade
        self.ledger = ledger
        self.evaluator = evaluator
        self.paid = paid
        self.collection = collection
        self.default_threshold = default_threshold
        self.pinned = _PinnedRetriever(retriever)
        cascade.retriever = lambda _name: self.pinned  # type: ignore[assignment,return-value]

    def retrieve(self, question: str) -> list[Passage]:
        return self.pinned.inner.search(question)

    def answer_local(
        self, question: str, passages: Sequence[Passage], request_id: str
    ) -> tuple[TierCall, Judgement]:
        self.pinned.passages = list(passages)
        # The local answer is always generated (the `local` config and calibration need it); the routing
        # the service would apply before generation is recorded separately and applied in `derive`.
        floor = self.evaluator.retrieval_floor
        self.evaluator.retrieval_floor = float("-inf")
        try:
            answer = self.cascade.answer(
                question, collection=self.collection, mode="local", request_id=request_id
            )
        finally:
            self.evaluator.retrieval_floor = floor
        routed = self.evaluator.route_before_generation(passages)
        features = dict(answer.features)
        forced = self.evaluator.on_local_abstain if features.get("abstained") else None
        judgement = Judgement(
            p_correct=float(answer.confidence) if answer.confidence is not None else 0.0,
            p_answerable=answer.answerable,  # the evaluator's own, from the same decision
            abstain_below=self.evaluator.calibration.abstain_below,
            features=features,
            route=routed.action if routed is not None else "generate",
            forced=forced,
            reason=routed.reason if routed is not None else answer.reason,
        )
        return self._call(answer, request_id), judgement

    def paid_worst_case_micro_usd(self, question: str, passages: Sequence[Passage]) -> int:
        if self.paid is None:
            return 0
        messages = grounded_messages(question, passages, self.cascade.answer_style)
        prompt_tokens = self.paid.estimate_prompt_tokens(messages)
        return self.ledger.prices.worst_case_micro_usd(self.paid.model, prompt_tokens, self.paid.max_tokens)

    def answer_paid(self, question: str, passages: Sequence[Passage], request_id: str) -> TierCall:
        self.pinned.passages = list(passages)
        answer = self.cascade.answer(question, collection=self.collection, mode="paid", request_id=request_id)
        return self._call(answer, request_id)

    def _call(self, answer: Any, request_id: str) -> TierCall:
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
            latency_ms=round(float(answer.latency_ms), 1),
            prompt_tokens=int(answer.prompt_tokens),
            completion_tokens=int(answer.completion_tokens),
            degraded=bool(answer.degraded),
            reason=answer.reason or "",
        )


def build_answerer(
    settings: Settings, dataset: Dataset, collection: str | None, config_names: Sequence[str]
) -> tuple[CascadeAnswerer, dict[str, Any]]:
    """Wire the Cascade from settings the way the service does, on the dataset's eval collection.

    Returns the answerer and run metadata (models, collection) for the report.
    """
    from assistant.answering.cascade import Cascade
    from assistant.ledger import open_ledger
    from assistant.paid.client import PaidClient
    from assistant.service import Penny
    from eval.datasets import ingest_contexts
    from index.store import get_collection

    need_local, need_paid = needed_tiers(parse_configs(config_names, settings.cascade.escalate_below))
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
    evaluator = penny.evaluator
    retriever = penny.retriever(collection)
    cascade = Cascade(
        retriever=lambda _name: retriever,
        local=penny.local_model,
        evaluator=evaluator,
        paid=paid,
        cache=None,  # each question once per tier: a cache would only blur the tiers' costs
        ledger=ledger,
        default_collection=collection,
        local_model_name=settings.models.local,
        max_tokens=settings.models.max_tokens,
        budget_policy=settings.ledger.over_budget_policy,
        answer_style=settings.cascade.answer_style,
    )
    answerer = CascadeAnswerer(
        cascade,
        retriever,
        ledger,
        evaluator,
        paid,
        collection=collection,
        default_threshold=settings.cascade.escalate_below,
    )
    meta = {
        "collection": collection,
        "local_model": settings.models.local if need_local else None,
        "paid_model": settings.paid.model if need_paid else None,
        "retrieval_mode": settings.index.retrieval_mode,
        "top_k": settings.index.top_k,
        "answer_style": settings.cascade.answer_style,
        "calibration_file": str(settings.cascade.calibration_file or "bundled"),
        "ledger": settings.db_url.split("://", 1)[0],
    }
    return answerer, meta
