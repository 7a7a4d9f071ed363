"""``penny eval run|calibrate``: the commands live in ``eval.cli``, imported only when ``eval`` is used.

``eval`` depends on ``assistant`` (never the reverse at import time), and ``penny --help`` stays fast.
"""

from __future__ import annotations

import click


class _LazyEvalGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return ["calibrate", "run"]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        from eval.cli import eval_group

        return eval_group.get_command(ctx, cmd_name)


@click.group("eval", cls=_LazyEvalGroup)
def eval_cmd() -> None:
    """Compare local, paid and cascade answers on a dataset; calibrate the evaluator."""
