"""Wires settings to the parts of Penny: model registry, index, local model. One instance per process."""

from __future__ import annotations

import time
from functools import cached_property
from typing import TYPE_CHECKING

from assistant.answer import Answer, Source
from assistant.model_registry import ModelRegistry
from assistant.prompts import cited_numbers, grounded_messages
from assistant.settings import Settings
from index.chunking import Chunker
from index.embedding import get_embedder
from index.ingest import Ingester
from index.retrieval import Retriever
from index.store import get_collection, open_client

if TYPE_CHECKING:
    from chromadb.api import ClientAPI

    from assistant.local_llm import LocalModel
    from index.embedding import Embedder


class Penny:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = ModelRegistry(settings.model_cache_dir)

    @cached_property
    def embedder(self) -> Embedder:
        return get_embedder(self.settings.index.embedding_model)

    @cached_property
    def chroma(self) -> ClientAPI:
        return open_client(self.settings.chroma_path, self.settings.index.chroma_url)

    def retriever(self, collection: str | None = None) -> Retriever:
        name = collection or self.settings.index.collection
        return Retriever(get_collection(self.chroma, name), self.embedder, top_k=self.settings.index.top_k)

    def ingester(self, collection: str | None = None) -> Ingester:
        name = collection or self.settings.index.collection
        chunker = Chunker(
            self.embedder.count_tokens,
            max_tokens=min(self.settings.index.chunk_tokens, self.embedder.max_tokens - 2),
            overlap_tokens=self.settings.index.chunk_overlap,
        )
        return Ingester(get_collection(self.chroma, name), self.embedder, chunker)

    @cached_property
    def local_model(self) -> LocalModel:
        from assistant.local_llm import LocalModel

        path = self.registry.path(self.settings.models.local)
        return LocalModel(path, n_ctx=self.settings.models.n_ctx, n_threads=self.settings.models.n_threads)

    def ask(self, question: str, collection: str | None = None) -> Answer:
        started = time.perf_counter()
        passages = self.retriever(collection).search(question)
        generation = self.local_model.chat(
            grounded_messages(question, passages), max_tokens=self.settings.models.max_tokens
        )
        cited = cited_numbers(generation.text, len(passages))
        return Answer(
            answer=generation.text,
            sources=[Source.from_passage(p) for p in passages],
            tier="local",
            latency_ms=(time.perf_counter() - started) * 1000,
            prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens,
            extras={"cited": cited, "mean_logprob": round(generation.mean_logprob, 4)},
        )
