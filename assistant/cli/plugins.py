"""Commands other packages add to ``penny``, the way simonw/llm's plugins do: each entry point in the
``penny.cli`` group names a ``register(cli)`` function that adds its commands to the group. ``eval``
adds ``penny eval`` and ``penny calibrate`` so, and nothing in ``assistant`` imports it.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import click

ENTRY_POINT_GROUP = "penny.cli"


class PluginGroup(click.Group):
    """A group that loads the plugins' commands on its first lookup, not at import: a plugin may import
    ``assistant.cli``'s helpers, and ``penny --help`` lists its commands all the same."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.plugins_loaded = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        self.load_plugins()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self.load_plugins()
        return super().get_command(ctx, cmd_name)

    def load_plugins(self) -> None:
        if self.plugins_loaded:
            return
        self.plugins_loaded = True
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            try:
                register = entry_point.load()
            except Exception as exc:  # a broken plugin loses its own commands, not `penny serve`
                click.echo(
                    f"penny: plugin {entry_point.name} ({entry_point.value}) did not load: {exc}", err=True
                )
                continue
            register(self)
