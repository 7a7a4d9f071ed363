"""Ingest while serving: a real ``chroma run`` server, one process ingesting, this one retrieving.

Chroma's PersistentClient is not process-safe, so Penny's design for ingest-while-serving is a Chroma
server: with ``CHROMA_URL`` (or ``index.chroma_url``) both ``penny serve`` and ``penny ingest`` use
``chromadb.HttpClient``. BM25 state in the reader follows the writer through the collection's revision
stamp.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.service import Penny
from assistant.settings import Settings
from tests.conftest import REPO
from tests.support.servers import BIN
from tests.support.servers import chroma_server as running_chroma


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    with running_chroma(tmp_path / "chroma-server") as url:
        yield url


def write_corpus(root: Path, files: int) -> None:
    root.mkdir(parents=True)
    for i in range(files):
        body = "\n\n".join(
            f"Team {i} runbook section {j}: service{i} restarts with command restart-{i}-{j} "
            + " ".join(f"detail{i}x{j}x{w}" for w in range(30))
            for j in range(4)
        )
        (root / f"runbook-{i:02d}.md").write_text(f"# Runbook {i}\n\n{body}\n\nUnique marker wombat{i}.")


def test_ingest_in_one_process_while_another_retrieves(chroma_server: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    write_corpus(corpus, files=12)
    env = {
        **os.environ,
        "CHROMA_URL": chroma_server,
        "PENNY_DATA_DIR": str(tmp_path / "data"),
        "PENNY_CONFIG": str(tmp_path / "absent.toml"),
    }
    # The serving side: this process, through the same server, via the setting rather than the env var.
    reader = Penny(Settings(data_dir=tmp_path / "reader", index={"chroma_url": chroma_server}))
    retriever = reader.retriever()
    assert type(reader.chroma).__name__ != "PersistentClient"  # HTTP client, not a local directory

    ingest = subprocess.Popen(
        [str(BIN / "penny"), "ingest", str(corpus), "--quiet"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen_counts: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def keep_searching() -> None:
        while not stop.is_set():
            try:
                seen_counts.append(len(retriever.search("how does service3 restart", k=3)))
            except BaseException as exc:  # any failure while the other process writes is a bug
                errors.append(exc)
                return

    searcher = threading.Thread(target=keep_searching)
    searcher.start()
    try:
        out, err = ingest.communicate(timeout=600)
    finally:
        stop.set()
        searcher.join(timeout=60)
    assert ingest.returncode == 0, err
    assert "added 12, updated 0, unchanged 0, deleted 0, failed 0" in out
    assert not errors, errors
    assert len(seen_counts) > 3 and seen_counts[-1] == 3

    # The reader sees the writer's last file in every mode: BM25 was rebuilt from the revision stamp.
    for mode in ("dense", "bm25", "hybrid"):
        top = retriever.search("wombat11", k=1, mode=mode)  # type: ignore[arg-type]
        assert top and Path(top[0].source).name == "runbook-11.md", mode

    # Re-ingest through the server from another process: unchanged, nothing written.
    again = subprocess.run(
        [str(BIN / "penny"), "ingest", str(corpus), "--quiet"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr
    assert "added 0, updated 0, unchanged 12" in again.stdout
