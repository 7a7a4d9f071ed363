"""Instruments shared by index tests and benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class CountingEmbedder:
    """Delegates to the real embedder and counts texts embedded (proves 'no embedding work')."""

    def __init__(self, real) -> None:  # type: ignore[no-untyped-def]
        self.real = real
        self.texts = 0

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.real.embed_array(texts)
