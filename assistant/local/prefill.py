"""Scoring the end of a prompt with the prefill that answering it pays for anyway.

How likely a question is, given the passages before it, tells whether the passages speak of what it asks
(docs/eval/evaluator-signals.md). The question ends the local prompt, so its tokens' logits
come from the same forward pass that fills the KV cache for the answer: llama.cpp computes logits only at
the batch positions asked for, so scoring about a dozen tokens adds their output rows and nothing else.
A separate pass with ``logits_all`` would cost another prefill.

This module evaluates the whole prompt as ``Llama.generate`` would (reusing the KV cache's common prefix,
in the same batches), so ``generate`` then finds the prompt cached and samples the first answer token from
the last position's logits at once. It reaches into llama-cpp-python's ``_ctx``, ``_batch`` and
``_requires_eval``: the public ``Llama.eval`` keeps no logits but the last unless the model is loaded with
``logits_all``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from llama_cpp import Llama


def common_prefix(a: Sequence[int] | np.ndarray, b: Sequence[int] | np.ndarray) -> int:
    """How many leading tokens two sequences share."""
    a, b = np.asarray(a), np.asarray(b)
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if differ.size else n


def tail_tokens(piece_lengths: Sequence[int], prompt_bytes: int, tail: tuple[int, int]) -> range:
    """The tokens lying wholly inside the byte span ``tail`` of the prompt, from each token's byte length.

    Offsets are counted back from the prompt's end, so a BOS token the tokenizer added in front (text the
    prompt does not hold) shifts nothing. A token straddling the span's start (" What" after "Question:")
    is left out: it is partly the text before.
    """
    ends = prompt_bytes - np.concatenate([np.cumsum(piece_lengths[::-1])[::-1][1:], [0]])
    starts = ends - np.asarray(piece_lengths)
    inside = np.flatnonzero((starts >= tail[0]) & (ends <= tail[1]))
    return range(int(inside[0]), int(inside[-1]) + 1) if inside.size else range(0)


def locate_tail(llama: Llama, prompt: str, tokens: Sequence[int], tail: str) -> range:
    """The tokens of the last occurrence of ``tail`` in ``prompt`` (tokenized as ``tokens``); empty when
    ``tail`` is not there."""
    at = prompt.rfind(tail) if tail else -1
    if at < 0:
        return range(0)
    start = len(prompt[:at].encode("utf-8"))
    span = (start, start + len(tail.encode("utf-8")))
    prompt_bytes = len(prompt.encode("utf-8"))
    # Only the tokens back to the tail's start are measured (one detokenize each): the tail ends the
    # prompt, so that is a few dozen tokens, not the whole prompt's hundreds.
    lengths: list[int] = []
    covered = 0
    for token in reversed(tokens):
        if covered >= prompt_bytes - start:
            break
        lengths.append(len(llama.detokenize([token], special=True)))
        covered += lengths[-1]
    lengths.reverse()
    found = tail_tokens(lengths, prompt_bytes, span)
    offset = len(tokens) - len(lengths)
    return range(found.start + offset, found.stop + offset) if found else range(0)


def prefill_scoring(llama: Llama, tokens: Sequence[int], scored: range) -> list[float]:
    """Evaluate ``tokens`` into ``llama``'s KV cache, and return the log-probability of each token in
    ``scored`` given the tokens before it.

    The cached prefix is reused up to the first position whose logits are needed. ``scored`` must lie
    inside ``tokens[1:]``.
    """
    end = len(tokens)
    if not scored or scored.start < 1 or scored.stop > end:
        raise ValueError(f"tokens {scored} cannot be scored in a prompt of {len(tokens)}")
    cached = llama.input_ids[: llama.n_tokens]
    start = min(common_prefix(cached, tokens), scored.start - 1)
    ctx, batch, n_vocab = llama._ctx, llama._batch, llama.n_vocab()
    ctx.kv_cache_seq_rm(-1, start, -1)
    llama.n_tokens = start
    logprobs: list[float] = []
    for first in range(start, end, llama.n_batch):
        chunk = list(tokens[first : min(end, first + llama.n_batch)])
        batch.set_batch(batch=chunk, n_past=first, logits_all=False)
        # Position p's logits predict token p + 1.
        wanted = [i for i in range(len(chunk)) if first + i + 1 in scored]
        for i in wanted:
            batch.batch.logits[i] = True
        ctx.decode(batch)
        llama.input_ids[first : first + len(chunk)] = chunk
        llama.n_tokens = first + len(chunk)
        for i in wanted:
            row = np.ctypeslib.as_array(ctx.get_logits_ith(i), shape=(n_vocab,)).astype(np.float64)
            top = row.max()
            log_z = top + np.log(np.exp(row - top).sum())
            logprobs.append(float(row[tokens[first + i + 1]] - log_z))
    # The last position's logits are the last output (set_batch asks for them): generate() samples from them.
    llama._requires_eval = False
    return logprobs
