"""Settings to a working cascade, in one place: the service and eval wire it the same way."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from assistant.answering.cache import SemanticCache
from assistant.answering.cascade import Cascade
from assistant.answering.decision import Policy
from assistant.answering.judge.evaluator import Evaluator
from assistant.answering.prompt.compression import Diet
from assistant.answering.shadow import ShadowSampler
from assistant.calibration import Calibration, Calibrations

if TYPE_CHECKING:
    from assistant.ledger import Ledger
    from assistant.local.backend import LocalBackend
    from assistant.paid import PaidClient
    from assistant.settings import Settings
    from index.embedding import Embedder
    from index.retrieval import Retriever


def build_evaluator(settings: Settings, embedder: Embedder) -> Evaluator:
    """The evaluator with the configured calibration file (the bundled one by default), and each
    collection's own from ``penny calibrate`` where there is one; told the running paid model (when a
    paid tier is configured) with the price table's prior for it."""
    from assistant.calibration import PaidModel
    from assistant.ledger import PriceTable

    default = Calibration.load(settings.cascade.calibration_file)
    paid = None
    if settings.paid.base_url:
        paid = PaidModel.from_prices(settings.paid.model, PriceTable.load(settings.ledger.prices_file))
    return Evaluator(Calibrations(default, settings.calibration_dir), embedder, paid)


def build_cache(settings: Settings, embedder: Embedder) -> SemanticCache | None:
    """The semantic cache, when ``cascade.cache_enabled``."""
    cascade = settings.cascade
    if not cascade.cache_enabled:
        return None
    return SemanticCache(embedder, settings.data_dir / "semantic_cache.sqlite", cascade.cache_min_similarity)


def build_shadow(settings: Settings, paid: PaidClient | None, ledger: Ledger | None) -> ShadowSampler | None:
    """The shadow sampler, when a paid tier and a ledger exist and ``cascade.shadow_rate`` > 0."""
    cascade = settings.cascade
    if paid is None or ledger is None or cascade.shadow_rate <= 0:
        return None
    return ShadowSampler(
        paid,
        ledger,
        rate=cascade.shadow_rate,
        budget_usd=cascade.shadow_budget_usd,
        min_precision=cascade.shadow_min_precision,
        window=cascade.shadow_window,
    )


def build_cascade(
    settings: Settings,
    *,
    retriever: Callable[[str | None], Retriever],
    local: LocalBackend,
    ledger: Ledger | None,
    embedder: Embedder,
    paid: PaidClient | None,
    cache: SemanticCache | None = None,
    shadow: ShadowSampler | None = None,
) -> Cascade:
    """A :class:`Cascade` with the configured evaluator, policy, token limits, answer style and prompt diet.

    The parts that own resources (retriever, local backend, ledger, paid client, cache) are the caller's,
    so a process shares them and eval can leave out what would blur its numbers (the cache).
    """
    return Cascade(
        retriever=retriever,
        local=local,
        evaluator=build_evaluator(settings, embedder),
        policy=Policy.from_settings(settings.cascade),
        paid=paid,
        cache=cache,
        ledger=ledger,
        shadow=shadow,
        default_collection=settings.index.collection,
        local_model_name=settings.models.local,
        max_tokens=settings.models.max_tokens,
        budget_policy=settings.ledger.over_budget_policy,
        answer_style=settings.cascade.answer_style,
        transcript_window_turns=settings.cascade.transcript_window_turns,
        local_context_tokens=settings.models.n_ctx,
        diet=Diet.from_settings(settings.cascade),
    )
