"""Chroma access: a persistent client on disk, or a Chroma server when ``CHROMA_URL`` / settings say so.

Collections use cosine space and receive embeddings we compute ourselves (no Chroma embedding function,
so Chroma never tries to download one).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]$")


def validate_collection_name(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise ValueError(
            f"invalid collection name {name!r}: use 3-512 characters from [a-zA-Z0-9._-], "
            "starting and ending with a letter or digit"
        )
    return name


def open_client(path: Path, url: str | None = None) -> ClientAPI:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    url = url or os.environ.get("CHROMA_URL")
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if url:
        parsed = urlparse(url)
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
            name=name, metadata={"hnsw:space": "cosine"}, embedding_function=None
        )
    return client.get_collection(name=name, embedding_function=None)
