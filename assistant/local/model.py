"""The local tier: a quantized GGUF model run by llama.cpp, with per-token logprobs of what it generates,
and optionally of a text the prompt ends with (prefill.py).

The prompt is rendered with the GGUF's own chat template and tokenized here, once, so the tokens scored in
the prefill are the tokens the answer is generated from.

Logprobs come from a logits processor rather than ``logprobs=True``: the latter needs the model loaded with
``logits_all=True``, which keeps logits for every prompt position (n_ctx x n_vocab floats) and slows
prefill. With greedy decoding the generated token is the arg-max of the logits the processor sees, so its
log-probability is exactly the maximum of their log-softmax.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assistant.local.backend import Generation, final_generation
from assistant.local.prefill import common_prefix, locate_tail, prefill_scoring


class _LogprobRecorder:
    """Logits processor that records the log-probability of the greedy choice at each step."""

    def __init__(self) -> None:
        self.logprobs: list[float] = []

    def __call__(self, input_ids: Any, scores: np.ndarray) -> np.ndarray:
        top = float(np.max(scores))
        log_z = top + float(np.log(np.sum(np.exp(scores - top))))
        self.logprobs.append(top - log_z)
        return scores


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
        from llama_cpp.llama_chat_format import CHATML_CHAT_TEMPLATE, Jinja2ChatFormatter

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
        eos, bos = self._llama.token_eos(), self._llama.token_bos()
        self._template = Jinja2ChatFormatter(
            template=self._llama.metadata.get("tokenizer.chat_template", CHATML_CHAT_TEMPLATE),
            eos_token=self._llama._model.token_get_text(eos) if eos != -1 else "",
            bos_token=self._llama._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        self._lock = threading.Lock()
        # (decode, prompt evaluation): what a request without a threads hint runs with
        self.startup_threads = (self.n_threads, self.n_threads_batch)

    @property
    def n_threads(self) -> int:
        """Threads the context decodes with now (llama.cpp's own answer, not what was asked)."""
        import llama_cpp

        return int(llama_cpp.llama_n_threads(self._llama._ctx.ctx))

    @property
    def n_threads_batch(self) -> int:
        """Threads the context evaluates prompts with now."""
        import llama_cpp

        return int(llama_cpp.llama_n_threads_batch(self._llama._ctx.ctx))

    def _use_threads(self, threads: int | None) -> None:
        """Decode with ``threads`` (None: the start-up threads) from the next token on; call under the lock.

        Threads by load (pool/README.md): the pool asks for all cores when a request runs alone. Prompt
        evaluation keeps at least its start-up threads, so a hint only ever changes decoding's share; the
        count is capped by the cores this process may use, so a remote caller cannot ask for a thousand.
        """
        decode, batch = self.startup_threads
        if threads is not None:
            decode = max(1, min(threads, _usable_cores()))
            batch = max(batch, decode)
        if (decode, batch) != (self.n_threads, self.n_threads_batch):
            self._llama._ctx.set_n_threads(decode, batch)

    def forget_prompt_cache(self) -> None:
        """Drop the KV cache so the next prompt is evaluated in full (benchmarks compare like with like)."""
        with self._lock:
            self._llama.reset()

    def chat(
        self,
        messages: Sequence[dict[str, str]],
        max_tokens: int = 256,
        *,
        scored_tail: str | None = None,
        threads: int | None = None,
    ) -> Generation:
        return final_generation(
            self.stream_chat(messages, max_tokens=max_tokens, scored_tail=scored_tail, threads=threads)
        )

    def stream_chat(
        self,
        messages: Sequence[dict[str, str]],
        max_tokens: int = 256,
        *,
        scored_tail: str | None = None,
        threads: int | None = None,
    ) -> Iterator[str | Generation]:
        """Yield text deltas as they are generated, then one final :class:`Generation`.

        ``scored_tail``: a text the last message ends with, whose tokens' log-probabilities given all before
        them the Generation carries (``scored_tail_logprobs``). Closing the iterator early (client gone)
        stops generation at the next token. ``threads``: decode with this many threads (None: the
        start-up threads); set once the model is this request's, so a running request is never changed.
        """
        from llama_cpp import LogitsProcessorList

        started = time.perf_counter()
        with self._lock:
            self._use_threads(threads)
            rendered = self._template(messages=list(messages))
            tokens = self._llama.tokenize(
                rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
            )
            # What llama.cpp keeps of the KV cache: at most all but the last token, which it evaluates again.
            cached = min(
                common_prefix(self._llama.input_ids[: self._llama.n_tokens], tokens), len(tokens) - 1
            )
            scored = self._tail(messages, rendered.prompt, tokens, scored_tail)
            tail_logprobs = prefill_scoring(self._llama, tokens, scored) if scored else None
            if scored:
                cached = min(cached, scored.start - 1)  # the tail was evaluated again for its logits
            recorder = _LogprobRecorder()
            stream = self._llama.create_completion(
                prompt=tokens,
                max_tokens=max_tokens,
                temperature=0.0,
                repeat_penalty=1.0,  # keeps greedy = arg-max of the logits the recorder sees
                stream=True,
                stop=rendered.stop,
                stopping_criteria=rendered.stopping_criteria,
                logits_processor=LogitsProcessorList([recorder]),
            )
            parts: list[str] = []
            finish_reason = "stop"
            try:
                for chunk in stream:
                    choice = chunk["choices"][0]
                    delta = choice.get("text") or ""
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
            prompt_tokens=len(tokens),
            completion_tokens=len(recorder.logprobs),
            token_logprobs=recorder.logprobs,
            finish_reason=finish_reason,
            seconds=time.perf_counter() - started,
            cached_prompt_tokens=max(cached, 0),
            scored_tail_logprobs=tail_logprobs,
        )

    def _tail(
        self, messages: Sequence[dict[str, str]], prompt: str, tokens: list[int], tail: str | None
    ) -> range:
        """The tokens of ``tail`` to score; empty when there are none: no tail, one the last message does
        not end with, or a prompt too long for the context (which generating then rejects)."""
        if not tail or not messages or not messages[-1].get("content", "").endswith(tail):
            return range(0)
        if len(tokens) >= self.n_ctx:
            return range(0)
        scored = locate_tail(self._llama, prompt, tokens, tail)
        if not scored or scored.start < 1:
            return range(0)
        return scored


def _usable_cores() -> int:
    """Cores this process may run on (a taskset or cpuset, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
