"""Token counting works with the network unreachable (the session-wide guard blocks all but loopback)."""

from __future__ import annotations

import socket

import pytest

from assistant.paid import tokens
from tests.conftest import BLOCKED_ATTEMPTS


def test_counts_offline_even_from_a_cold_cache(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "empty-cache"))
    tokens.encoding.cache_clear()
    with pytest.raises(OSError):
        socket.create_connection(("93.184.215.14", 443), timeout=1)  # network really is cut
    BLOCKED_ATTEMPTS.remove(repr(("93.184.215.14", 443)))
    assert tokens.count_text("hello world") == 2
    assert tokens.count_text("") == 0
    # "<|endoftext|>" in user text is counted as text, not rejected as a special token.
    assert tokens.count_text("<|endoftext|>") > 1


def test_message_overhead() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello world"}]
    expected = 3 + sum(3 + tokens.count_text(m["role"]) + tokens.count_text(m["content"]) for m in messages)
    assert tokens.count_messages(messages) == expected
