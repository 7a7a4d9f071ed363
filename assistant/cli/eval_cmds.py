"""``penny eval run|calibrate``: the commands live in ``eval.cli``, imported only when ``eval`` is used.

``eval`` depends on ``assistant`` (never the reverse at import time), and ``penny --help`` stays fast.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click


class _LazyEvalGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return ["calibrate", "check-questions", "run"]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        from eval.cli import eval_group

        return eval_group.get_command(ctx, cmd_name)


@click.group("eval", cls=_LazyEvalGroup)
def eval_cmd() -> None:
    """Compare local, paid and cascade answers on a dataset; calibrate the evaluator."""


@click.command("calibrate")
@click.option(
    "--collection", default=None, help="Write questions from this collection's chunks and fit on them."
)
@click.option(
    "--questions", type=int, default=300, show_default=True, help="Questions to write (half answerable)."
)
@click.option("--max-cost-usd", default=None, help="Stop before the paid calls could pass this spend.")
@click.option(
    "--from-ledger", is_flag=True, help="Refit from the ledger's shadow labels (plus synthetic ones)."
)
@click.option(
    "--since", type=click.DateTime(), default=None, help="With --from-ledger: labels since this date."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Default: where the service looks."
)
@click.option(
    "--synthetic-gate",
    is_flag=True,
    help="Also fit P(answerable) on the synthetic probes (default: keep the default calibration's gate).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def calibrate_cmd(
    collection: str | None,
    questions: int,
    max_cost_usd: str | None,
    from_ledger: bool,
    since: datetime | None,
    seed: int,
    out: Path | None,
    synthetic_gate: bool,
    quiet: bool,
) -> None:
    """Fit the evaluator on a collection's own documents (the paid tier writes the questions), or refit it
    from live traffic's shadow labels. The service picks the result up for that collection by itself."""
    from assistant.calibration import refit_from_ledger
    from assistant.settings import get_settings
    from eval.cli import EXIT_COST_LIMIT, _micro_usd
    from eval.errors import RunError
    from eval.self_calibration import calibrate_collection, synthetic_labels

    if not from_ledger and collection is None:
        raise click.UsageError("pass --collection NAME, or --from-ledger")
    if questions < 10:
        raise click.BadParameter("at least 10 questions are needed to fit", param_hint="--questions")
    settings = get_settings()
    try:
        if from_ledger:
            synthetic = synthetic_labels(settings, collection) if collection else None
            refit = refit_from_ledger(
                settings, collection=collection, since=since, out=out, seed=seed, synthetic=synthetic
            )
            for line in refit.lines():
                click.echo(line)
            return
        assert collection is not None
        outcome = calibrate_collection(
            settings,
            collection,
            questions=questions,
            max_cost_micro_usd=_micro_usd(max_cost_usd),
            seed=seed,
            progress=not quiet,
            out=out,
            synthetic_gate=synthetic_gate,
        )
    except (RunError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    for line in outcome.lines():
        click.echo(line)
    if outcome.stopped:
        sys.exit(EXIT_COST_LIMIT)
