"""Bad files are reported with their reason and skipped; the run completes and nothing indexed is lost."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from assistant.service import Penny
from index.loaders import LoadError, load
from tests.support.documents import write_docx, write_encrypted_pdf, write_pdf


def test_each_bad_file_is_reported_and_the_good_ones_are_indexed(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Good\n\nThe good document survives bad neighbours.")
    plain = write_pdf(tmp_path / "plain.pdf", [["Confidential salary bands."]])
    write_encrypted_pdf(docs / "locked.pdf", plain)
    (docs / "truncated.pdf").write_bytes(plain.read_bytes()[:120])
    (docs / "fake.pdf").write_bytes(b"this is not a pdf at all")
    (docs / "broken.docx").write_bytes(b"PK\x03\x04 not really a zip")
    (docs / "empty.txt").write_bytes(b"")
    (docs / "blank.md").write_text("\n\n   \n")
    (docs / "binary.txt").write_bytes(b"\x00\x01\x02ELF" * 50)
    (docs / "dangling.md").symlink_to(docs / "missing-target.md")

    summary = Penny(settings).ingester().ingest([docs])
    reasons = {Path(path).name: reason for path, reason in summary.failed.items()}
    assert summary.added == 1
    assert set(reasons) == {
        "locked.pdf",
        "truncated.pdf",
        "fake.pdf",
        "broken.docx",
        "empty.txt",
        "blank.md",
        "binary.txt",
        "dangling.md",
    }
    assert "encrypted" in reasons["locked.pdf"] and "password" in reasons["locked.pdf"]
    assert "corrupt PDF" in reasons["truncated.pdf"] and "corrupt PDF" in reasons["fake.pdf"]
    assert "corrupt .docx" in reasons["broken.docx"]
    assert reasons["empty.txt"].startswith("empty") and reasons["blank.md"].startswith("empty")
    assert "binary" in reasons["binary.txt"]
    assert "broken symbolic link" in reasons["dangling.md"]
    assert not summary.ok


def test_pdf_encrypted_with_empty_user_password_is_read(tmp_path: Path) -> None:
    plain = write_pdf(tmp_path / "plain.pdf", [["Printing is restricted but reading is not."]])
    locked = write_encrypted_pdf(tmp_path / "restricted.pdf", plain, password="")
    assert "reading is not" in load(locked).sections[0].text


def test_non_utf8_text_is_decoded_not_crashed(tmp_path: Path) -> None:
    (tmp_path / "cp1252.txt").write_bytes("Caf\u00e9 men\u00fc \u2013 \u201cquoted\u201d".encode("cp1252"))
    (tmp_path / "utf16.txt").write_text("UTF-16 na\u00efve text", encoding="utf-16")
    (tmp_path / "bom.md").write_bytes("\ufeff# Titel\n\nGr\u00fc\u00dfe".encode())
    assert load(tmp_path / "cp1252.txt").sections[0].text == "Caf\u00e9 men\u00fc \u2013 \u201cquoted\u201d"
    assert load(tmp_path / "utf16.txt").sections[0].text == "UTF-16 na\u00efve text"
    assert load(tmp_path / "bom.md").title == "Titel"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("no peeking")
    path.chmod(0)
    with pytest.raises(LoadError, match="cannot read"):
        load(path)


def test_file_gone_bad_keeps_its_indexed_chunks(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = tmp_path / "docs"
    docs.mkdir()
    write_docx(docs / "handbook.docx")
    (docs / "notes.txt").write_text("Notes about the rollback drill.")
    ingester = Penny(settings).ingester()
    assert ingester.ingest([docs]).added == 2
    before = {s: set(e.ids) for s, e in ingester.manifest().items()}

    (docs / "handbook.docx").write_bytes(b"garbage now")  # corrupted in place
    (docs / "notes.txt").write_text("")  # emptied
    summary = ingester.ingest([docs], sync=True)
    assert len(summary.failed) == 2 and summary.deleted == 0
    assert {s: set(e.ids) for s, e in ingester.manifest().items()} == before


def test_cli_exits_1_and_names_each_failure(
    settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from assistant.cli import cli
    from assistant.settings import get_settings

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "ok.txt").write_text("A fine document.")
    (docs / "bad.pdf").write_bytes(b"%PDF-1.4 truncated")
    monkeypatch.setenv("PENNY_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["ingest", str(docs), "--quiet", "-c", "cli-test"])
        again = CliRunner().invoke(cli, ["ingest", str(docs / "ok.txt"), "--quiet", "-c", "cli-test"])
        listed = CliRunner().invoke(cli, ["collections", "list"])
        deleted = CliRunner().invoke(cli, ["collections", "delete", "cli-test", "--yes"])
        missing = CliRunner().invoke(cli, ["collections", "delete", "cli-test", "--yes"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert f"failed: {(docs / 'bad.pdf').resolve()}: corrupt PDF" in result.output
    assert "added 1, updated 0, unchanged 0, deleted 0, failed 1" in result.output
    assert again.exit_code == 0 and "unchanged 1" in again.output
    assert listed.exit_code == 0 and "cli-test" in listed.output
    assert deleted.exit_code == 0 and "deleted collection cli-test" in deleted.output
    assert missing.exit_code == 1 and "no collection named 'cli-test'" in missing.output
