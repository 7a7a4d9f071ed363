"""The ``penny`` command line. Each command group lives in its own module and registers here; plugins
(``eval``'s ``penny eval`` and ``penny calibrate``) add theirs through the ``penny.cli`` entry point
(:mod:`assistant.cli.plugins`)."""

from __future__ import annotations

import click

from assistant.cli.alert_cmds import alerts
from assistant.cli.core import ask, models
from assistant.cli.index_cmds import collections, ingest
from assistant.cli.key_cmds import keys
from assistant.cli.ledger_cmds import COMMANDS as LEDGER_COMMANDS
from assistant.cli.limits_cmds import limits
from assistant.cli.paid_cmds import paid
from assistant.cli.plugins import PluginGroup
from assistant.cli.serve_cmd import serve
from assistant.cli.settings_cmd import settings_cmd
from assistant.cli.team_cmds import teams
from assistant.cli.worker_cmd import worker


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="penny")
def cli() -> None:
    """Penny: answers from your documents with a small local model; pays for a big one only when it must."""


for command in (
    models,
    ingest,
    collections,
    ask,
    serve,
    worker,
    paid,
    settings_cmd,
    *LEDGER_COMMANDS,
    keys,
    limits,
    teams,
    alerts,
):
    cli.add_command(command)


def main() -> None:
    cli()
