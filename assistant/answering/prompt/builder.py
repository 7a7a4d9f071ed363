"""What the local model reads for a turn: the transcript layout (transcript.py), on the prompt diet
(compression.py), compact when the transcript would crowd the context window.

Apart from the cascade because the cascade carries out decisions, while this decides a prompt, and the
two change for different reasons. The paid tier's prompt is built here too (:meth:`grounded`): it is the
local tier's compact layout on whole passages, so an escalation answers the same question from the same
sources.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from assistant.answering.prompt.compression import Diet, compress
from assistant.answering.prompt.grounded import StyleSetting, grounded_messages
from assistant.answering.prompt.transcript import (
    Transcript,
    TurnSources,
    renumber_citations,
    transcript_messages,
)
from assistant.paid.tokens import count_messages

if TYPE_CHECKING:
    from assistant.local.backend import Generation
    from index.embedding import Embedder
    from index.retrieval import Passage, Retriever


class LocalPromptBuilder:
    """Builds a turn's local prompt, and remembers what each question retrieved for the turns after it."""

    def __init__(
        self,
        *,
        retriever: Callable[[str], Retriever],
        embedder: Callable[[], Embedder],
        answer_style: StyleSetting = "auto",
        transcript_window_turns: int = 4,
        context_tokens: int = 4096,
        diet: Diet | None = None,
    ) -> None:
        """``retriever`` finds an earlier question's passages again when :attr:`turn_sources` lost them.
        ``embedder`` is called per use: the cascade hands the evaluator's, loaded lazily and replaced
        with it, so the evaluator then finds the diet's sentence vectors in its memo."""
        self.retriever = retriever
        self.embedder = embedder
        self.answer_style = answer_style
        self.transcript_window_turns = transcript_window_turns
        self.context_tokens = context_tokens
        self.diet = diet
        self.turn_sources = TurnSources()

    def remember(self, collection: str, question: str, passages: Sequence[Passage]) -> None:
        """Note what ``question`` was answered from, so a follow-up's transcript shows the same sources."""
        self.turn_sources.remember(collection, question, passages)

    def grounded(
        self,
        question: str,
        passages: Sequence[Passage],
        history: Sequence[dict[str, str]],
        style: StyleSetting | None = None,
    ) -> list[dict[str, str]]:
        """The grounded prompt, with earlier turns of the conversation between system and question.
        ``style`` overrides the configured answer style (a retry asks in the other one)."""
        system, *rest = grounded_messages(question, passages, style or self.answer_style)
        return [system, *history, *rest]

    def build(
        self,
        question: str,
        passages: Sequence[Passage],
        history: Sequence[dict[str, str]],
        *,
        collection: str,
        max_tokens: int,
        style: StyleSetting | None = None,
    ) -> Transcript:
        """The local tier's prompt: a follow-up turn begins with the previous turn's prompt, so llama.cpp
        reuses its KV cache (transcript.py). Compact when that would crowd the context window. With the
        prompt diet each turn's passages show the sentences that matter to that turn's question; an earlier
        turn's are compressed again the same way, so its prompt is still a prefix."""
        shown = self.on_diet(question, passages)
        compact = Transcript(self.grounded(question, shown, history, style), shown)
        if not history or self.transcript_window_turns <= 1 or style is not None:
            return compact

        def sources_of(earlier_question: str) -> Sequence[Passage]:
            remembered = self.turn_sources.recall(collection, earlier_question)
            if remembered is None:
                remembered = self.retriever(collection).search(earlier_question)
            return self.on_diet(earlier_question, remembered)

        transcript = transcript_messages(
            question,
            shown,
            history,
            style=self.answer_style,
            sources_of=sources_of,
            window_turns=self.transcript_window_turns,
        )
        # tiktoken's count stands in for the local tokenizer's, hence the quarter held back.
        if count_messages(transcript.messages) + max_tokens > 0.75 * self.context_tokens:
            return compact
        return transcript

    def on_diet(self, question: str, passages: Sequence[Passage]) -> list[Passage]:
        """The passages as the local prompt shows them: only the sentences that matter, with ``diet``."""
        return compress(question, passages, self.embedder(), self.diet)

    @staticmethod
    def in_turn_numbering(
        prompt: Transcript, passages: Sequence[Passage], generation: Generation
    ) -> Generation:
        """The local answer with its ``[n]`` numbered as this turn's sources, not the transcript's."""
        if [p.id for p in prompt.sources] == [p.id for p in passages]:
            return generation
        return replace(generation, text=renumber_citations(generation.text, prompt.sources, passages))
