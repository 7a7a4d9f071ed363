"""Schemathesis fuzzes every route of Penny's own OpenAPI schema over real HTTP: no input may yield a 5xx.

Runs the `schemathesis` CLI against a live server (the pytest plugin does not support pytest 9), with
bounded examples and a fixed seed so CI stays fast and reproducible. Auth is on, with a real user key,
so the authenticated paths (not just the 401s) are fuzzed too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from assistant.service import Penny
from tests.conftest import REPO
from tests.support.servers import running_server


def test_no_server_errors_on_any_route(tmp_path, model_cache) -> None:  # type: ignore[no-untyped-def]
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
    for route in ("/v1/collections/{name}/documents", "/v1/jobs/{job_id}", "/documents/{source}"):
        assert route in output  # and HTTP ingestion's (multipart upload included)
