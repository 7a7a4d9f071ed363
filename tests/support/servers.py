"""Real servers on free loopback ports for tests and benchmarks: an ASGI app on uvicorn in a background
thread, and the processes a deployment runs (`penny serve`, the `penny` CLI, Chroma's server, pool
workers)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(app: Any, startup_timeout_s: float = 120.0) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def wait_until_ready(url: str, process: subprocess.Popen[Any], timeout_s: float) -> bool:
    """Poll ``url`` until it answers 200; False if ``process`` exits or the time runs out first."""
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    return False


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)


# -- real processes: `penny serve`, the CLI, Chroma's server, pool workers -------------------------------

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent.parent


def penny_env(data_dir: Path, model_cache: Path, **settings: str) -> dict[str, str]:
    """The environment of a `penny` subprocess: no penny.toml, its data under ``data_dir``, the tiny model,
    this checkout's code (whichever checkout the venv was installed from), then ``settings`` (PENNY_* names
    without the prefix, e.g. ``LEDGER__DB_URL``)."""
    return {
        **os.environ,
        "PENNY_CONFIG": str(data_dir.parent / "absent.toml"),
        "PENNY_DATA_DIR": str(data_dir),
        "PENNY_MODELS__LOCAL": "smollm2-135m",
        "PENNY_MODELS__CACHE_DIR": str(model_cache),
        "PENNY_MODELS__N_CTX": "2048",
        "PENNY_MODELS__N_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        **{f"PENNY_{name}": value for name, value in settings.items()},
    }


def penny_cli(env: dict[str, str], *args: str) -> str:
    """Run ``penny ARGS`` to completion; its stdout (CalledProcessError, with stderr, if it fails)."""
    done = subprocess.run([str(BIN / "penny"), *args], env=env, check=True, capture_output=True, text=True)
    return done.stdout


def spawn(command: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``command`` with stdout and stderr appended to ``log`` (read it when something fails)."""
    with log.open("ab") as out:
        return subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def ready_or_raise(url: str, process: subprocess.Popen[Any], log: Path, timeout_s: float = 240) -> None:
    """Wait until ``url`` answers 200; else raise with the end of the process's log."""
    if not wait_until_ready(url, process, timeout_s):
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(f"{url} not ready (exit code {process.poll()}); {log}:\n{tail}")


def stop(process: subprocess.Popen[Any], timeout_s: float = 60) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it has not exited within ``timeout_s``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


@contextmanager
def chroma_server(path: Path) -> Iterator[str]:
    """A real ``chroma run`` server persisting under ``path``; its URL."""
    port = free_port()
    log = path.with_suffix(".log")
    command = [str(BIN / "chroma"), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)]
    process = spawn(command, log)
    url = f"http://127.0.0.1:{port}"
    try:
        ready_or_raise(f"{url}/api/v2/heartbeat", process, log, timeout_s=60)
        yield url
    finally:
        stop(process)


def worker_command(model: Path, *, name: str = "smollm2-135m", n_ctx: int = 2048) -> list[str]:
    """A pool worker (``python -m assistant.local.pool.worker``) with one llama.cpp thread, as a pod runs
    it; add ``--port P``."""
    return [
        *(sys.executable, "-m", "assistant.local.pool.worker", "--model", str(model)),
        *("--threads", "1", "--n-ctx", str(n_ctx), "--name", name),
    ]


def released_together(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run each call on a thread of its own, all released at once by a barrier; their results, in order.
    The first exception a call raised is raised here once all have ended."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results
