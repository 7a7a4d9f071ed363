"""Idempotent sync: unchanged writes nothing, changed replaces exactly, --sync deletes vanished files."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.service import Penny
from index.ingest import Ingester
from index.store import revision
from tests.support.index import CountingEmbedder


def paragraph(topic: str, n: int = 6) -> str:
    return "\n\n".join(
        f"{topic} paragraph {i}: " + " ".join(f"{topic}{i}w{j}" for j in range(40)) for i in range(n)
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "team").mkdir(parents=True)
    (root / "alpha.md").write_text("# Alpha\n\n" + paragraph("alpha"))
    (root / "team" / "beta.txt").write_text(paragraph("beta"))
    (root / "team" / "gamma.txt").write_text(paragraph("gamma", 2))
    return root


def by_source(ingester: Ingester) -> dict[str, set[str]]:
    return {Path(source).name: set(entry.ids) for source, entry in ingester.manifest().items()}


def test_unchanged_reingest_writes_and_embeds_nothing(settings, tree: Path) -> None:  # type: ignore[no-untyped-def]
    penny = Penny(settings)
    ingester = penny.ingester()
    first = ingester.ingest([tree])
    assert (first.added, first.failed) == (3, {})
    before = by_source(ingester)
    count = ingester.collection.count()
    stamp = revision(penny.chroma, ingester.collection.name)

    counting = CountingEmbedder(ingester.embedder)
    ingester.embedder = counting  # type: ignore[assignment]
    again = ingester.ingest([tree])
    assert (again.added, again.updated, again.unchanged, again.deleted, again.chunks_written) == (
        0,
        0,
        3,
        0,
        0,
    )
    assert counting.texts == 0
    assert ingester.collection.count() == count
    assert by_source(ingester) == before
    # No write happened, so readers' BM25 indexes stay valid: the revision stamp did not move.
    assert revision(penny.chroma, ingester.collection.name) == stamp


def test_changed_file_replaces_exactly_its_chunks(settings, tree: Path) -> None:  # type: ignore[no-untyped-def]
    ingester = Penny(settings).ingester()
    ingester.ingest([tree])
    before = by_source(ingester)

    (tree / "team" / "beta.txt").write_text(paragraph("betaprime", 3))  # same name, new content
    summary = ingester.ingest([tree])
    assert (summary.added, summary.updated, summary.unchanged) == (0, 1, 2)
    after = by_source(ingester)
    assert after["alpha.md"] == before["alpha.md"] and after["gamma.txt"] == before["gamma.txt"]
    assert after["beta.txt"].isdisjoint(before["beta.txt"])
    assert summary.chunks_deleted == len(before["beta.txt"])
    texts = ingester.collection.get(where={"source": str((tree / "team" / "beta.txt").resolve())})[
        "documents"
    ]
    assert texts and all("betaprime" in t for t in texts)
    assert ingester.collection.count() == sum(len(ids) for ids in after.values())


def test_sync_deletes_vanished_files_only_under_given_roots(settings, tree: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "keep.txt").write_text(paragraph("keep", 1))
    ingester = Penny(settings).ingester()
    ingester.ingest([tree, other])

    (tree / "team" / "gamma.txt").unlink()
    plain = ingester.ingest([tree])  # without --sync: nothing is deleted
    assert plain.deleted == 0 and "gamma.txt" in by_source(ingester)

    (other / "keep.txt").unlink()  # vanished, but not under the synced root: kept
    synced = ingester.ingest([tree], sync=True)
    assert (synced.deleted, synced.unchanged) == (1, 2)
    assert set(by_source(ingester)) == {"alpha.md", "beta.txt", "keep.txt"}


def test_same_content_at_two_paths_is_indexed_once(settings, tree: Path) -> None:  # type: ignore[no-untyped-def]
    (tree / "copy.txt").write_bytes((tree / "team" / "gamma.txt").read_bytes())
    ingester = Penny(settings).ingester()
    first = ingester.ingest([tree])
    assert (first.added, len(first.duplicates)) == (3, 1)
    [(skipped, original)] = first.duplicates.items()
    assert {Path(skipped).name, Path(original).name} == {"copy.txt", "gamma.txt"}
    assert "duplicates skipped 1" in first.line()
    again = ingester.ingest([tree])
    assert (again.unchanged, len(again.duplicates), again.chunks_written) == (3, 1, 0)
    assert Path(skipped).name not in by_source(ingester)


def test_writes_are_split_within_max_batch_size(settings, tree: Path) -> None:  # type: ignore[no-untyped-def]
    penny = Penny(settings)
    ingester = penny.ingester()
    assert ingester.write_batch == penny.chroma.get_max_batch_size()
    ingester.write_batch = 3  # force many batches to exercise the splitting on real Chroma
    summary = ingester.ingest([tree])
    assert summary.chunks_written > 6
    assert ingester.collection.count() == summary.chunks_written
    (tree / "alpha.md").write_text("# Alpha\n\nshort now")
    replaced = ingester.ingest([tree])
    assert replaced.chunks_deleted > 3
    assert ingester.collection.count() == summary.chunks_written - replaced.chunks_deleted + 1
