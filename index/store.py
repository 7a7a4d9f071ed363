"""Chroma access: a persistent client on disk, or a Chroma server when ``CHROMA_URL`` / settings say so.

Collections use cosine space and receive embeddings we compute ourselves (no Chroma embedding function,
so Chroma never tries to download one).

Chroma's ``PersistentClient`` is not process-safe: two processes writing (or one writing while another
reads) one directory can corrupt it or serve stale data. To ingest while ``penny serve`` answers, run
``chroma run --path DIR --port P`` and point both at it with ``CHROMA_URL`` (or ``index.chroma_url``);
both then use ``chromadb.HttpClient`` and the server serialises access.

Every write bumps a *revision stamp* in the collection's metadata so that readers holding derived
state (the in-memory BM25 index) know when to rebuild it, even across processes.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")
REVISION_KEY = "penny:revision"
DEFAULT_PAGE = 5000


class CollectionNotFound(LookupError):
    """The named collection does not exist; the message lists the ones that do."""


def validate_collection_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise ValueError(
            f"invalid collection name {name!r}: use 3-512 characters from [a-zA-Z0-9._-], "
            "starting and ending with a letter or digit"
        )
    return name


def chroma_url(configured: str | None = None) -> str | None:
    """The Chroma server URL from settings, else ``CHROMA_URL``; None means Chroma on disk."""
    return configured or os.environ.get("CHROMA_URL") or None


def open_client(path: Path, url: str | None = None) -> ClientAPI:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    url = chroma_url(url)
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if url:
        parsed = urlparse(url if "://" in url else f"http://{url}")
        return chromadb.HttpClient(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 8000,
            ssl=parsed.scheme == "https",
            settings=chroma_settings,
        )
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


def get_collection(client: ClientAPI, name: str, create: bool = True) -> Collection:
    validate_collection_name(name)
    if create:
        return client.get_or_create_collection(
            name=name, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )
    try:
        return client.get_collection(name=name, embedding_function=None)
    except Exception as exc:  # chromadb raises NotFoundError / ValueError depending on client type
        known = ", ".join(sorted(list_collection_names(client))) or "none"
        raise CollectionNotFound(f"no collection named {name!r} (existing: {known})") from exc


def list_collection_names(client: ClientAPI) -> list[str]:
    return sorted(c if isinstance(c, str) else c.name for c in client.list_collections())


def max_batch_size(client: ClientAPI) -> int:
    """Largest write Chroma accepts in one call (depends on the backend's SQLite limits)."""
    try:
        return max(1, int(client.get_max_batch_size()))
    except Exception:  # older or remote clients without the call: Chroma's documented floor
        return 1000


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def revision(client: ClientAPI, name: str) -> str:
    """The collection's current revision stamp, read fresh (a collection object caches its metadata)."""
    metadata = client.get_collection(name=name, embedding_function=None).metadata or {}
    return str(metadata.get(REVISION_KEY, "0"))


def bump_revision(collection: Collection) -> str:
    """Record that the collection's contents changed; readers rebuild derived indexes on a new stamp."""
    stamp = uuid.uuid4().hex
    current = {k: v for k, v in (collection.metadata or {}).items() if not k.startswith("hnsw:")}
    current[REVISION_KEY] = stamp
    collection.modify(metadata=current)
    return stamp


def iter_records(
    collection: Collection, include: Sequence[str] = ("metadatas",), page: int = DEFAULT_PAGE
) -> Iterator[tuple[str, str | None, dict[str, Any]]]:
    """Every (id, document, metadata) of a collection, read in pages so memory stays bounded per call."""
    offset = 0
    while True:
        found = collection.get(include=list(include), limit=page, offset=offset)  # type: ignore[arg-type]
        ids = found["ids"]
        if not ids:
            return
        documents = found.get("documents") or [None] * len(ids)
        metadatas = found.get("metadatas") or [{}] * len(ids)
        for record in zip(ids, documents, metadatas, strict=True):
            yield record[0], record[1], dict(record[2] or {})
        if len(ids) < page:
            return
        offset += len(ids)
