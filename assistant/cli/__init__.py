"""The ``penny`` command line. Each command group lives in its own module and registers here."""

from __future__ import annotations

import click

from assistant.cli.core import ask, ingest, models, serve


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="penny")
def cli() -> None:
    """Penny: answers from your documents with a small local model; pays for a big one only when it must."""


for command in (models, ingest, ask, serve):
    cli.add_command(command)


def main() -> None:
    cli()
