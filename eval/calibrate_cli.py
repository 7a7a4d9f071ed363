"""``penny calibrate``: fit the evaluator on a collection's own documents (``--collection``), refit it from
live traffic (``--from-ledger``), print what each calibration in use was fitted for (``--show``), or rebuild
the shipped default from its recipe (``--default``). Added to ``penny`` by :func:`eval.cli.register`.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from assistant.cli.cost_limit import EXIT_COST_LIMIT, parse_max_cost_usd

if TYPE_CHECKING:
    from assistant.settings import Settings


@click.command("calibrate")
@click.option(
    "--collection", default=None, help="Write questions from this collection's chunks and fit on them."
)
@click.option(
    "--questions", type=int, default=300, show_default=True, help="Questions to write (half answerable)."
)
@click.option("--max-cost-usd", default=None, help="Stop before the paid calls could pass this spend.")
@click.option(
    "--from-ledger",
    is_flag=True,
    help="Refit from the ledger's labels: shadow checks and people's ratings (plus synthetic ones).",
)
@click.option(
    "--min-labels",
    type=click.IntRange(min=2),
    default=None,
    help="With --from-ledger: labels a model needs before it is replaced (default cascade.refit_min_labels).",
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
@click.option(
    "--batch",
    is_flag=True,
    help="With --collection: ask the written questions' paid answers as one batch (Batch API prices).",
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option(
    "--show",
    is_flag=True,
    help="Print what each calibration in use was fitted for (its stamp) and what differs from the settings.",
)
@click.option(
    "--default",
    "default_recipe",
    is_flag=True,
    help="Rebuild the shipped default calibration from its stored runs (eval/recipes.py; make calibration).",
)
@click.option("--ablation", is_flag=True, help="With --default: also print what each feature adds.")
def penny_calibrate_command(
    collection: str | None,
    questions: int,
    max_cost_usd: str | None,
    from_ledger: bool,
    min_labels: int | None,
    since: datetime | None,
    seed: int,
    out: Path | None,
    synthetic_gate: bool,
    batch: bool,
    quiet: bool,
    show: bool,
    default_recipe: bool,
    ablation: bool,
) -> None:
    """Fit the evaluator on a collection's own documents (the paid tier writes the questions), or refit it
    from live traffic's labels (shadow checks, people's ratings). The service picks the result up for that
    collection by itself."""
    from assistant.calibration import TooFewLabels, refit_from_ledger
    from assistant.settings import get_settings
    from eval.errors import RunError
    from eval.self_calibration import calibrate_collection, synthetic_labels

    if show or default_recipe:
        if from_ledger or (default_recipe and (show or collection)):
            raise click.UsageError("--show (with or without --collection) and --default go alone")
        if show:
            _show_calibrations(get_settings(), collection)
        else:
            _rebuild_default(out, ablation)
        return
    if not from_ledger and collection is None:
        raise click.UsageError("pass --collection NAME, --from-ledger, --show or --default")
    if questions < 10:
        raise click.BadParameter("at least 10 questions are needed to fit", param_hint="--questions")
    settings = get_settings()
    try:
        if from_ledger:
            synthetic = synthetic_labels(settings, collection) if collection else None
            try:
                refit = refit_from_ledger(
                    settings,
                    collection=collection,
                    since=since,
                    out=out,
                    seed=seed,
                    synthetic=synthetic,
                    min_labels=min_labels,
                )
            except TooFewLabels as exc:
                for line in exc.counts.lines():
                    click.echo(line)
                raise
            for line in refit.lines():
                click.echo(line)
            return
        assert collection is not None
        outcome = calibrate_collection(
            settings,
            collection,
            questions=questions,
            max_cost_micro_usd=parse_max_cost_usd(max_cost_usd),
            seed=seed,
            progress=not quiet,
            out=out,
            synthetic_gate=synthetic_gate,
            batch=batch,
        )
    except (RunError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    for line in outcome.lines():
        click.echo(line)
    if outcome.stopped:
        sys.exit(EXIT_COST_LIMIT)


def _show_calibrations(settings: Settings, collection: str | None) -> None:
    """Each calibration's stamp (the default's, then each collection's own), and what differs now."""
    from assistant.calibration import Calibration, CalibrationError, Calibrations, mismatches, running
    from assistant.calibration.stamp import DEFAULT
    from assistant.ledger import PriceTable
    from assistant.local.registry import ModelRegistry

    try:
        default = Calibration.load(settings.cascade.calibration_file)
    except CalibrationError as exc:
        raise click.ClickException(str(exc)) from exc
    calibrations = Calibrations(default, settings.calibration_dir)
    now = running(
        settings, ModelRegistry(settings.model_cache_dir), PriceTable.load(settings.ledger.prices_file)
    )
    shown = [(DEFAULT, default)] if collection is None else []
    names = calibrations.collections() if collection is None else [collection]
    shown += [(name, calibrations.for_collection(name)) for name in names]
    for name, calibration in shown:
        if name == DEFAULT:
            click.echo(f"default calibration ({settings.cascade.calibration_file or 'bundled'}):")
        elif calibration is default:
            click.echo(f"collection {name}: no calibration of its own (or unreadable): the default's")
            continue
        else:
            click.echo(f"collection {name}:")
        stamp = calibration.stamp
        for line in stamp.lines() if stamp else ["no stamp (a file written before stamps)"]:
            click.echo(f"  {line}")
        found = mismatches(calibration.stamp, now, name)
        click.echo(
            f"  running:        {now.local_model}, paid {now.paid.name if now.paid else 'none'}, "
            f"answer style {now.answer_style}, prompt version {now.prompt_version}"
        )
        if not found:
            click.echo("  fitted for what is running")
        for mismatch in found:
            click.echo(f"  MISMATCH {mismatch.line()}")


def _rebuild_default(out: Path | None, ablation: bool) -> None:
    """Run the default recipe: the shipped calibration fitted again from its stored runs."""
    from eval.errors import RunError
    from eval.recipes import DEFAULT, build

    try:
        outcome = build(DEFAULT, out=out, ablate=ablation, reports=out is None)  # docs: the shipped one's
    except (RunError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    for line in outcome.lines():
        click.echo(line)
