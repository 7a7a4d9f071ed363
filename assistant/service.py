"""Wires settings to the parts of Penny: model registry, index, local model. One instance per process."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.local.registry import ModelRegistry
from assistant.settings import Settings
from index.bm25 import Bm25Store
from index.chunking import Chunker
from index.embedding import get_embedder
from index.ingest import Ingester
from index.retrieval import FusionWeights, Retriever
from index.sentvec import SentenceVectorStore
from index.store import get_collection, max_batch_size, open_client

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from assistant.answering.answer import CascadeAnswer
    from assistant.answering.cascade import Cascade
    from assistant.calibration import Mismatch, Running
    from assistant.ingestion import IngestWorker
    from assistant.ledger import Ledger
    from assistant.ledger.costs import IngestCost
    from assistant.limits import Limiter, LimitPolicy
    from assistant.local.backend import LocalBackend
    from assistant.local.model import LocalModel
    from assistant.local.pool.base import PoolBase
    from index.embedding import Embedder
    from index.results import IngestSummary

log = logging.getLogger("penny.calibration")


class Penny:
    def __init__(self, settings: Settings, *, serving: bool = False) -> None:
        """``serving``: this is the HTTP service (``penny serve``), whose local tier defaults to the pool."""
        self.settings = settings
        self.serving = serving
        self.registry = ModelRegistry(settings.model_cache_dir)

    @cached_property
    def embedder(self) -> Embedder:
        return get_embedder(self.settings.index.embedding_model)

    @cached_property
    def chroma(self) -> ClientAPI:
        return open_client(self.settings.chroma_path, self.settings.index.chroma_url)

    @cached_property
    def _retrievers(self) -> dict[str, Retriever]:
        return {}

    def retriever(self, collection: str | None = None) -> Retriever:
        """One retriever per collection per process: it holds the collection's in-memory BM25 index."""
        name = collection or self.settings.index.collection
        if name not in self._retrievers:
            self._retrievers[name] = self._new_retriever(name)
        return self._retrievers[name]

    def bm25_store(self, collection: Collection) -> Bm25Store:
        """Where this collection's BM25 index is saved: ingest updates it, retrievers load it."""
        return Bm25Store(self.settings.bm25_path / str(collection.id))

    def sentence_store(self, collection: Collection) -> SentenceVectorStore:
        """Where this collection's chunks keep their sentence vectors: ingest deletes, retrieval fills."""
        path = self.settings.sentence_vectors_path / f"{collection.id}.sqlite"
        return SentenceVectorStore(path, self.settings.index.embedding_model)

    def _new_retriever(self, name: str) -> Retriever:
        index = self.settings.index
        collection = get_collection(self.chroma, name)
        return Retriever(
            collection,
            self.embedder,
            top_k=index.top_k,
            client=self.chroma,
            mode=index.retrieval_mode,
            weights=FusionWeights(dense=index.dense_weight, bm25=index.bm25_weight, rrf_k=index.rrf_k),
            candidates=index.fusion_candidates,
            bm25_store=self.bm25_store(collection),
            sentence_store=self.sentence_store(collection),
        )

    def ingester(self, collection: str | None = None) -> Ingester:
        name = collection or self.settings.index.collection
        chunker = Chunker(
            self.embedder.count_tokens,
            max_tokens=min(self.settings.index.chunk_tokens, self.embedder.max_tokens - 2),
            overlap_tokens=self.settings.index.chunk_overlap,
        )
        collection = get_collection(self.chroma, name)
        return Ingester(
            collection,
            self.embedder,
            chunker,
            write_batch=max_batch_size(self.chroma),
            embed_batch_chunks=self.settings.index.embed_batch_chunks,
            bm25_store=self.bm25_store(collection),
            client=self.chroma,
            sentence_store=self.sentence_store(collection),
            sentence_vectors_at_ingest=self.settings.index.sentence_vectors_at_ingest,
        )

    def ingest(
        self, paths: Iterable[Path], collection: str | None = None, **options: Any
    ) -> tuple[IngestSummary, IngestCost]:
        """Ingest ``paths`` (``options``: :meth:`Ingester.ingest`'s) and record the run's cost in the ledger,
        under the system user as any CLI command (HTTP uploads: ``IngestWorker``, under the uploader)."""
        ingester = self.ingester(collection)
        summary = ingester.ingest(paths, **options)
        ledger = self.ledger
        files = summary.added + summary.updated + summary.unchanged
        files += len(summary.failed) + len(summary.duplicates)
        cost = ledger.record_ingest(
            ledger.system_user().user_id,
            ingester.collection.name,
            files=files,
            chunks=summary.chunks_written,
            seconds=summary.seconds,
        )
        return summary, cost

    @cached_property
    def ingest_worker(self) -> IngestWorker:
        """The thread that indexes HTTP uploads: this process owns the embedded index, so it writes."""
        from assistant.ingestion import IngestWorker

        return IngestWorker(self)

    def warm_up(self) -> None:
        """Load the embedder and the local tier now rather than on the first request."""
        self.embedder.embed(["warm up"])
        if self.pool is not None:
            pool_settings = self.settings.pool
            self.pool.wait_ready(pool_settings.min_workers, timeout_s=pool_settings.startup_timeout_s)
        else:
            self.local_model  # noqa: B018

    def readiness(self) -> dict[str, str]:
        """Each dependency's state: "ok" or the reason it is not usable."""
        checks: dict[str, str] = {}
        pool = self.__dict__.get("pool")
        if pool is not None:
            from assistant.local.pool.manager import WorkerState

            ready = len(pool.workers(WorkerState.READY))
            checks["local_model"] = "ok" if ready else "no ready worker"
        else:
            checks["local_model"] = "ok" if "local_model" in self.__dict__ else "not loaded"
        try:
            self.chroma.heartbeat()
            checks["index"] = "ok"
        except Exception as exc:
            checks["index"] = f"unreachable: {type(exc).__name__}"
        ledger = self.__dict__.get("ledger")
        if ledger is not None:
            try:
                ledger.ping()
                checks["ledger"] = "ok"
            except Exception as exc:
                checks["ledger"] = f"unreachable: {type(exc).__name__}"
        return checks

    @property
    def pool_enabled(self) -> bool:
        """``pool.enabled``, or when unset (None), whether this is the service.

        The service's promise is an autoscaled pool; a CLI command, an eval run or a test answers in one
        process, where spawning a worker would only add its start-up to the model load.
        """
        enabled = self.settings.pool.enabled
        return self.serving if enabled is None else enabled

    @cached_property
    def pool(self) -> PoolBase | None:
        """Workers serving the local tier when :attr:`pool_enabled`; None runs it in-process.

        Spawned worker processes with the autoscaler, or, with ``pool.remote_urls`` (Kubernetes), the given
        URLs: scaling those is KEDA's or the HPA's job, so nothing is spawned.
        """
        if not self.pool_enabled:
            return None
        pool_settings = self.settings.pool.model_copy(update={"enabled": True})  # as GET /v1/pool shows it
        shedding_bound = self.settings.server.max_queue_wait_s
        if pool_settings.remote_urls:
            from assistant.local.pool.remote import RemotePool

            return RemotePool(
                pool_settings.remote_urls, pool_settings, max_queue_wait_s=shedding_bound
            ).start()
        from assistant.local.pool.manager import WorkerPool
        from assistant.local.pool.sizing import sized

        models = self.settings.models
        path = self.registry.path(models.local)
        # Each HTTP process runs its own pool, so they share the host's room for workers.
        pool_settings = sized(pool_settings, processes=self.settings.server.workers)
        return WorkerPool(
            path,
            pool_settings,
            n_ctx=models.n_ctx,
            model_name=models.local,
            max_queue_wait_s=shedding_bound,
            processes=self.settings.server.workers,
        ).start()

    @property
    def local_backend(self) -> LocalBackend:
        """What the cascade generates with: the pool's backend, or the in-process model."""
        if self.pool is not None:
            return self._pool_backend
        return self.local_model

    @cached_property
    def _pool_backend(self) -> LocalBackend:
        from assistant.local.pool.backend import PoolBackend

        assert self.pool is not None
        return PoolBackend(self.pool)

    def close(self) -> None:
        """Stop worker processes (or a remote pool's health checks); the rest goes with the process."""
        cascade = self.__dict__.get("cascade")
        if cascade is not None and cascade.delivery.shadow is not None:
            cascade.delivery.shadow.close(wait=False)  # a pending check is dropped, never half-recorded
        backend = self.__dict__.get("_pool_backend")
        if backend is not None:
            backend.close()
        if self.__dict__.get("pool") is not None:
            self.pool.stop()
        worker = self.__dict__.get("ingest_worker")
        if worker is not None:
            worker.stop()  # lets the running ingest job finish its writes
        limiter = self.__dict__.get("limiter")
        if limiter is not None:
            limiter.close()

    @cached_property
    def local_model(self) -> LocalModel:
        from assistant.local.model import LocalModel

        path = self.registry.path(self.settings.models.local)
        return LocalModel(path, n_ctx=self.settings.models.n_ctx, n_threads=self.settings.models.n_threads)

    @cached_property
    def cascade(self) -> Cascade:
        """Retrieval, local model, evaluator, paid tier (when configured), cache and ledger, wired once."""
        from assistant.answering.factory import build_cache, build_cascade, build_shadow
        from assistant.paid import PaidClient

        paid = PaidClient.from_settings(self.settings.paid)
        return build_cascade(
            self.settings,
            retriever=self.retriever,
            local=self.local_backend,
            ledger=self.ledger,
            embedder=self.embedder,
            paid=paid,
            cache=build_cache(self.settings, self.embedder),
            shadow=build_shadow(self.settings, paid, self.ledger),
        )

    @cached_property
    def running(self) -> Running:
        """The models, answer style and prompt this process answers with, as calibration stamps name them."""
        from assistant.calibration import running
        from assistant.ledger import PriceTable

        return running(self.settings, self.registry, PriceTable.load(self.settings.ledger.prices_file))

    def calibration_mismatches(self) -> dict[str, list[Mismatch]]:
        """Per calibration in use (``*``: the default), what differs from what it was fitted for."""
        return self.cascade.evaluator.calibrations.mismatches(self.running)

    def warn_calibration_mismatches(self) -> None:
        """Log each calibration fitted for other models, answer style or prompt than these, with the fix."""
        from assistant.calibration.stamp import DEFAULT

        for collection, mismatches in self.calibration_mismatches().items():
            which = "the default" if collection == DEFAULT else f"collection {collection}'s"
            for mismatch in mismatches:
                log.warning("%s calibration was not fitted for what is running: %s", which, mismatch.line())

    @cached_property
    def ledger(self) -> Ledger:
        """Every answer is recorded here. Fails at start-up if the paid model has no price."""
        from assistant.ledger import open_ledger

        paid = (self.settings.paid.model,) if self.settings.paid.base_url else ()
        return open_ledger(self.settings, paid_models=paid)

    @cached_property
    def limiter(self) -> Limiter:
        """Rate and concurrency limits: shared through Redis when ``redis_url`` is set, else per process."""
        from assistant.limits import build_limiter

        return build_limiter(self.settings)

    @cached_property
    def limit_policy(self) -> LimitPolicy:
        """The limits that apply to whom: settings' defaults, the ledger's per-user and per-key overrides."""
        from assistant.limits import LimitPolicy

        return LimitPolicy(self.settings.limits, self.ledger.rate_limit_overrides)

    def ask(self, question: str, collection: str | None = None, **options: Any) -> CascadeAnswer:
        """Answer through the cascade; ``options`` are :meth:`Cascade.answer`'s (mode, threshold, ...)."""
        return self.cascade.answer(question, collection=collection, **options)
