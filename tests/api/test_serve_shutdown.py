"""`penny serve` as a real process, with nothing but the model configured (the local tier's default path:
the worker pool): GET /v1/pool and /metrics show the pool live; SIGTERM lets an in-flight streamed answer
finish, then the server stops its workers and exits cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from tests.conftest import REPO
from tests.support.servers import free_port, wait_until_ready

ADMIN_KEY = "test-admin-key-0123456789"


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
        "PENNY_ADMIN_KEY": ADMIN_KEY,
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
        pool = httpx.get(f"{base}/v1/pool", headers={"authorization": f"Bearer {ADMIN_KEY}"}).json()
        assert (pool["enabled"], pool["kind"], pool["workers_by_state"]["ready"]) == (True, "local", 1)
        assert pool["policy"]["max_workers"] >= 1  # sized for this host
        workers = [w["pid"] for w in pool["workers"]]
        assert "penny_pool_slots_total 1.0" in httpx.get(f"{base}/metrics").text
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
        assert not [pid for pid in workers if psutil.pid_exists(pid)], "a worker outlived the server"
    finally:
        if server.poll() is None:
            server.kill()
        output = server.stdout.read() if server.stdout else ""
    assert "Waiting for connections to close" in output or "Finished server process" in output, output[-2000:]
