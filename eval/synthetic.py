"""Calibration questions written by the paid tier from a collection's own chunks, so the evaluator can be
fitted on a team's documents before any real question has been labelled.

Three kinds, mixed like SQuAD 2.0 (half answerable, most unanswerable ones adversarial):

- ``answerable``: a question about one chunk, with a short answer that must occur verbatim in it, and
  that the paid tier, asked the question again with only that chunk, answers the same way (round-trip
  consistency, as in Alberti et al. 2019): anything else is rejected and the next chunk drawn.
- ``swapped``: such a question with its key entity or number swapped for one the chunk lacks (a name from
  another chunk, a shifted year). It reads like the documents and is not answered by them.
- ``off_topic``: a question about a subject the collection does not cover.

An unanswerable probe is kept only when the paid tier, shown what the cascade's retrieval returns for it,
says those passages do not answer it. Every paid call is charged to the ledger under a system account.
The output is an eval dataset (JSONL), so the same run loop, labels and fit as ``eval run`` apply.

Resumable: each drawn chunk is logged in ``attempts.jsonl`` before the next is drawn; a rerun skips them.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from assistant.answering.charged import charged_chat
from assistant.answering.judge.features import retrieval_top_and_margin
from assistant.answering.prompt.grounded import format_sources
from assistant.answering.text import normalize
from eval.jsonl import append_jsonl, read_jsonl
from eval.metrics import token_f1
from eval.synthetic_rules import (
    WORD,
    answer_problem,
    entities,
    is_question,
    parse_question,
    question_problem,
    swap_entity,
)

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from assistant.ledger import Ledger, Principal
    from assistant.paid import PaidClient
    from index.retrieval import Passage

Kind = Literal["answerable", "swapped", "off_topic"]
CALIBRATION_ACCOUNT = "penny-calibrate"
MAX_CHUNK_CHARS = 1200
OFF_TOPIC_SHARE = 0.25  # of the unanswerable probes; the rest are swaps, the hard kind
OFF_TOPICS: tuple[str, ...] = (
    "volcanoes",
    "the rules of cricket",
    "baking bread",
    "the planet Neptune",
    "jazz saxophonists",
    "the history of chess",
    "coral reefs",
    "Formula One racing",
    "medieval Japanese castles",
    "honeybees",
    "the Amazon river",
    "Olympic swimming records",
)

QUESTION_PROMPT = (
    "Passage:\n{chunk}\n\n"
    "Write one question that this passage answers, and its answer: a name, number, date or phrase of "
    "at most four words, copied exactly from the passage. The question must make sense on its own to "
    "someone who has not seen the passage: name its subject, and never say 'this passage' or 'the text'. "
    "Reply in exactly this format:\n"
    "Question: <question>\nAnswer: <answer>"
)
ROUNDTRIP_PROMPT = (
    "Passage:\n{chunk}\n\nQuestion: {question}\n\n"
    "Answer the question from the passage alone, with the fewest words copied from it. "
    "Reply with only the answer."
)
ROUNDTRIP_MIN_F1 = 0.5  # the SQuAD F1 between the written answer and the round-trip one
OFF_TOPIC_PROMPT = "Write one short factual question about {topic}. Reply with only the question."
CHECK_PROMPT = (
    "Sources:\n{sources}\n\nQuestion: {question}\n\n"
    "Do the sources above state the answer to exactly this question? Careful: the question may name a "
    "person, place, date or number that the sources never mention, and then the answer is no. "
    "Reply with only yes or no."
)


@dataclass(frozen=True)
class Chunk:
    id: str
    text: str
    source: str


@dataclass(frozen=True)
class SyntheticQuestion:
    id: str
    question: str
    answers: tuple[str, ...]  # empty: the collection does not answer it
    kind: Kind
    chunk_id: str | None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "question": self.question,
            "answers": list(self.answers),
            "kind": self.kind,
            "chunk_id": self.chunk_id,
        }


@dataclass
class GenerationOutcome:
    questions: list[SyntheticQuestion]
    attempts: int
    rejected: dict[str, int] = field(default_factory=dict)  # reason → count
    spent_micro_usd: int = 0
    stopped: str | None = None  # why generation stopped short (the cost limit), None when done


def collection_chunks(collection: Collection, seed: int) -> list[Chunk]:
    """Every chunk, in an order that visits sources round-robin (seeded): a draw spreads across the
    collection's documents instead of exhausting the first one."""
    found = collection.get(include=["documents", "metadatas"])
    by_source: dict[str, list[Chunk]] = {}
    for chunk_id, text, meta in zip(
        found["ids"], found["documents"] or [], found["metadatas"] or [], strict=True
    ):
        source = str((meta or {}).get("source", chunk_id))
        by_source.setdefault(source, []).append(Chunk(chunk_id, text or "", source))
    rng = random.Random(seed)
    queues = [by_source[s] for s in sorted(by_source)]
    rng.shuffle(queues)
    for queue in queues:
        rng.shuffle(queue)
    ordered: list[Chunk] = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop())
    return ordered


class QuestionWriter:
    """Draws chunks and asks the paid tier for questions until ``n`` are kept (half answerable)."""

    def __init__(
        self,
        paid: PaidClient,
        ledger: Ledger,
        chunks: Sequence[Chunk],
        retrieve: Callable[[str], list[Passage]],  # the cascade's own retrieval
        out_dir: Path,
        *,
        seed: int = 0,
        max_cost_micro_usd: int | None = None,
        progress: bool = True,
        retrieval_floor: float = 0.25,
    ) -> None:
        self.paid = paid
        self.retrieval_floor = retrieval_floor  # the cascade's: below it, nothing relevant was retrieved
        self.ledger = ledger
        self.chunks = list(chunks)
        self.retrieve = retrieve
        self.out_dir = Path(out_dir)
        self.seed = seed
        self.max_cost_micro_usd = max_cost_micro_usd
        self.progress = progress
        self.questions_path = self.out_dir / "questions.jsonl"
        self.attempts_path = self.out_dir / "attempts.jsonl"
        self._principal: Principal | None = None
        self._donors = sorted({name for chunk in self.chunks for name in entities(chunk.text)})
        self._words = sorted({w for chunk in self.chunks for w in WORD.findall(chunk.text)})

    @property
    def principal(self) -> Principal:
        if self._principal is None:
            self._principal = self.ledger.system_account(CALIBRATION_ACCOUNT)
        return self._principal

    def run(self, n: int) -> GenerationOutcome:
        from tqdm import tqdm

        self.out_dir.mkdir(parents=True, exist_ok=True)
        kept = read_jsonl(self.questions_path)
        attempts = read_jsonl(self.attempts_path)
        done = {a["attempt"] for a in attempts}
        outcome = GenerationOutcome(
            questions=[_question(row) for row in kept],
            attempts=len(attempts),
            spent_micro_usd=sum(int(a.get("cost_micro_usd", 0)) for a in attempts),
        )
        for a in attempts:
            if a.get("rejected"):
                outcome.rejected[a["rejected"]] = outcome.rejected.get(a["rejected"], 0) + 1
        want = {"answerable": n - n // 2, "unanswerable": n // 2}
        seen = {normalize(q.question) for q in outcome.questions}
        bar = tqdm(
            total=n, initial=len(outcome.questions), desc="questions", unit="q", disable=not self.progress
        )
        try:
            for attempt, kind, chunk in self._plan():
                have = _counts(outcome.questions)
                if have["answerable"] >= want["answerable"] and have["unanswerable"] >= want["unanswerable"]:
                    break
                group = "answerable" if kind == "answerable" else "unanswerable"
                if attempt in done or have[group] >= want[group]:
                    continue
                if kind == "off_topic" and have["off_topic"] >= math.ceil(
                    OFF_TOPIC_SHARE * want["unanswerable"]
                ):
                    continue  # the easy kind: capped, so the probes stay mostly adversarial
                if self.max_cost_micro_usd is not None and outcome.spent_micro_usd >= self.max_cost_micro_usd:
                    outcome.stopped = (
                        f"stopped at the cost limit (${self.max_cost_micro_usd / 1e6:.4f}) with "
                        f"{len(outcome.questions)} of {n} questions"
                    )
                    break
                question, rejected, cost = self._attempt(attempt, kind, chunk)
                outcome.attempts += 1
                outcome.spent_micro_usd += cost
                if question is not None and normalize(question.question) in seen:
                    question, rejected = None, "duplicate"
                if question is not None:
                    seen.add(normalize(question.question))
                    outcome.questions.append(question)
                    append_jsonl(self.questions_path, question.to_dict())
                    bar.update(1)
                else:
                    outcome.rejected[rejected or "?"] = outcome.rejected.get(rejected or "?", 0) + 1
                append_jsonl(
                    self.attempts_path,
                    {
                        "attempt": attempt,
                        "kind": kind,
                        "chunk_id": chunk.id,
                        "rejected": rejected,
                        "cost_micro_usd": cost,
                    },
                )
                bar.set_postfix(spent=f"${outcome.spent_micro_usd / 1e6:.4f}")
        finally:
            bar.close()
        return outcome

    def _plan(self) -> Iterator[tuple[str, Kind, Chunk]]:
        """Attempts in a fixed order for a seed: chunk i is drawn for an answerable question, a swap or
        an off-topic probe by turns, so a resumed run draws exactly what the first one would have."""
        rng = random.Random(self.seed)
        for i, chunk in enumerate(self.chunks * 3):  # more passes if the first rejected too many
            roll = rng.random()
            kind: Kind
            kind = "answerable" if i % 2 == 0 else "off_topic" if roll < OFF_TOPIC_SHARE else "swapped"
            yield f"{i}:{kind}:{chunk.id}", kind, chunk

    def _attempt(
        self, attempt: str, kind: Kind, chunk: Chunk
    ) -> tuple[SyntheticQuestion | None, str | None, int]:
        """(question or None, why rejected, cost)."""
        from assistant.paid import PaidError

        rng = random.Random(f"{self.seed}:{attempt}")
        cost = 0
        try:
            if kind == "off_topic":
                reply, cost = self._ask(
                    attempt, "topic", OFF_TOPIC_PROMPT.format(topic=rng.choice(OFF_TOPICS)), 48
                )
                text = " ".join(reply.split()).strip("\"'")
                if not is_question(text):
                    return None, "not_a_question", cost
                return self._checked(attempt, text, "off_topic", None, cost)
            shown = chunk.text[:MAX_CHUNK_CHARS]
            reply, cost = self._ask(attempt, "write", QUESTION_PROMPT.format(chunk=shown), 80)
            parsed = parse_question(reply)
            if parsed is None:
                return None, "unparsable", cost
            question, answer = parsed
            if kind == "answerable":
                problem = answer_problem(question, answer, shown)
                if problem is not None:
                    return None, problem, cost
                again, check_cost = self._ask(
                    attempt, "roundtrip", ROUNDTRIP_PROMPT.format(chunk=shown, question=question), 24
                )
                cost += check_cost
                if token_f1(answer, again) < ROUNDTRIP_MIN_F1:
                    return None, "not_roundtrip", cost
                return SyntheticQuestion(f"syn-{attempt}", question, (answer,), kind, chunk.id), None, cost
            # A swap's answer does not matter, only its question.
            if (problem := question_problem(question)) is not None:
                return None, problem, cost
            swapped = swap_entity(question, chunk.text, self._donors, rng, self._words)
            if swapped is None:
                return None, "nothing_to_swap", cost
            return self._checked(attempt, swapped[0], "swapped", chunk.id, cost, swapped[1])
        except PaidError as exc:
            return None, f"paid_error:{exc.reason}", cost

    def _checked(
        self,
        attempt: str,
        question: str,
        kind: Kind,
        chunk_id: str | None,
        cost: int,
        swapped_in: str | None = None,
    ) -> tuple[SyntheticQuestion | None, str | None, int]:
        """Keep an unanswerable probe only if retrieval and the paid tier agree the collection does not
        answer it: an off-topic question whose best passage scores below the cascade's retrieval floor needs
        no paid check; otherwise the paid tier, shown the retrieved passages, must say they do not answer
        it. (A swapped-in name may well occur elsewhere in the collection, as in SQuAD 2.0's own
        unanswerable questions: only the check decides.)"""
        passages = self.retrieve(question)
        if kind == "off_topic" and retrieval_top_and_margin(passages)[0] < self.retrieval_floor:
            return SyntheticQuestion(f"syn-{attempt}", question, (), kind, chunk_id), None, cost
        if passages:
            prompt = CHECK_PROMPT.format(sources=format_sources(passages), question=question)
            reply, check_cost = self._ask(attempt, "check", prompt, 3)
            cost += check_cost
            if not reply.strip().lower().startswith("no"):
                return None, "answered_by_collection", cost
        return SyntheticQuestion(f"syn-{attempt}", question, (), kind, chunk_id), None, cost

    def _ask(self, attempt: str, step: str, prompt: str, max_tokens: int) -> tuple[str, int]:
        """One charged paid call under the calibration account; raises BudgetExceeded past its budget."""
        result, cost = charged_chat(
            self.paid,
            self.ledger,
            self.principal,
            [{"role": "user", "content": prompt}],
            request_id=f"calibrate:{step}:{attempt}:{uuid.uuid4().hex[:8]}",
            max_tokens=max_tokens,
        )
        return result.text, cost


def _counts(questions: Sequence[SyntheticQuestion]) -> dict[str, int]:
    answerable = sum(1 for q in questions if q.answers)
    off_topic = sum(1 for q in questions if q.kind == "off_topic")
    return {"answerable": answerable, "unanswerable": len(questions) - answerable, "off_topic": off_topic}


def _question(row: dict[str, object]) -> SyntheticQuestion:
    return SyntheticQuestion(
        id=str(row["id"]),
        question=str(row["question"]),
        answers=tuple(str(a) for a in row.get("answers") or []),  # type: ignore[union-attr]
        kind=row.get("kind", "answerable"),  # type: ignore[arg-type]
        chunk_id=row.get("chunk_id"),  # type: ignore[arg-type]
    )
