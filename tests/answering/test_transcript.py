"""The transcript layout: a follow-up turn's local prompt begins with the previous turn's, so llama.cpp
reuses its KV cache. Checked on the prompts themselves, and on the real SmolLM2 model's reuse count."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from assistant.answering.prompt.grounded import grounded_messages
from assistant.answering.prompt.transcript import TurnSources, renumber_citations, transcript_messages
from assistant.local.model import LocalModel
from index.retrieval import Passage


def passage(pid: str, text: str) -> Passage:
    return Passage(pid, "doc.md", text, 0.5, {"title": "Doc"})


RETRIEVED = {
    "Who ruled Normandy?": [passage("a", "Rollo ruled Normandy."), passage("b", "Normandy is in France.")],
    "When did he rule?": [passage("a", "Rollo ruled Normandy."), passage("c", "Rollo ruled from 911.")],
    "Where is it?": [passage("b", "Normandy is in France.")],
}


def turn(question: str, history: Sequence[dict[str, str]], window: int = 4) -> list[dict[str, str]]:
    return transcript_messages(
        question,
        RETRIEVED[question],
        history,
        style="concise",
        sources_of=lambda q: RETRIEVED[q],
        window_turns=window,
    ).messages


def conversation(window: int = 4) -> list[list[dict[str, str]]]:
    """The local prompt of each of three turns, answers appended to the history as a client would."""
    prompts, history = [], []
    for question, answer in (
        ("Who ruled Normandy?", "Rollo"),
        ("When did he rule?", "911"),
        ("Where is it?", "France"),
    ):
        prompts.append(turn(question, history, window))
        history += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return prompts


def test_the_opening_turn_is_the_compact_prompt() -> None:
    assert turn("Who ruled Normandy?", []) == grounded_messages(
        "Who ruled Normandy?", RETRIEVED["Who ruled Normandy?"]
    )


def test_a_follow_up_without_new_sources_begins_with_the_whole_previous_prompt_and_answer() -> None:
    first, second, third = conversation()
    # Turn 3 retrieved nothing new: turn 2's prompt, then its answer, are its prefix message for message.
    assert third[: len(second)] == second
    assert third[len(second)] == {"role": "assistant", "content": "911"}
    assert third[-1] == {"role": "user", "content": "Question: Where is it?"}
    # Turn 2 brought passage c: the shared prefix runs to the end of turn 1's sources block.
    assert second[0] == first[0]
    assert second[1]["content"].startswith(first[1]["content"].split("\n\nQuestion:")[0])
    assert "[3] Doc\nRollo ruled from 911." in second[1]["content"]


def test_each_passage_is_shown_once_numbered_across_the_conversation() -> None:
    third = conversation()[2]
    sources = third[1]["content"]
    assert sources.count("Rollo ruled Normandy.") == 1 and sources.count("Normandy is in France.") == 1
    assert all("Sources:" not in message["content"] for message in third[2:])


def test_a_passage_shown_with_other_sentences_is_shown_again_after_the_earlier_prompt() -> None:
    # On the prompt diet each turn shows the sentences of a passage that matter to its own question.
    first = [passage("a", "Rollo ruled Normandy.")]
    later = [passage("a", "Rollo ruled from 911.")]
    history = [{"role": "user", "content": "Who?"}, {"role": "assistant", "content": "Rollo"}]
    shown = transcript_messages(
        "When?", later, history, style="concise", sources_of=lambda q: first, window_turns=4
    )
    assert shown.messages[1]["content"].startswith("Sources:\n[1] Doc\nRollo ruled Normandy.\n\n[2] Doc\n")
    assert [p.id for p in shown.sources] == ["a", "a"]
    assert renumber_citations("911 [2]", shown.sources, later) == "911 [1]"


def test_the_window_restarts_with_earlier_turns_as_plain_text() -> None:
    third = conversation(window=2)[2]
    compact = grounded_messages("Where is it?", RETRIEVED["Where is it?"])
    assert third == [
        compact[0],
        {"role": "user", "content": "Who ruled Normandy?"},
        {"role": "assistant", "content": "Rollo"},
        {"role": "user", "content": "When did he rule?"},
        {"role": "assistant", "content": "911"},
        compact[1],
    ]


def test_window_one_is_the_compact_layout_every_turn() -> None:
    second = conversation(window=1)[1]
    compact = grounded_messages("When did he rule?", RETRIEVED["When did he rule?"])
    assert second == [
        compact[0],
        {"role": "user", "content": "Who ruled Normandy?"},
        {"role": "assistant", "content": "Rollo"},
        compact[1],
    ]


def test_citations_are_renumbered_to_this_turns_sources() -> None:
    shown = [passage("a", ""), passage("b", ""), passage("c", "")]
    this_turn = [passage("c", ""), passage("a", "")]
    assert renumber_citations("Rollo [1] in 911 [3].", shown, this_turn) == "Rollo [2] in 911 [1]."
    assert renumber_citations("France [2].", shown, this_turn) == "France."


def test_turn_sources_forget_the_least_recently_used() -> None:
    memory = TurnSources(capacity=2)
    memory.remember("docs", "q1", [passage("a", "")])
    memory.remember("docs", "q2", [passage("b", "")])
    assert memory.recall("docs", "q1") is not None  # q1 is now the most recent
    memory.remember("docs", "q3", [passage("c", "")])
    assert memory.recall("docs", "q2") is None
    assert memory.recall("other", "q1") is None
    assert [p.id for p in memory.recall("docs", "q1") or []] == ["a"]


@pytest.mark.usefixtures("tiny_model")
def test_the_model_reuses_the_previous_turns_kv_cache(tiny_model: LocalModel) -> None:
    tiny_model.forget_prompt_cache()
    first, _, third = conversation()
    opened = tiny_model.chat(first, max_tokens=4)
    assert opened.cached_prompt_tokens == 0
    again = tiny_model.chat(first, max_tokens=4)
    assert again.cached_prompt_tokens == again.prompt_tokens - 1  # llama.cpp re-evaluates the last token
    follow_up = tiny_model.chat(third, max_tokens=4)
    # Everything up to the end of turn 1's sources block is reused; the rest is prefilled.
    assert 0.5 * opened.prompt_tokens < follow_up.cached_prompt_tokens < follow_up.prompt_tokens
