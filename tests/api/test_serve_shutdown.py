"""`penny serve` as a real process: SIGTERM lets an in-flight streamed answer finish, then exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import REPO
from tests.support.servers import free_port, wait_until_ready


def test_sigterm_drains_an_in_flight_stream(tmp_path: Path, model_cache: Path, tiny_model_path: Path) -> None:
    penny = str(Path(sys.executable).parent / "penny")
    env = {
        **os.environ,
        "PENNY_CONFIG": str(tmp_path / "absent.toml"),
        "PENNY_DATA_DIR": str(tmp_path / "data"),
        "PENNY_MODELS__LOCAL": "smollm2-135m",
        "PENNY_MODELS__CACHE_DIR": str(model_cache),
        "PENNY_MODELS__N_CTX": "2048",
        "PENNY_MODELS__MAX_TOKENS": "160",
    }
    subprocess.run([penny, "ingest", str(REPO / "samples" / "normans.md"), "--quiet"], env=env, check=True)
    port = free_port()
    server = subprocess.Popen(
        [penny, "serve", "--no-auth", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_until_ready(f"{base}/readyz", server, timeout_s=180), "server did not become ready"
        body = {
            "model": "penny-local",
            "stream": True,
            "messages": [{"role": "user", "content": "Tell me everything about the Normans in Normandy."}],
        }
        lines: list[str] = []
        signalled = False
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=300) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                lines.append(line)
                first_token = '"content":' in line and '"content": ""' not in line
                if first_token and not signalled:
                    server.send_signal(signal.SIGTERM)  # mid-answer
                    signalled = True
        assert signalled
        assert "data: [DONE]" in lines  # the answer was finished, not cut off
        assert any('"finish_reason": "stop"' in line for line in lines)
        # uvicorn re-raises the captured SIGTERM once shutdown is complete, so "clean" is exit-by-SIGTERM.
        assert server.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if server.poll() is None:
            server.kill()
        output = server.stdout.read() if server.stdout else ""
    assert "Waiting for connections to close" in output or "Finished server process" in output, output[-2000:]
