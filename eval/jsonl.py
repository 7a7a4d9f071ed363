"""Append-only JSONL files that survive a crash: fsynced appends, a torn last line cut off on read, and
whole-file rewrites that replace the old file atomically.

The run's ``calls.jsonl`` and the synthetic questions' work files are written this way, so a killed process
resumes from what it wrote and never from half a line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from eval.errors import RunError


def append_line(handle: Any, line: str) -> None:
    """Write one line to an open file and fsync it."""
    handle.write(line + "\n")
    handle.flush()
    os.fsync(handle.fileno())


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    """Append one row durably (fsync), for files read back with :func:`read_jsonl`."""
    with path.open("a", encoding="utf-8") as handle:
        append_line(handle, json.dumps(row, ensure_ascii=False))


def read_jsonl(path: Path, what: str = "JSON") -> list[dict[str, Any]]:
    """Rows of an append-only JSONL file; a line torn by a crash is cut off so appends stay well-formed."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    rows: list[dict[str, Any]] = []
    good_end = 0
    for line in raw.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break  # torn tail: the process died mid-write
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise RunError(f"{path} line {len(rows) + 1} is not {what} ({exc}); move it aside") from exc
        good_end += len(line)
    if good_end < len(raw):
        with path.open("r+b") as handle:
            handle.truncate(good_end)
    return rows


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: a reader sees the old file or the new one, never half."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
