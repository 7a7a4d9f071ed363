"""Each format loads into sections with the right metadata; folders are walked with include/exclude globs.

Fixtures are generated here: the PDF by a minimal hand-written writer (so page numbers are known), the
.docx with python-docx, the encrypted PDF with pypdf's own encryption.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.service import Penny
from index.ingest import discover
from index.loaders import load


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_pdf(path: Path, pages: list[list[str]], title: str | None = None) -> Path:
    """A valid PDF with one text line per entry, Helvetica, one page per list. Offsets are exact."""
    objects: list[bytes] = []
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{pid} 0 R" for pid in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, lines in enumerate(pages):
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 740 Td"]
        for line in lines:
            ops += [f"({_pdf_escape(line)}) Tj", "T*"]
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {page_ids[i] + 1} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    info_ref = b""
    if title:
        objects.append(f"<< /Title ({_pdf_escape(title)}) >>".encode())
        info_ref = f" /Info {len(objects)} 0 R".encode()
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R" % (len(objects) + 1) + info_ref + b" >>\n"
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    path.write_bytes(bytes(out))
    return path


def write_encrypted_pdf(path: Path, source: Path, password: str = "s3cret") -> Path:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(source))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="RC4-128")
    with path.open("wb") as handle:
        writer.write(handle)
    return path


def write_docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.core_properties.title = "Rollout Handbook"
    document.add_heading("Rollout Handbook", level=1)
    document.add_paragraph("This handbook explains how the platform team ships releases.")
    document.add_heading("Canary stage", level=2)
    document.add_paragraph("Canary deployments receive five percent of traffic for one hour.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Stage"
    table.cell(0, 1).text = "Traffic"
    table.cell(1, 0).text = "canary"
    table.cell(1, 1).text = "five percent"
    document.add_heading("Rollback", level=2)
    document.add_paragraph("A rollback restores the previous build within ten minutes.")
    document.save(str(path))
    return path


HTML = """<!doctype html><html><head><meta charset="utf-8"><title>Pager Guide</title>
<style>body { color: red }</style><script>var secretTracking = 1;</script></head>
<body><nav>Home | About</nav><div role="main">
<h1>Pager Guide</h1><p>On-call engineers carry the pager for one week.</p>
<h2>Escalation</h2><p>Unacknowledged pages escalate after <b>fifteen</b> minutes.</p>
<ul><li>Primary responder</li><li>Secondary responder</li></ul>
</div><footer>Copyright footer text</footer></body></html>"""

MARKDOWN = """# Release Notes

Intro paragraph about releases.

## Version 2

### Fixes

The tokenizer no longer drops trailing punctuation.

```python
# not a heading inside code
print("hello")
```

## Version 1

The first public build shipped in March.
"""


def test_markdown_heading_paths_ignore_code_fences(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_text(MARKDOWN)
    document = load(path)
    assert document.title == "Release Notes"
    by_heading = {s.headings: s.text for s in document.sections}
    assert "tokenizer no longer drops" in by_heading[("Release Notes", "Version 2", "Fixes")]
    assert "# not a heading inside code" in by_heading[("Release Notes", "Version 2", "Fixes")]
    assert "March" in by_heading[("Release Notes", "Version 1")]


def test_html_keeps_content_and_headings_drops_scripts_and_chrome(tmp_path: Path) -> None:
    path = tmp_path / "guide.html"
    path.write_text(HTML)
    document = load(path)
    assert document.title == "Pager Guide"
    text = "\n".join(s.text for s in document.sections)
    assert "fifteen minutes" in text and "Secondary responder" in text
    assert "secretTracking" not in text and "Copyright footer" not in text and "Home | About" not in text
    assert any(s.headings == ("Pager Guide", "Escalation") for s in document.sections)


def test_pdf_pages_and_title(tmp_path: Path) -> None:
    path = write_pdf(
        tmp_path / "manual.pdf",
        [["Page one talks about boilers."], ["Page two covers the heat exchanger maintenance."]],
        title="Boiler Manual",
    )
    document = load(path)
    assert document.title == "Boiler Manual"
    assert [(s.page, "boilers" in s.text) for s in document.sections] == [(1, True), (2, False)]
    assert "heat exchanger" in document.sections[1].text


def test_docx_headings_and_tables(tmp_path: Path) -> None:
    document = load(write_docx(tmp_path / "handbook.docx"))
    assert document.title == "Rollout Handbook"
    canary = next(s for s in document.sections if s.headings == ("Rollout Handbook", "Canary stage"))
    assert "five percent of traffic" in canary.text
    assert "canary | five percent" in canary.text  # table row kept, in reading order


def test_every_format_ingests_with_per_chunk_metadata(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    (docs / "deep" / "deeper").mkdir(parents=True)
    (docs / "plain.txt").write_text("Plain text about the coffee machine descaling schedule.\n")
    (docs / "deep" / "notes.md").write_text(MARKDOWN)
    (docs / "deep" / "guide.htm").write_text(HTML)
    write_pdf(docs / "deep" / "deeper" / "manual.pdf", [["Boilers."], ["Heat exchanger maintenance."]])
    write_docx(docs / "handbook.docx")
    (docs / "image.png").write_bytes(b"\x89PNG\r\n")  # unsupported suffix inside a folder: ignored

    penny = Penny(settings)
    summary = penny.ingester().ingest([docs])
    assert summary.ok, summary.failed
    assert summary.added == 5

    collection = penny.retriever().collection
    records = collection.get(include=["metadatas", "documents"])
    metas = records["metadatas"]
    assert {Path(str(m["source"])).name for m in metas} == {
        "plain.txt",
        "notes.md",
        "guide.htm",
        "manual.pdf",
        "handbook.docx",
    }
    for meta in metas:
        assert Path(str(meta["source"])).is_absolute()
        assert {"title", "headings", "chunk_index", "file_sha256", "content_sha256", "ingested_at"} <= set(
            meta
        )
        assert len(str(meta["content_sha256"])) == 64
    pdf_pages = sorted(m["page"] for m in metas if str(m["source"]).endswith(".pdf"))
    assert pdf_pages == [1, 2]
    assert any(m["headings"] == "Release Notes > Version 2 > Fixes" for m in metas)
    # No chunk exceeds the embedding window.
    assert max(penny.embedder.count_tokens(d) for d in records["documents"]) <= penny.embedder.max_tokens - 2


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        ((), (), {"a.md", "b.txt", "keep.md", "draft.md"}),
        (("*.md",), (), {"a.md", "keep.md", "draft.md"}),
        ((), ("drafts/*",), {"a.md", "b.txt", "keep.md"}),
        (("*.md",), ("drafts/*", "a.*"), {"keep.md"}),
    ],
)
def test_discover_recurses_with_globs(tmp_path: Path, include, exclude, expected) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "sub" / "drafts").mkdir(parents=True)
    for name in ("a.md", "b.txt", "sub/keep.md", "sub/drafts/draft.md", "c.bin"):
        (tmp_path / name).write_text("text")
    found = discover([tmp_path], include, exclude)
    assert {p.name for p in found.files} == expected
    assert not found.failed
