"""The local prompt of a follow-up turn, laid out so that it begins with the previous turn's prompt.

llama.cpp keeps the KV cache of the last prompt it evaluated and reuses its longest shared prefix. The
compact layout ``[system, history..., sources + question]`` shares only the system prompt with the turn
before: the history grows in front of the sources, so even identical sources are prefilled again.

Here a conversation's sources come first, in the order they were first retrieved, and only then its
turns::

    system | user: Sources [1]..[m] + first question | assistant | user: question | ... | user: question

A follow-up turn appends the passages it retrieved that the conversation has not seen to the sources
block (on the prompt diet, also a seen passage whose sentences kept for this question differ), and its
question to the end. When retrieval finds nothing new (a follow-up on the same topic), the
whole previous prompt and answer are a shared prefix and only the new question is prefilled; otherwise
prefill starts at the first new passage, which the compact layout would have prefilled as well.

Earlier turns' passages come from a bounded memory of what each question retrieved, or from retrieving
that question again (same index, same passages) when the memory lost it: a restart, another API process.
To bound the prompt, the conversation restarts every ``window_turns`` user turns: the turn that opens a
window is prefilled in full, and earlier turns are kept as plain text in front of it.

Sources are numbered across the conversation, so an answer's ``[n]`` is mapped back to this turn's own
numbering (:func:`renumber_citations`). The paid tier keeps the compact layout: it is billed per prompt
token, and its prefix cache is not ours to steer.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from assistant.answering.prompt.grounded import StyleSetting, format_sources, grounded_messages
from index.retrieval import Passage


class TurnSources:
    """What each recent question was answered from, per collection: a bounded LRU, safe across threads."""

    def __init__(self, capacity: int = 2048) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str], list[Passage]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, collection: str, question: str, passages: Sequence[Passage]) -> None:
        with self._lock:
            self._entries[(collection, question)] = list(passages)
            self._entries.move_to_end((collection, question))
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def recall(self, collection: str, question: str) -> list[Passage] | None:
        with self._lock:
            passages = self._entries.get((collection, question))
            if passages is not None:
                self._entries.move_to_end((collection, question))
            return passages


@dataclass
class Transcript:
    messages: list[dict[str, str]]
    sources: list[Passage]  # numbered [1].. in the prompt: the conversation's, not only this turn's


def transcript_messages(
    question: str,
    passages: Sequence[Passage],
    history: Sequence[dict[str, str]],
    *,
    style: StyleSetting,
    sources_of: Callable[[str], Sequence[Passage]],
    window_turns: int,
) -> Transcript:
    """This turn's local prompt; ``sources_of(question)`` gives the passages an earlier question got.

    Without history in the current window this is the compact layout, the same as the paid tier's.
    """
    system, _ = grounded_messages(question, passages, style)
    window = max(1, window_turns)
    user_turns = [i for i, message in enumerate(history) if message["role"] == "user"]
    start = window * (len(user_turns) // window)  # the user turn that opened the current window
    if start >= len(user_turns):
        compact = grounded_messages(question, passages, style)
        return Transcript([compact[0], *history, compact[1]], list(passages))
    opened_at = user_turns[start]
    earlier = [history[i]["content"] for i in user_turns[start:]]

    sources: list[Passage] = []
    seen: set[tuple[str, str]] = set()
    for retrieved in [*(sources_of(q) for q in earlier), passages]:
        for passage in retrieved:
            # By text too: on the prompt diet a later turn may show other sentences of a passage.
            if (passage.id, passage.text) not in seen:
                seen.add((passage.id, passage.text))
                sources.append(passage)

    opening = {"role": "user", "content": f"Sources:\n{format_sources(sources)}\n\nQuestion: {earlier[0]}"}
    follow_ups = [
        {"role": m["role"], "content": f"Question: {m['content']}" if m["role"] == "user" else m["content"]}
        for m in history[opened_at + 1 :]
    ]
    current = {"role": "user", "content": f"Question: {question}"}
    return Transcript([system, *history[:opened_at], opening, *follow_ups, current], sources)


_CITATION = re.compile(r"(\s*)\[(\d{1,2})\]")


def renumber_citations(answer: str, shown: Sequence[Passage], passages: Sequence[Passage]) -> str:
    """Map ``[n]`` from the prompt's numbering (``shown``) to this turn's (``passages``); a citation of a
    passage this turn did not retrieve is dropped, since the answer's sources list only this turn's."""
    position = {passage.id: number for number, passage in enumerate(passages, start=1)}

    def renumber(match: re.Match[str]) -> str:
        index = int(match.group(2)) - 1
        if not 0 <= index < len(shown) or shown[index].id not in position:
            return ""
        return f"{match.group(1)}[{position[shown[index].id]}]"

    return _CITATION.sub(renumber, answer)
