"""scripts/ingest.py is the same command as ``penny ingest``: progress bar on stderr, --quiet for scripts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_script_ingests_with_progress_then_quietly(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "drafts").mkdir(parents=True)
    (docs / "a.md").write_text("# A\n\nAlpha document about the release train.")
    (docs / "b.txt").write_text("Beta document about the pager rota.")
    (docs / "drafts" / "c.md").write_text("# Draft\n\nNot ready.")
    env = {**os.environ, "PENNY_DATA_DIR": str(tmp_path / "data"), "PENNY_CONFIG": str(tmp_path / "no.toml")}
    env.pop("CHROMA_URL", None)
    script = [sys.executable, str(REPO / "scripts" / "ingest.py")]

    first = subprocess.run(
        [*script, str(docs), "--exclude", "drafts/*", "-c", "script-test"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().startswith("added 2, updated 0, unchanged 0, deleted 0, failed 0")
    assert "2/2" in first.stderr and "chunks_s=" in first.stderr  # tqdm: files done, chunk rate

    (docs / "b.txt").unlink()
    second = subprocess.run(
        [*script, str(docs), "--exclude", "drafts/*", "-c", "script-test", "--sync", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().startswith("added 0, updated 0, unchanged 1, deleted 1, failed 0")
    assert "chunks_s=" not in second.stderr
