"""Evaluation datasets: SQuAD 2.0 official JSON, a team's own JSONL questions, and natural-question sets.

Both load into one shape, a ``Dataset`` of ``EvalQuestion``s plus the paragraphs ("contexts") they were
asked about. Contexts are ingested into a dedicated collection whose passage ids are the context ids, so
retrieval recall can be checked exactly: the gold passage of a question is its own paragraph.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from eval.question_sets import NaturalQuestion, QuestionSetError

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from index.embedding import Embedder


class DatasetError(ValueError):
    """The dataset file cannot be used as given; the message says what to fix."""


@dataclass(frozen=True)
class Context:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class EvalQuestion:
    id: str
    question: str
    answers: tuple[str, ...]  # empty: the question is unanswerable from the documents
    context_id: str | None = None  # gold passage id in the eval collection, when the dataset has contexts
    kind: str | None = None  # natural sets: definitional | explanatory | factoid | unanswerable
    key_facts: tuple[tuple[str, ...], ...] = ()  # natural sets: right = one variant of every group

    @property
    def has_answer(self) -> bool:
        return bool(self.answers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "answers": list(self.answers),
            "context_id": self.context_id,
            "kind": self.kind,
            "key_facts": [list(group) for group in self.key_facts],
        }


@dataclass
class Dataset:
    name: str
    questions: list[EvalQuestion]
    contexts: dict[str, Context] = field(default_factory=dict)

    @property
    def collection_name(self) -> str:
        """Dedicated Chroma collection for this dataset's contexts, e.g. ``eval-squad2-dev-sample``."""
        slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", self.name).strip("-._") or "dataset"
        return f"eval-{slug}"[:200].rstrip("-._")

    def counts(self) -> tuple[int, int]:
        """(answerable, unanswerable) question counts."""
        has = sum(q.has_answer for q in self.questions)
        return has, len(self.questions) - has

    def sample(self, limit: int | None, seed: int = 0) -> Dataset:
        """A deterministic sample of ``limit`` questions, stratified so the HasAns/NoAns ratio is kept.

        Same file, limit and seed give the same ids. Questions keep their file order; all contexts stay
        (the rest are distractors that make retrieval realistic).
        """
        if limit is None or limit >= len(self.questions):
            return self
        if limit <= 0:
            raise DatasetError(f"--limit must be positive, got {limit}")
        rng = random.Random(seed)
        has = [q for q in self.questions if q.has_answer]
        no = [q for q in self.questions if not q.has_answer]
        n_has = round(limit * len(has) / len(self.questions))
        n_has = min(len(has), max(limit - len(no), n_has))
        chosen = {q.id for q in rng.sample(has, n_has)} | {q.id for q in rng.sample(no, limit - n_has)}
        return replace(self, questions=[q for q in self.questions if q.id in chosen])


def context_id(title: str, text: str) -> str:
    """Content-derived id: the same paragraph always gets the same id, across runs and datasets."""
    return "ctx-" + hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()[:16]


def load_dataset(path: Path) -> Dataset:
    """Load SQuAD 2.0 JSON (``.json``) or JSONL (``.jsonl``) questions."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"dataset {path} not found: pass a SQuAD 2.0 .json or a .jsonl file")
    if path.suffix.lower() == ".jsonl":
        dataset = _load_jsonl(path)
    elif path.suffix.lower() == ".json":
        dataset = _load_squad(path)
    else:
        raise DatasetError(f"dataset {path}: unknown format {path.suffix!r}; use .json (SQuAD 2.0) or .jsonl")
    if not dataset.questions:
        raise DatasetError(f"dataset {path} has no questions")
    ids = [q.id for q in dataset.questions]
    if len(set(ids)) != len(ids):
        duplicates = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise DatasetError(f"dataset {path}: question ids must be unique; repeated: {duplicates}")
    return dataset


def _load_squad(path: Path) -> Dataset:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"dataset {path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise DatasetError(
            f"dataset {path} is not SQuAD 2.0 JSON (expected an object with a 'data' list of articles); "
            "for your own questions use a .jsonl file"
        )
    questions: list[EvalQuestion] = []
    contexts: dict[str, Context] = {}
    try:
        for article in raw["data"]:
            title = str(article.get("title", ""))
            for paragraph in article["paragraphs"]:
                ctx = Context(context_id(title, paragraph["context"]), title, paragraph["context"])
                contexts[ctx.id] = ctx
                for qa in paragraph["qas"]:
                    # Official rule: unanswerable questions have no answers (plausible_answers are ignored).
                    answers = () if qa.get("is_impossible") else tuple(a["text"] for a in qa["answers"])
                    questions.append(EvalQuestion(str(qa["id"]), qa["question"], answers, ctx.id))
    except (KeyError, TypeError) as exc:
        raise DatasetError(f"dataset {path}: malformed SQuAD 2.0 entry (missing {exc})") from exc
    return Dataset(path.stem, questions, contexts)


def _load_jsonl(path: Path) -> Dataset:
    questions: list[EvalQuestion] = []
    contexts: dict[str, Context] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: not valid JSON: {exc}") from exc
            if not isinstance(row, dict) or not isinstance(row.get("question"), str):
                raise DatasetError(f'{path}:{number}: each line needs {{"question": str, "answers": [str]}}')
            if "key_facts" in row:
                try:
                    natural = NaturalQuestion.from_row(row)
                except QuestionSetError as exc:
                    raise DatasetError(f"{path}:{number}: {exc}") from exc
                questions.append(
                    EvalQuestion(
                        natural.id,
                        natural.question,
                        # SQuAD F1 still reads the reference answer; the verdict reads the key facts.
                        (natural.reference,) if natural.answerable else (),
                        kind=natural.kind,
                        key_facts=natural.key_facts,
                    )
                )
                continue
            answers = row.get("answers", [])
            if not isinstance(answers, list):
                raise DatasetError(f"{path}:{number}: 'answers' must be a list ([] = unanswerable)")
            texts = tuple(str(a["text"] if isinstance(a, dict) else a) for a in answers)
            ctx_id = None
            if row.get("context"):
                title = str(row.get("title", ""))
                ctx = Context(context_id(title, str(row["context"])), title, str(row["context"]))
                contexts[ctx.id] = ctx
                ctx_id = ctx.id
            question_id = str(row.get("id") or f"line-{number}")
            questions.append(EvalQuestion(question_id, row["question"], texts, ctx_id))
    return Dataset(path.stem, questions, contexts)


def ingest_contexts(
    dataset: Dataset, collection: Collection, embedder: Embedder, batch_size: int = 64
) -> int:
    """Upsert the dataset's paragraphs (id = context id) that the collection lacks; returns how many.

    Paragraphs are indexed whole, one passage each, so "retrieved the gold passage" is an id comparison.
    Re-running writes nothing: ids already present are skipped (Chroma grows on identical upserts).
    """
    from index.store import bump_revision

    missing = _missing_ids(collection, list(dataset.contexts))
    contexts = [dataset.contexts[i] for i in missing]
    for start in range(0, len(contexts), batch_size):
        batch = contexts[start : start + batch_size]
        collection.upsert(
            ids=[c.id for c in batch],
            embeddings=embedder.embed([c.text for c in batch]),
            documents=[c.text for c in batch],
            metadatas=[
                {"source": f"eval:{dataset.name}", "title": c.title, "chunk_index": 0, "context_id": c.id}
                for c in batch
            ],
        )
    if contexts:
        bump_revision(collection)  # hybrid retrieval rebuilds its BM25 index on a new revision stamp
    return len(contexts)


def _missing_ids(collection: Collection, ids: Iterable[str]) -> list[str]:
    ids = list(ids)
    present: set[str] = set()
    for start in range(0, len(ids), 500):
        present.update(collection.get(ids=ids[start : start + 500], include=[])["ids"])
    return [i for i in ids if i not in present]
