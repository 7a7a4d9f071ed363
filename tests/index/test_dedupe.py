"""A document whose normalised text is already indexed (a Sphinx page and its reST source) is skipped."""

from __future__ import annotations

from pathlib import Path

from assistant.service import Penny
from index.dedupe import DuplicateIndex, Fingerprint

BODY = [
    "The functools module is for higher-order functions: functions that act on or return other functions.",
    "In general, any callable object can be treated as a function for the purposes of this module.",
    "The cache decorator returns the same as lru_cache with maxsize set to None, creating a thin wrapper.",
    "Because it never needs to evict old values, this is smaller and faster than lru_cache with a limit.",
    "The partial function returns a new partial object which when called behaves like func called with args.",
]

HTML = (
    "<html><head><title>functools</title></head><body><h1>functools — Higher-order functions</h1>"
    + "".join(f"<p>{line.replace('lru_cache', '<code>lru_cache()</code>')}</p>" for line in BODY)
    + "</body></html>"
)
RST = (
    ":mod:`functools` --- Higher-order functions\n===========================================\n\n"
    ".. module:: functools\n   :synopsis: Higher-order functions.\n\n"
    + "\n\n".join(line.replace("lru_cache", ":func:`lru_cache`") for line in BODY)
)
OTHER = (
    "The itertools module implements iterator building blocks inspired by APL, Haskell and SML. "
    "Each has been recast in a form suitable for Python; together they form an iterator algebra. "
    "In general, any iterable object can be consumed lazily by these tools, which saves memory."
)


def test_rst_source_of_an_indexed_page_is_skipped_and_counted(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "html"
    (docs / "_sources" / "library").mkdir(parents=True)
    (docs / "library").mkdir()
    (docs / "_sources" / "library" / "functools.rst.txt").write_text(RST)
    (docs / "library" / "functools.html").write_text(HTML)
    (docs / "library" / "itertools.txt").write_text(OTHER)
    ingester = Penny(settings).ingester()
    summary = ingester.ingest([docs])
    # The HTML is taken first (plain text last), so the reST copy is the one skipped.
    assert summary.added == 2
    assert {Path(k).name: Path(v).name for k, v in summary.duplicates.items()} == {
        "functools.rst.txt": "functools.html"
    }
    assert "duplicates skipped 1" in summary.line()
    assert {Path(s).name for s in ingester.manifest()} == {"functools.html", "itertools.txt"}

    # Later runs and uploads compare against what is indexed: same verdict, nothing written.
    again = ingester.ingest([docs])
    assert (again.unchanged, len(again.duplicates), again.chunks_written) == (2, 1, 0)
    [result] = ingester.ingest_files([(docs / "_sources" / "library" / "functools.rst.txt", "copy.rst.txt")])
    assert (result.status, result.chunks, result.duplicate_of) == (
        "duplicate",
        0,
        str((docs / "library" / "functools.html").resolve()),
    )


def test_fingerprints_round_trip_and_tell_different_texts_apart() -> None:
    page = Fingerprint.of("\n\n".join(BODY))
    decoded = Fingerprint.decode(page.encode())
    assert decoded is not None and decoded.sha256 == page.sha256 and (decoded.minhash == page.minhash).all()
    assert Fingerprint.decode("not a fingerprint") is None
    seen = DuplicateIndex()
    seen.add("a.html", page)
    assert seen.duplicate_of("a.html", page) is None  # a document never duplicates itself
    assert seen.duplicate_of("b.txt", Fingerprint.of(RST)) == "a.html"
    assert seen.duplicate_of("c.txt", Fingerprint.of(OTHER)) is None
