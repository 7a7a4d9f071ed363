"""Turn files into titled sections of plain text. One loader per format, chosen by file suffix.

Parsing is left to well-kept libraries (markdown-it-py, BeautifulSoup, pypdf, python-docx). Every
failure a user can act on (unreadable, encrypted, corrupt, empty, binary) becomes a ``LoadError`` whose
message is the reason the ingester reports; the run then skips that file and keeps going.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Callable, Iterable
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


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from exc


def decode_text(raw: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM, else cp1252, else Latin-1; binary is refused."""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise LoadError(f"undecodable UTF-16 text: {exc.reason}") from exc
    if b"\x00" in raw[:4096]:
        raise LoadError("looks binary (NUL bytes), not text")
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")  # total: every byte maps to a character


def read_text(path: Path) -> str:
    return decode_text(read_bytes(path))


def _sections_under_headings(
    items: Iterable[tuple[int, str] | str], page: int | None = None
) -> list[Section]:
    """Group a stream of headings ``(level, title)`` and text blocks into sections with heading paths."""
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    buffer: list[str] = []

    def flush() -> None:
        body = "\n\n".join(b for b in buffer if b.strip()).strip()
        if body:
            sections.append(Section(text=body, headings=tuple(t for _, t in stack), page=page))
        buffer.clear()

    for item in items:
        if isinstance(item, tuple):
            flush()
            level, title = item
            stack = [(lvl, t) for lvl, t in stack if lvl < level]
            stack.append((level, title))
        else:
            buffer.append(item)
    flush()
    return sections


def load_markdown(path: Path) -> Document:
    from markdown_it import MarkdownIt

    text = read_text(path)
    lines = text.splitlines()
    tokens = MarkdownIt("commonmark").parse(text)
    items: list[tuple[int, str] | str] = []
    title: str | None = None
    cursor = 0
    for position, token in enumerate(tokens):
        if token.type != "heading_open" or token.map is None:
            continue
        start, end = token.map
        items.append("\n".join(lines[cursor:start]))
        level = int(token.tag[1])
        heading = tokens[position + 1].content.strip()
        items.append((level, heading))
        if level == 1 and title is None:
            title = heading
        cursor = end
    items.append("\n".join(lines[cursor:]))
    return Document(source=str(path), title=title or path.stem, sections=_sections_under_headings(items))


def load_text(path: Path) -> Document:
    text = read_text(path)
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), path.stem)
    return Document(source=str(path), title=first_line[:120], sections=[Section(text=text)])


_HTML_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
_HTML_BLOCKS = ("p", "li", "pre", "td", "th", "dt", "dd", "blockquote", "figcaption", "caption")
_HTML_NOISE = ("script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg")


def load_html(path: Path) -> Document:
    from bs4 import BeautifulSoup

    raw = read_bytes(path)
    if b"\x00" in raw[:4096]:
        raise LoadError("looks binary (NUL bytes), not HTML")
    soup = BeautifulSoup(raw, "lxml")  # lxml honours <meta charset>, else sniffs the encoding
    for noise in soup.find_all(_HTML_NOISE):
        noise.decompose()
    for anchor in soup.select("a.headerlink"):  # Sphinx's pilcrow permalinks
        anchor.decompose()
    root = soup.find(attrs={"role": "main"}) or soup.find("main") or soup.body or soup
    items: list[tuple[int, str] | str] = []
    for element in root.find_all([*_HTML_HEADINGS, *_HTML_BLOCKS]):
        # A block nested in another block (li > p) is read once, through its outermost block.
        if element.find_parent([*_HTML_BLOCKS]) is not None:
            continue
        text = " ".join(element.get_text(" ").split())
        if not text:
            continue
        if element.name in _HTML_HEADINGS:
            items.append((int(element.name[1]), text))
        else:
            items.append(text)
    if not any(isinstance(item, str) for item in items):  # no block markup: fall back to all text
        items.append(root.get_text("\n"))
    first_h1 = next((item[1] for item in items if isinstance(item, tuple) and item[0] == 1), None)
    title_tag = soup.title.get_text(" ", strip=True) if soup.title else ""
    return Document(
        source=str(path),
        title=title_tag or first_h1 or path.stem,
        sections=_sections_under_headings(items),
    )


def load_pdf(path: Path) -> Document:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError, PdfStreamError

    raw = read_bytes(path)
    if not raw.lstrip()[:5] == b"%PDF-":
        raise LoadError("corrupt PDF: no %PDF- header")
    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password only to restrict printing; those read.
            try:
                opened = reader.decrypt("")
            except (NotImplementedError, DependencyError) as exc:
                raise LoadError(f"encrypted PDF ({exc}); decrypt it first") from exc
            if not opened:
                raise LoadError("encrypted PDF: a password is required; decrypt it first")
        sections = []
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            if text.strip():
                sections.append(Section(text=_pdf_paragraphs(text), page=number))
        metadata_title = (reader.metadata.title if reader.metadata else None) or ""
    except FileNotDecryptedError as exc:
        raise LoadError("encrypted PDF: a password is required; decrypt it first") from exc
    except (PdfReadError, PdfStreamError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LoadError(f"corrupt PDF: {exc}") from exc
    title = str(metadata_title).strip() or path.stem
    return Document(source=str(path), title=title, sections=sections)


def _pdf_paragraphs(text: str) -> str:
    """pypdf returns one line per visual line; join lines, keep blank lines as paragraph breaks."""
    paragraphs = [" ".join(block.split()) for block in text.replace("\r", "").split("\n\n")]
    return "\n\n".join(p for p in paragraphs if p)


def load_docx(path: Path) -> Document:
    import zipfile

    import docx
    from docx.opc.exceptions import PackageNotFoundError

    try:
        document = docx.Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise LoadError(f"corrupt .docx: {exc}") from exc
    except OSError as exc:
        raise LoadError(f"cannot read: {exc.strerror or exc}") from exc
    items: list[tuple[int, str] | str] = []
    for block in document.iter_inner_content():
        if isinstance(block, docx.table.Table):
            for row in block.rows:
                cells = [" ".join(cell.text.split()) for cell in row.cells]
                items.append(" | ".join(c for c in dict.fromkeys(cells) if c))
            continue
        text = " ".join(block.text.split())
        if not text:
            continue
        style = (block.style.name if block.style is not None else "") or ""
        if style == "Title":
            items.append((1, text))
        elif style.startswith("Heading") and style[7:].strip().isdigit():
            items.append((int(style[7:].strip()), text))
        else:
            items.append(text)
    title = (document.core_properties.title or "").strip()
    if not title:
        title = next((item[1] for item in items if isinstance(item, tuple)), path.stem)
    return Document(source=str(path), title=title, sections=_sections_under_headings(items))


LOADERS: dict[str, Callable[[Path], Document]] = {
    ".txt": load_text,
    ".text": load_text,
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
}


def load(path: Path) -> Document:
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise LoadError(f"unsupported file type {path.suffix or '(none)'}")
    document = loader(path)
    if not any(section.text.strip() for section in document.sections):
        raise LoadError("empty: no text to index")
    return document
