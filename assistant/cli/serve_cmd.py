"""``penny serve``: the HTTP API under uvicorn, one or more worker processes, graceful shutdown."""

from __future__ import annotations

import os

import click

from assistant.settings import Settings, get_settings


def app_from_env():  # type: ignore[no-untyped-def]
    """Factory for uvicorn worker processes: settings come from the environment the parent set."""
    from assistant.api import create_app
    from assistant.service import Penny

    settings = Settings()
    return create_app(settings, Penny(settings, serving=True), auth=settings.server.auth)


def _key_hint(settings: Settings) -> str:
    """Shell text that yields a key, never the key itself: secrets stay out of logs."""
    demo_key = settings.data_dir / "demo.key"
    return f"$(cat {demo_key})" if demo_key.exists() else "$PENNY_API_KEY"


@click.command()
@click.option("--host", default=None, help="Bind address (default from settings: 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (default 8000).")
@click.option("--workers", default=None, type=int, help="HTTP worker processes; each loads its own models.")
@click.option("--no-auth", is_flag=True, help="Development only: accept requests without an API key.")
def serve(host: str | None, port: int | None, workers: int | None, no_auth: bool) -> None:
    """Serve the HTTP API (OpenAI-compatible /v1/chat/completions, /v1/ask, web chat page at /)."""
    import uvicorn

    settings = get_settings()
    host = host or settings.server.host
    port = port or settings.server.port
    workers = workers or settings.server.workers
    auth = settings.server.auth and not no_auth
    if not auth:
        warning = "WARNING: authentication is OFF (--no-auth). Do not expose this server."
        click.secho(warning, fg="red", err=True)
    example = (
        f"  curl -s http://{host}:{port}/v1/chat/completions -H 'content-type: application/json' "
        + (f'-H "authorization: Bearer {_key_hint(settings)}" ' if auth else "")
        + """-d '{"model": "penny", "messages": """
        + """[{"role": "user", "content": "Who conquered England in 1066?"}]}'"""
    )
    if workers > 1:
        os.environ["PENNY_SERVER__AUTH"] = "true" if auth else "false"
        os.environ["PENNY_SERVER__WORKERS"] = str(workers)  # each process's pool sizes itself to its share
        click.echo(f"Penny starting {workers} workers on http://{host}:{port}. Try:\n{example}")
        uvicorn.run(
            "assistant.cli.serve_cmd:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            timeout_graceful_shutdown=settings.server.graceful_shutdown_s,
        )
        return

    from assistant.api import create_app
    from assistant.service import Penny

    penny = Penny(settings, serving=True)  # the service: the local tier runs in the worker pool by default
    app = create_app(settings, penny, auth=auth)

    def announce(_: object) -> None:
        pool = penny.pool
        if pool is None:
            where = "in-process"
        elif pool.KIND == "remote":
            where = f"remote workers at {len(pool.workers())} URL(s)"
        else:
            where = f"worker pool of {len(pool.workers())}, up to {pool.settings.max_workers}"
        ready = f"Penny ready on http://{host}:{port} (local model: {settings.models.local}, {where})."
        click.echo(f"{ready} Try:\n{example}")

    app.on_startup.append(announce)
    uvicorn.run(app, host=host, port=port, timeout_graceful_shutdown=settings.server.graceful_shutdown_s)
