"""``penny worker``: the worker as a command of its own (the image's second command), a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from click.testing import CliRunner

from assistant.cli import cli
from tests.support.servers import free_port, wait_until_ready

PENNY = [sys.executable, "-c", "from assistant.cli import main; main()"]


def test_worker_serves_a_registry_model_under_its_name(tiny_model_path: Path, model_cache: Path) -> None:
    port = free_port()
    env = {**os.environ, "PENNY_MODELS__CACHE_DIR": str(model_cache), "PENNY_MODELS__N_CTX": "1024"}
    args = ["worker", "--model", "smollm2-135m", "--port", str(port), "--threads", "1"]
    process = subprocess.Popen([*PENNY, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until_ready(f"{url}/healthz", process, timeout_s=180), process.communicate(timeout=5)[0]
        assert httpx.get(f"{url}/healthz").json()["model"] == "smollm2-135m"
        body = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 4}
        reply = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120).json()
        assert reply["model"] == "smollm2-135m"
        assert reply["usage"]["completion_tokens"] >= 1
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    assert f"Penny worker smollm2-135m ({tiny_model_path.resolve()})" in output


def test_an_unknown_model_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["worker", "--model", "gpt-17"], env={"PENNY_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert "unknown model 'gpt-17'" in result.output
