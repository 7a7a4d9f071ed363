"""API keys: ``pny_`` + 256 random bits, shown once; only the SHA-256 is stored.

A plain (unsalted) SHA-256 is the right hash here: the key is high-entropy random, so there is nothing to
brute-force, and it lets ``authenticate`` find the key by an indexed equality lookup.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "pny_"


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(6)


def key_sha256(api_key: str) -> str:
    return hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def key_display(api_key: str) -> str:
    """Enough to recognise a key in a listing, not enough to use it."""
    return api_key[: len(KEY_PREFIX) + 4] + "…"
