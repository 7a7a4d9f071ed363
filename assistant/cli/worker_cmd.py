"""``penny worker``: one local-tier worker as a command of its own.

The process the worker pool spawns (``assistant.local.pool.worker``), started by hand: what the container
image's workers run (compose, Kubernetes), where the API reaches them through ``pool.remote_urls``. The model
is a registry name, assembled and verified like everywhere else, or a ``.gguf`` path.
"""

from __future__ import annotations

from pathlib import Path

import click

from assistant.local.registry import ModelError, ModelRegistry
from assistant.settings import get_settings


@click.command()
@click.option("--model", default=None, help="Registry name or .gguf path [default: models.local].")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option(
    "--threads", default=None, type=int, help="llama.cpp threads [default: models.n_threads, else all cores]."
)
@click.option("--n-ctx", default=None, type=int, help="Context window [default: models.n_ctx].")
def worker(model: str | None, host: str, port: int, threads: int | None, n_ctx: int | None) -> None:
    """Serve the local model to API processes: OpenAI-compatible /v1/chat/completions, /healthz, /metrics."""
    from assistant.local.pool import worker as pool_worker

    settings = get_settings()
    name = model or settings.models.local
    try:
        path = ModelRegistry(settings.model_cache_dir).path(name)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    alias = Path(name).stem if name.endswith(".gguf") else name
    argv = ["--model", str(path), "--host", host, "--port", str(port), "--name", alias]
    argv += ["--n-ctx", str(n_ctx or settings.models.n_ctx)]
    threads = threads or settings.models.n_threads
    if threads:
        argv += ["--threads", str(threads)]
    click.echo(f"Penny worker {alias} ({path}) loading; serves on http://{host}:{port} when ready.")
    pool_worker.main(argv)
