"""Index commands: ``penny ingest`` and ``penny collections list|delete``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from assistant.settings import get_settings


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--collection", "-c", default=None, help="Collection name (default from settings).")
@click.option(
    "--include",
    "-i",
    multiple=True,
    metavar="GLOB",
    help="Only files whose relative path or name matches (repeatable), e.g. '*.md'.",
)
@click.option(
    "--exclude",
    "-x",
    multiple=True,
    metavar="GLOB",
    help="Skip files whose relative path or name matches (repeatable), e.g. 'drafts/*'.",
)
@click.option("--sync", is_flag=True, help="Also delete chunks of files that vanished under PATHS.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; only failures and the summary.")
def ingest(
    paths: tuple[Path, ...],
    collection: str | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    sync: bool,
    quiet: bool,
) -> None:
    """Ingest files or folders (txt, md, html, pdf, docx) into a collection.

    Unchanged files are skipped by content hash; changed files have their old chunks replaced. Exit code
    1 if any file failed (each failure is printed with its reason; the rest of the run completes). The
    run's measured seconds are priced at the instance price and recorded in the ledger for the collection
    (`penny usage --by collection`).
    """
    from assistant.ledger.prices import format_usd
    from assistant.service import Penny

    penny = Penny(get_settings())
    summary, cost = penny.ingest(
        paths, collection, include=include, exclude=exclude, sync=sync, progress=not quiet
    )
    for path, reason in summary.failed.items():
        click.echo(f"failed: {path}: {reason}", err=True)
    click.echo(summary.line())
    click.echo(
        f"ingest cost {format_usd(cost.micro_usd)} ({cost.seconds:.1f}s at the instance price), "
        f"recorded for collection {cost.collection}"
    )
    sys.exit(0 if summary.ok else 1)


@click.group()
def collections() -> None:
    """List, assign to a team, or delete collections."""


@collections.command("list")
def collections_list() -> None:
    """Name, chunk count and who may read every collection."""
    from assistant.cli.ledger_cmds import operator_ledger
    from assistant.service import Penny
    from index.store import list_collection_names

    settings = get_settings()
    client = Penny(settings).chroma
    owners = operator_ledger().collection_owners()
    names = list_collection_names(client)
    click.echo(f"{'NAME':<30} {'CHUNKS':>8}  READ BY")
    for name in names:
        if name in owners:
            readers = f"team {owners[name]}"
        elif name == settings.index.collection:
            readers = "every key (default collection, no team)"
        else:
            readers = "nobody yet: penny collections assign NAME --team T"
        click.echo(f"{name:<30} {client.get_collection(name, embedding_function=None).count():>8}  {readers}")


@collections.command("assign")
@click.argument("name")
@click.option("--team", required=True, help="The team that owns the collection.")
def collections_assign(name: str, team: str) -> None:
    """Give collection NAME to TEAM: only its members' keys may read it from now on."""
    from assistant.cli.team_cmds import assign

    assign(name, team)


@collections.command("unassign")
@click.argument("name")
def collections_unassign(name: str) -> None:
    """Take NAME from its team: only the operator reads it then (the default collection: every key)."""
    from assistant.cli.team_cmds import unassign

    unassign(name)


@collections.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def collections_delete(name: str, yes: bool) -> None:
    """Delete collection NAME and all its chunks."""
    from assistant.service import Penny
    from index.store import CollectionNotFound, get_collection

    penny = Penny(get_settings())
    client = penny.chroma
    try:
        collection = get_collection(client, name, create=False)
    except CollectionNotFound as exc:
        raise click.ClickException(str(exc)) from exc
    count = collection.count()
    if not yes:
        click.confirm(f"Delete collection {name!r} ({count} chunks)?", abort=True)
    client.delete_collection(name)
    penny.bm25_store(collection).remove()
    penny.sentence_store(collection).remove()
    click.echo(f"deleted collection {name} ({count} chunks)")
