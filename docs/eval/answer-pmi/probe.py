"""Probe (tenth): how much does the question select the local answer?

Wraps LocalModel.stream_chat: after each answer, scores the answer's tokens (citations stripped) given
(a) the real prompt, (b) the same passages with a generic question, (c) the question without passages.
Appends one JSON line per answer to $PROBE_OUT, then runs `python -m eval` with the given arguments:

    PROBE_OUT=answer-logprobs.jsonl python docs/eval/answer-pmi/probe.py run --dataset ... --config local
"""

import json
import os
import re
import time
from pathlib import Path

from assistant.local import model as model_mod
from assistant.local.backend import Generation
from assistant.local.prefill import prefill_scoring

OUT = Path(os.environ["PROBE_OUT"])
GENERIC = os.environ.get("PROBE_GENERIC", "What do the sources say?")
CITE = re.compile(r"\s*\[\d{1,2}\]")
original = model_mod.LocalModel.stream_chat


def score(self, messages, answer_tokens):
    rendered = self._template(messages=list(messages))
    prompt = self._llama.tokenize(
        rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True
    )
    tokens = prompt + answer_tokens
    if len(tokens) >= self.n_ctx:
        return None
    return prefill_scoring(self._llama, tokens, range(len(prompt), len(tokens)))


def patched(self, messages, max_tokens=256, *, scored_tail=None):
    for item in original(self, messages, max_tokens, scored_tail=scored_tail):
        if isinstance(item, Generation) and scored_tail:
            started = time.perf_counter()
            text = CITE.sub("", item.text).strip()
            last = messages[-1]["content"]
            with self._lock:
                answer_tokens = self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)
                row = {"question": scored_tail, "answer": item.text, "n_answer_tokens": len(answer_tokens)}
                if answer_tokens:
                    generic = [
                        *messages[:-1],
                        {**messages[-1], "content": last[: -len(scored_tail)] + GENERIC},
                    ]
                    bare = [messages[0], {"role": "user", "content": f"Question: {scored_tail}"}]
                    row["real"] = score(self, messages, answer_tokens)
                    row["generic"] = score(self, generic, answer_tokens)
                    row["bare"] = score(self, bare, answer_tokens)
            row["seconds"] = time.perf_counter() - started
            with OUT.open("a") as f:
                f.write(json.dumps(row) + "\n")
        yield item


model_mod.LocalModel.stream_chat = patched

if __name__ == "__main__":
    from eval.cli import eval_group

    eval_group(prog_name="eval")
