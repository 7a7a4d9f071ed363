"""BM25 over a collection, persisted on disk and updated incrementally by ingest.

Tokenising every chunk again in every process that answers is what made BM25 slow to start at scale, and
bm25s cannot add documents to a built index. So the persisted state is:

- a *main* index (bm25s' own save format) over the chunks present at the last compaction;
- a *delta*: ids and texts of chunks added since, small enough to index again when loaded;
- *deleted* ids: main chunks removed since, masked out of main's scores.

Ingest applies its additions and deletions to this state (``Bm25Store.apply``) and compacts it into a new
main index when the delta and deletions outgrow ``compact_fraction`` of main. Scores of delta chunks use the
delta's own statistics; while the delta is small next to main that shifts ranks little, and compaction makes
them exact again.

The state records the collection's revision stamp it reflects (see ``index.store``). A reader whose stamp
differs (a write from elsewhere, an ingest killed before it updated the state) rebuilds from Chroma and
saves, so a stale index is never served. Files are written under fresh names and published by an atomic
rename of ``state.json``, so a reader never sees half a state.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from index.store import iter_records

if TYPE_CHECKING:
    import numpy as np
    from bm25s import BM25
    from chromadb.api.models.Collection import Collection

STATE = "state.json"
DIRTY = "ingesting"


def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


def _build(texts: Sequence[str], stemmer: Any) -> BM25 | None:
    import bm25s

    if not texts:
        return None
    tokens = bm25s.tokenize(list(texts), stemmer=stemmer, show_progress=False)
    model = bm25s.BM25()
    model.index(tokens, show_progress=False)
    return model


class Bm25Index:
    """Main + delta BM25 indexes at one collection revision; answers (id, score) for a query."""

    def __init__(
        self,
        stamp: str,
        main: BM25 | None,
        main_ids: list[str],
        delta_ids: list[str],
        delta_texts: list[str],
        deleted: Iterable[str] = (),
        main_dir: str | None = None,
    ) -> None:
        import numpy as np

        self.stamp = stamp
        self.stemmer = _stemmer()
        self.main = main
        self.main_ids = main_ids
        self.main_dir = main_dir
        self.main_position = {pid: i for i, pid in enumerate(main_ids)}
        self.deleted = {pid for pid in deleted if pid in self.main_position}
        self.delta_ids = delta_ids
        self.delta_texts = delta_texts
        self.delta = _build(delta_texts, self.stemmer)
        self.delta_position = {pid: i for i, pid in enumerate(delta_ids)}
        self.live = np.ones(len(main_ids), dtype=bool)
        for pid in self.deleted:
            self.live[self.main_position[pid]] = False

    def __len__(self) -> int:
        return len(self.main_ids) - len(self.deleted) + len(self.delta_ids)

    def ids(self) -> list[str]:
        """Every live chunk id, main first."""
        return [pid for pid in self.main_ids if pid not in self.deleted] + list(self.delta_ids)

    def top(self, query: str, n: int, allowed: set[str] | None = None) -> list[tuple[str, float]]:
        """(id, score) of the best ``n`` chunks with a positive score, optionally among ``allowed``."""
        import bm25s

        if n <= 0 or len(self) == 0:
            return []
        [tokens] = bm25s.tokenize([query], stemmer=self.stemmer, return_ids=False, show_progress=False)
        found: list[tuple[str, float]] = []
        for model, ids, position, live in (
            (self.main, self.main_ids, self.main_position, self.live),
            (self.delta, self.delta_ids, self.delta_position, None),
        ):
            if model is None:
                continue
            known = [t for t in tokens if t in model.vocab_dict]
            if not known:
                continue
            scores = model.get_scores(known)
            found.extend(_best(scores, ids, position, live, allowed, n))
        found.sort(key=lambda pair: -pair[1])
        return found[:n]


def _best(
    scores: np.ndarray,
    ids: list[str],
    position: dict[str, int],
    live: np.ndarray | None,
    allowed: set[str] | None,
    n: int,
) -> list[tuple[str, float]]:
    import numpy as np

    if live is not None:
        scores = np.where(live, scores, 0.0)
    if allowed is not None:
        mask = np.zeros(len(ids), dtype=bool)
        mask[[position[pid] for pid in allowed if pid in position]] = True
        scores = np.where(mask, scores, 0.0)
    n = min(n, len(scores))
    best = np.argpartition(-scores, n - 1)[:n]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(ids[i], float(scores[i])) for i in best if scores[i] > 0]


class Bm25Store:
    """The persisted BM25 state of one collection, in ``folder`` (one folder per collection id).

    Without a folder nothing is saved: every process builds its own index in memory.
    """

    def __init__(self, folder: Path | None, compact_fraction: float = 0.1, compact_min: int = 2000) -> None:
        self.folder = folder
        self.compact_fraction = compact_fraction
        self.compact_min = compact_min

    def begin(self) -> bool:
        """Mark an ingest as writing; False when an earlier one died mid-write (the state then misses some
        of its writes, and the next ``apply`` rebuilds instead of patching)."""
        if self.folder is None:
            return True
        self.folder.mkdir(parents=True, exist_ok=True)
        marker = self.folder / DIRTY
        clean = not marker.exists()
        marker.touch()
        return clean

    def remove(self) -> None:
        """Forget the saved index (its collection was deleted)."""
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def load(self) -> Bm25Index | None:
        """The saved index, or None when nothing (readable) is saved."""
        import bm25s

        if self.folder is None:
            return None
        try:
            state = json.loads((self.folder / STATE).read_text())
            main = None
            if state["main_dir"]:
                main = bm25s.BM25.load(str(self.folder / state["main_dir"]), mmap=True, show_progress=False)
            main_ids = json.loads((self.folder / state["main_dir"] / "ids.json").read_text()) if main else []
        except (OSError, ValueError, KeyError):
            return None
        return Bm25Index(
            state["stamp"],
            main,
            main_ids,
            state["delta_ids"],
            state["delta_texts"],
            state["deleted"],
            main_dir=state["main_dir"],
        )

    def current(self, collection: Collection, stamp: str) -> Bm25Index:
        """The index at ``stamp``: the saved one when it reflects that revision, else rebuilt and saved."""
        index = self.load()
        if index is not None and index.stamp == stamp:
            return index
        return self.rebuild(collection, stamp)

    def rebuild(self, collection: Collection, stamp: str) -> Bm25Index:
        ids, texts = [], []
        for pid, text, _ in iter_records(collection, include=("documents",)):
            ids.append(pid)
            texts.append(text or "")
        stemmer = _stemmer()
        index = Bm25Index(stamp, _build(texts, stemmer), ids, [], [])
        self._save(index, new_main=True)
        return index

    def apply(
        self,
        collection: Collection,
        before: str,
        after: str,
        added: Sequence[tuple[str, str]],
        deleted: Sequence[str],
        *,
        clean: bool = True,
    ) -> Bm25Index:
        """Record an ingest that moved the collection from stamp ``before`` to ``after``.

        ``added`` are (id, text) pairs written, ``deleted`` the ids removed. When the saved state is not at
        ``before`` (it missed some write) or an earlier ingest died mid-write (``clean`` False, from
        :meth:`begin`), the index is rebuilt from the collection instead. Clears the :meth:`begin` mark.
        """
        index = self.load()
        if index is None or index.stamp != before or not clean:
            index = self.rebuild(collection, after)
        else:
            index = self._patch(index, collection, after, added, deleted)
        if self.folder is not None:
            (self.folder / DIRTY).unlink(missing_ok=True)
        return index

    def _patch(
        self,
        index: Bm25Index,
        collection: Collection,
        after: str,
        added: Sequence[tuple[str, str]],
        deleted: Sequence[str],
    ) -> Bm25Index:
        delta = dict(zip(index.delta_ids, index.delta_texts, strict=True))
        removed = set(index.deleted)
        for pid in deleted:
            if delta.pop(pid, None) is None and pid in index.main_position:
                removed.add(pid)
        for pid, text in added:
            if pid in index.main_position and pid not in removed:
                continue  # ids derive from content: the same id holds the same text
            removed.discard(pid)
            if pid not in index.main_position:
                delta[pid] = text
        pending = len(delta) + len(removed)
        if pending > max(self.compact_min, self.compact_fraction * len(index.main_ids)):
            return self.rebuild(collection, after)
        updated = Bm25Index(
            after, index.main, index.main_ids, list(delta), list(delta.values()), removed, index.main_dir
        )
        self._save(updated, new_main=False)
        return updated

    def _save(self, index: Bm25Index, *, new_main: bool) -> None:
        """Write the index under fresh names, then publish it by renaming ``state.json`` over the old one."""
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        if new_main:
            index.main_dir = f"main-{uuid.uuid4().hex[:12]}" if index.main is not None else None
            if index.main is not None and index.main_dir:
                target = self.folder / index.main_dir
                index.main.save(str(target), show_progress=False)
                (target / "ids.json").write_text(json.dumps(index.main_ids))
        state = {
            "stamp": index.stamp,
            "main_dir": index.main_dir,
            "delta_ids": index.delta_ids,
            "delta_texts": index.delta_texts,
            "deleted": sorted(index.deleted),
        }
        temporary = self.folder / f".state-{uuid.uuid4().hex}.json"
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self.folder / STATE)
        for old in self.folder.glob("main-*"):
            if old.name != index.main_dir:
                shutil.rmtree(old, ignore_errors=True)
