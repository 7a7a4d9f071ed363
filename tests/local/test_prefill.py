"""Scoring the question from the prompt's own prefill (assistant/local/prefill.py), on the real tiny model:
the same log-probabilities a full ``logits_all`` pass gives, the same answer as without scoring, and the KV
cache still reused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.answering.prompt.grounded import grounded_messages
from assistant.local.model import LocalModel
from assistant.local.prefill import common_prefix, locate_tail, tail_tokens
from index.retrieval import Passage

QUESTION = "In what country is Normandy located?"
PASSAGES = [
    Passage(
        id="n1",
        text="The Normans gave their name to Normandy, a region in France.",
        source="normans.txt",
        score=0.8,
        metadata={"title": "Normans"},
    )
]


def test_tail_tokens_are_those_wholly_inside_the_span_counted_from_the_end() -> None:
    # "<bos>" (5 bytes the prompt text lacks) + "Q:" + " What" + " is" + "?" over the prompt "Q: What is?"
    lengths = [5, 2, 5, 3, 1]
    prompt_bytes = 11
    assert tail_tokens(lengths, prompt_bytes, (3, 11)) == range(3, 5)  # "What is?": " What" straddles it
    assert tail_tokens(lengths, prompt_bytes, (2, 11)) == range(2, 5)  # " What is?"
    assert tail_tokens(lengths, prompt_bytes, (4, 6)) == range(0)  # inside one token: nothing whole
    assert common_prefix([1, 2, 3], [1, 2, 4, 5]) == 2 and common_prefix([1, 2], [1, 2, 3]) == 2


def test_scored_question_matches_a_full_logits_pass(tiny_model: LocalModel, tiny_model_path: Path) -> None:
    from llama_cpp import Llama

    messages = grounded_messages(QUESTION, PASSAGES, "concise")
    tiny_model.forget_prompt_cache()
    scored = tiny_model.chat(messages, max_tokens=8, scored_tail=QUESTION)
    assert scored.scored_tail_logprobs is not None

    # The reference: every prompt position's logits, from a second copy of the model.
    reference = Llama(model_path=str(tiny_model_path), n_ctx=2048, logits_all=True, verbose=False)
    rendered = tiny_model._template(messages=messages)
    tokens = reference.tokenize(rendered.prompt.encode(), add_bos=not rendered.added_special, special=True)
    assert len(tokens) == scored.prompt_tokens
    reference.eval(tokens)
    logits = np.asarray(reference.scores[: len(tokens)], dtype=np.float64)
    top = logits.max(axis=1, keepdims=True)
    log_softmax = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))

    span = locate_tail(reference, rendered.prompt, tokens, QUESTION)
    # " In" straddles "Question:" and the question, so the scored tokens are the question from "what" on.
    words = reference.detokenize(tokens[span.start : span.stop], special=True).decode()
    assert words == QUESTION[len("In") :]
    expected = [float(log_softmax[i - 1, tokens[i]]) for i in span]
    assert scored.scored_tail_logprobs == pytest.approx(expected, abs=0.05)
    assert all(lp <= 0 for lp in expected)


def test_scoring_changes_neither_the_answer_nor_the_cache_reuse(tiny_model: LocalModel) -> None:
    messages = grounded_messages(QUESTION, PASSAGES, "concise")
    tiny_model.forget_prompt_cache()
    plain = tiny_model.chat(messages, max_tokens=12)
    assert plain.scored_tail_logprobs is None
    tiny_model.forget_prompt_cache()
    scored = tiny_model.chat(messages, max_tokens=12, scored_tail=QUESTION)
    assert scored.text == plain.text and scored.prompt_tokens == plain.prompt_tokens
    assert scored.cached_prompt_tokens == 0
    # Asked again, everything before the question is reused; the question is evaluated again for its logits.
    again = tiny_model.chat(messages, max_tokens=12, scored_tail=QUESTION)
    question_and_end = len(again.scored_tail_logprobs or []) + 1
    assert again.prompt_tokens - 20 < again.cached_prompt_tokens < again.prompt_tokens - question_and_end
    assert again.scored_tail_logprobs == pytest.approx(scored.scored_tail_logprobs, abs=0.05)
    assert again.text == plain.text


def test_a_tail_the_prompt_does_not_end_with_is_not_scored(tiny_model: LocalModel) -> None:
    messages = grounded_messages(QUESTION, PASSAGES, "concise")
    assert (
        tiny_model.chat(messages, max_tokens=4, scored_tail="Who ruled Sicily?").scored_tail_logprobs is None
    )
    assert tiny_model.chat(messages, max_tokens=4, scored_tail="").scored_tail_logprobs is None
