"""Retrieval quality check: recall@1/@5 and MRR of dense vs BM25 vs hybrid on a SQuAD 2.0 file.

    python -m eval.retrieval --dataset ../shared/data/squad2-dev-sample.json

Every paragraph of the dataset becomes one file in a scratch folder and goes through the real ingestion
path (``Ingester``: chunking, embedding, Chroma on disk) and the real retrieval API (``Retriever.search``).
For each answerable question the gold document is the question's own paragraph; chunks are mapped back
to their paragraph file and de-duplicated, so a long paragraph split in two counts once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from assistant.service import Penny
from assistant.settings import Settings


@dataclass(frozen=True)
class Question:
    text: str
    gold: str  # file name of the question's paragraph


def write_paragraphs(dataset: Path, folder: Path) -> list[Question]:
    """One .txt per paragraph; returns the answerable questions with their gold file name."""
    raw = json.loads(dataset.read_text(encoding="utf-8"))
    questions: list[Question] = []
    for a, article in enumerate(raw["data"]):
        for p, paragraph in enumerate(article["paragraphs"]):
            name = f"a{a:03d}-p{p:03d}.txt"
            (folder / name).write_text(paragraph["context"], encoding="utf-8")
            for qa in paragraph["qas"]:
                if not qa.get("is_impossible") and qa.get("answers"):
                    questions.append(Question(qa["question"], name))
    return questions


def rank_of(gold: str, sources: list[str]) -> int | None:
    names = list(dict.fromkeys(Path(s).name for s in sources))
    return names.index(gold) + 1 if gold in names else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True, help="SQuAD 2.0 JSON file")
    parser.add_argument("--depth", type=int, default=20, help="chunks retrieved per question (MRR@depth)")
    args = parser.parse_args(argv)
    if not args.dataset.is_file():
        parser.error(f"dataset {args.dataset} not found")

    with tempfile.TemporaryDirectory(prefix="penny-eval-retrieval-") as scratch:
        root = Path(scratch)
        docs = root / "paragraphs"
        docs.mkdir()
        questions = write_paragraphs(args.dataset, docs)
        penny = Penny(Settings(data_dir=root / "data"))
        summary = penny.ingester("eval-retrieval").ingest([docs])
        print(
            f"indexed {summary.added} paragraphs as {summary.chunks_written} chunks in {summary.seconds:.1f}s"
        )
        if not summary.ok:
            print(f"failed: {summary.failed}", file=sys.stderr)
            return 1
        retriever = penny.retriever("eval-retrieval")
        print(f"{len(questions)} answerable questions; gold = the question's own paragraph\n")
        print(f"{'mode':<8} {'recall@1':>9} {'recall@5':>9} {'MRR':>7} {'p50 ms':>8}")
        for mode in ("dense", "bm25", "hybrid"):
            ranks: list[int | None] = []
            latencies: list[float] = []
            for question in questions:
                started = time.perf_counter()
                passages = retriever.search(question.text, k=args.depth, mode=mode)  # type: ignore[arg-type]
                latencies.append((time.perf_counter() - started) * 1000)
                ranks.append(rank_of(question.gold, [p.source for p in passages]))
            n = len(ranks)
            recall1 = sum(1 for r in ranks if r == 1) / n
            recall5 = sum(1 for r in ranks if r is not None and r <= 5) / n
            mrr = sum(1 / r for r in ranks if r is not None) / n
            p50 = statistics.median(latencies)
            print(f"{mode:<8} {recall1:>9.3f} {recall5:>9.3f} {mrr:>7.3f} {p50:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
