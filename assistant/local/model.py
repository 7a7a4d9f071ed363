"""The local tier: a quantized GGUF model run by llama.cpp, with per-token logprobs of what it generates.

Logprobs come from a logits processor rather than ``logprobs=True``: the latter needs the model loaded with
``logits_all=True``, which keeps logits for every prompt position (n_ctx x n_vocab floats) and slows
prefill. With greedy decoding the generated token is the arg-max of the logits the processor sees, so its
log-probability is exactly the maximum of their log-softmax.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assistant.local.backend import Generation, final_generation


class _LogprobRecorder:
    """Logits processor that records the log-probability of the greedy choice at each step."""

    def __init__(self, cached: np.ndarray) -> None:
        self.logprobs: list[float] = []
        self.prompt_tokens = 0
        self.cached_prompt_tokens = 0
        self._cached = cached  # the tokens whose KV the model held before this call

    def __call__(self, input_ids: Any, scores: np.ndarray) -> np.ndarray:
        if not self.logprobs:
            self.prompt_tokens = len(input_ids)  # at the first step the context is exactly the prompt
            self.cached_prompt_tokens = _common_prefix(self._cached, np.asarray(input_ids))
        top = float(np.max(scores))
        log_z = top + float(np.log(np.sum(np.exp(scores - top))))
        self.logprobs.append(top - log_z)
        return scores


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """How many leading tokens two sequences share: what llama.cpp keeps of its KV cache for a prompt.

    llama-cpp-python evaluates at least the prompt's last token again, so a prompt identical to the cached
    one reuses all but that one.
    """
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    shared = int(differ[0]) if differ.size else n
    return min(shared, max(len(b) - 1, 0))


class LocalModel:
    """One llama.cpp model instance. Not thread-safe by nature, so calls are serialised with a lock."""

    def __init__(
        self,
        model_path: Path,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        seed: int = 0,
    ) -> None:
        from llama_cpp import Llama

        self.model_path = model_path
        self.n_ctx = n_ctx
        self._llama = Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_batch=512,
            seed=seed,
            verbose=False,
        )
        self._lock = threading.Lock()

    def forget_prompt_cache(self) -> None:
        """Drop the KV cache so the next prompt is evaluated in full (benchmarks compare like with like)."""
        with self._lock:
            self._llama.reset()

    def chat(self, messages: Sequence[dict[str, str]], max_tokens: int = 256) -> Generation:
        return final_generation(self.stream_chat(messages, max_tokens=max_tokens))

    def stream_chat(
        self, messages: Sequence[dict[str, str]], max_tokens: int = 256
    ) -> Iterator[str | Generation]:
        """Yield text deltas as they are generated, then one final :class:`Generation`.

        Closing the iterator early (client gone) stops generation at the next token.
        """
        from llama_cpp import LogitsProcessorList

        started = time.perf_counter()
        with self._lock:
            recorder = _LogprobRecorder(self._llama.input_ids[: self._llama.n_tokens].copy())
            stream = self._llama.create_chat_completion(
                messages=list(messages),
                max_tokens=max_tokens,
                temperature=0.0,
                repeat_penalty=1.0,  # keeps greedy = arg-max of the logits the recorder sees
                stream=True,
                logits_processor=LogitsProcessorList([recorder]),
            )
            parts: list[str] = []
            finish_reason = "stop"
            try:
                for chunk in stream:
                    choice = chunk["choices"][0]
                    delta = choice.get("delta", {}).get("content") or ""
                    if delta:
                        parts.append(delta)
                        yield delta
                    if choice.get("finish_reason"):
                        finish_reason = choice["finish_reason"]
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
        yield Generation(
            text="".join(parts).strip(),
            prompt_tokens=recorder.prompt_tokens,
            completion_tokens=len(recorder.logprobs),
            token_logprobs=recorder.logprobs,
            finish_reason=finish_reason,
            seconds=time.perf_counter() - started,
            cached_prompt_tokens=recorder.cached_prompt_tokens,
        )
