"""``penny paid serve``: an offline stand-in for the paid tier, an OpenAI-compatible server on this machine.

It lets demos and evals exercise the real escalation path with no network: ``llama_cpp.server`` serving
Qwen2.5-Coder-1.5B, named ``qwen2.5-1.5b`` in its responses so the ledger prices it from the price table.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from assistant.local.registry import ModelError, ModelRegistry
from assistant.settings import get_settings


@click.group()
def paid() -> None:
    """The paid tier: an offline stand-in for demos and evals."""


@paid.command("serve")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--model", "model", default=None, help="Registry name or .gguf path [default: models.reference]."
)
@click.option("--n-ctx", default=4096, show_default=True, type=int)
@click.option("--threads", default=None, type=int, help="llama.cpp threads [default: all cores].")
def serve(port: int, host: str, model: str | None, n_ctx: int, threads: int | None) -> None:
    """Serve the reference model on an OpenAI-compatible /v1 API (replaces this process)."""
    settings = get_settings()
    name = model or settings.models.reference
    try:
        path = ModelRegistry(settings.model_cache_dir).path(name)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    alias = Path(name).stem if name.endswith(".gguf") else name
    threads = threads or settings.models.n_threads or os.cpu_count() or 1
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(path),
        "--model_alias",
        alias,
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(threads),
        # By default llama_cpp.server aborts the running generation when any other request arrives (even
        # GET /v1/models from a health check): a shared paid tier must finish what it started.
        "--interrupt_requests",
        "False",
    ]
    click.echo(f"Paid stand-in {alias} ({path}) on http://{host}:{port}/v1. Point Penny at it with:")
    click.echo(f"  export PENNY_PAID__BASE_URL=http://{host}:{port}/v1")
    click.echo(f"  export PENNY_PAID__MODEL={alias}")
    sys.stdout.flush()
    os.execv(sys.executable, command)  # signals go straight to the server; nothing of ours to clean up
