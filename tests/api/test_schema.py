"""Schemathesis fuzzes every route of Penny's own OpenAPI schema over real HTTP: no input may yield a 5xx.

Runs the `schemathesis` CLI against a live server (the pytest plugin does not support pytest 9), with
bounded examples and a fixed seed so CI stays fast and reproducible. Auth is on, with a real user key,
so the authenticated paths (not just the 401s) are fuzzed too.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.service import Penny
from tests.conftest import REPO
from tests.support.servers import running_server


@pytest.mark.parametrize("caller", ["user", "admin"])
def test_no_server_errors_on_any_route(tmp_path, model_cache, monkeypatch, caller) -> None:  # type: ignore[no-untyped-def]
    """Once as a user (the answering, usage and ingestion routes get past their guards) and once as the
    operator (the /admin routes do)."""
    from assistant.api import create_app
    from assistant.settings import Settings

    config = Settings(
        data_dir=tmp_path / "data",
        models={"local": "smollm2-135m", "cache_dir": model_cache, "n_ctx": 2048, "max_tokens": 8},
    )
    penny = Penny(config)
    assert penny.ingester().ingest([REPO / "samples" / "normans.md"]).ok
    penny.ledger.add_user("fuzz")
    _, key = penny.ledger.create_key("fuzz")
    if caller == "admin":
        key = "fuzz-admin-" + "x" * 32
        monkeypatch.setenv("PENNY_ADMIN_KEY", key)
    schemathesis = Path(sys.executable).parent / "schemathesis"
    with running_server(create_app(config, penny)) as base:
        result = subprocess.run(
            [
                str(schemathesis),
                "run",
                f"{base}/schema/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "15",
                "--seed",
                "1",
                "--header",
                f"Authorization: Bearer {key}",
                "--workers",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "/v1/chat/completions" in output  # the answering routes were exercised
    if caller == "admin":
        # Past the admin guard: the "only 401/403" warning counts just the user routes (the admin key is
        # not an API key), and every operation of the schema, the /admin ones included, was tested.
        # 4 answering and usage routes, and the 5 of the Batch API (files and batches are a user's own).
        assert "Authentication failed: 9 operations returned only 401/403" in output
        assert re.search(r"Selected: (\d+)/\1\s+Tested: \1", output), output[-3000:]
        return
    for route in ("/v1/collections/{name}/documents", "/v1/jobs/{job_id}", "/documents/{source}"):
        assert route in output  # and HTTP ingestion's (multipart upload included)
