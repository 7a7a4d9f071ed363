#!/usr/bin/env python
"""Team-facing ingest script: the same command as ``penny ingest``, runnable from a checkout or cron.

    .venv/bin/python scripts/ingest.py docs/ --collection handbook --exclude 'drafts/*' --sync --quiet

Exit code 0 when every file was ingested or unchanged, 1 if any file failed (each failure is printed).
Set ``CHROMA_URL`` to ingest into the Chroma server a running ``penny serve`` uses.
"""

from __future__ import annotations

from assistant.cli.index_cmds import ingest

if __name__ == "__main__":
    ingest(prog_name="scripts/ingest.py")
