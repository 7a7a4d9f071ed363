"""What an ingest reports (per run and per file) and what it reads back from the collection per file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from index.dedupe import Fingerprint


@dataclass
class IngestSummary:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    duplicates: dict[str, str] = field(default_factory=dict)  # skipped source → the source it duplicates
    chunks_written: int = 0
    chunks_deleted: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def chunks_per_second(self) -> float:
        return self.chunks_written / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (
            f"added {self.added}, updated {self.updated}, unchanged {self.unchanged}, "
            f"deleted {self.deleted}, failed {len(self.failed)}, duplicates skipped {len(self.duplicates)} "
            f"({self.chunks_written} chunks written, {self.chunks_deleted} removed in {self.seconds:.1f}s)"
        )


FileStatus = Literal["indexed", "unchanged", "duplicate", "failed"]


@dataclass
class FileResult:
    """What became of one named file: ``chunks`` written when indexed, ``error`` when it failed,
    ``duplicate_of`` when its text was already indexed from another document."""

    source: str
    status: FileStatus
    chunks: int = 0
    error: str | None = None
    duplicate_of: str | None = None


@dataclass
class StoredFile:
    hashes: set[str] = field(default_factory=set)
    ids: list[str] = field(default_factory=list)
    expected: int = 0  # chunk_count recorded on its chunks
    fingerprint: Fingerprint | None = None

    @property
    def complete(self) -> bool:
        return len(self.hashes) == 1 and len(self.ids) == self.expected
