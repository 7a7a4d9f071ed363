"""Turn files into titled sections of plain text. One loader per format, chosen by file suffix."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from index.chunking import Section


class LoadError(Exception):
    """A file could not be read; the message is the reason shown to the ingester."""


@dataclass
class Document:
    source: str
    title: str
    sections: list[Section]


def read_text(path: Path) -> str:
    """Decode text as UTF-8 (with or without BOM), else cp1252, else Latin-1 replacement; never crash."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from exc
    if b"\x00" in raw[:4096]:
        raise LoadError("looks binary (NUL bytes), not text")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1", errors="replace")


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def load_markdown(path: Path) -> Document:
    text = read_text(path)
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    buffer: list[str] = []
    in_fence = False

    def flush() -> None:
        body = "\n".join(buffer).strip()
        if body:
            sections.append(Section(text=body, headings=tuple(title for _, title in stack)))
        buffer.clear()

    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            flush()
            level = len(match.group(1))
            stack = [(lvl, title) for lvl, title in stack if lvl < level]
            stack.append((level, match.group(2)))
        else:
            buffer.append(line)
    flush()
    title = next((title for level, title in _headings(text) if level == 1), path.stem)
    return Document(source=str(path), title=title, sections=sections)


def _headings(text: str) -> list[tuple[int, str]]:
    found = []
    for line in text.splitlines():
        match = _HEADING.match(line)
        if match:
            found.append((len(match.group(1)), match.group(2)))
    return found


def load_text(path: Path) -> Document:
    text = read_text(path)
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), path.stem)
    return Document(source=str(path), title=first_line[:120], sections=[Section(text=text)])


LOADERS: dict[str, Callable[[Path], Document]] = {
    ".txt": load_text,
    ".text": load_text,
    ".md": load_markdown,
    ".markdown": load_markdown,
}


def load(path: Path) -> Document:
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise LoadError(f"unsupported file type {path.suffix or '(none)'}")
    document = loader(path)
    if not any(section.text.strip() for section in document.sections):
        raise LoadError("empty: no text to index")
    return document
