"""Core commands: models, ask, serve."""

from __future__ import annotations

import json
from pathlib import Path

import click

from assistant.local.registry import REGISTRY, ModelError, ModelRegistry
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
@click.argument("question", required=False)
@click.option("--collection", "-c", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
@click.option(
    "--mode",
    type=click.Choice(["cascade", "local", "paid"]),
    default="cascade",
    show_default=True,
    help="cascade: escalate only when needed; local: never pay; paid: always ask the paid tier.",
)
@click.option(
    "--threshold", type=click.FloatRange(0.0, 1.0), default=None, help="Escalate below this P(correct)."
)
@click.option(
    "--explain",
    is_flag=True,
    help="Print the evaluator's features, its three probabilities, the action and its expected cost.",
)
@click.option(
    "--batch",
    "batch_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help='JSONL of {"question", "collection"?, "id"?}: answer each locally first, send the escalations '
    "as one batch to the paid tier's Batch API (batch prices; waits for it), print JSONL answers.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="--batch: write here."
)
def ask(
    question: str | None,
    collection: str | None,
    as_json: bool,
    mode: str,
    threshold: float | None,
    explain: bool,
    batch_file: Path | None,
    out: Path | None,
) -> None:
    """Answer QUESTION from the indexed documents (or each question of --batch FILE)."""
    from assistant.calibration import CalibrationError
    from assistant.service import Penny

    if (question is None) == (batch_file is None):
        raise click.UsageError("give a QUESTION or --batch FILE (one of them)")
    if batch_file is not None:
        from assistant.cli.batch_cmd import ask_batch

        with click.open_file(str(out or "-"), "w", encoding="utf-8") as sink:
            asked, escalated, cost = ask_batch(batch_file, sink, threshold)
        click.echo(f"{asked} questions, {escalated} escalated in one batch, cost ${cost / 1e6:.6f}", err=True)
        return
    assert question is not None
    try:
        penny = Penny(get_settings())
        penny.warm_up()  # load the models first, as the server does: the answer's cost is its own
        answer = penny.ask(question, collection, mode=mode, threshold=threshold)
    except (ModelError, CalibrationError) as exc:
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
    if explain:
        click.echo("\nfeatures:")
        for name, value in answer.features.items():
            click.echo(f"  {name:<18} {value:9.4f}")

        def probability(value: float | None) -> str:
            return "-" if value is None else f"{value:.3f}"

        served = answer.tier + (" (escalated)" if answer.escalated else "")
        served += " (degraded)" if answer.degraded else ""
        served += " (low confidence)" if answer.low_confidence else ""
        click.echo(f"P(answerable):       {probability(answer.answerable)}")
        click.echo(f"P(local correct):    {probability(answer.confidence)}")
        source = f"  ({answer.paid_helps_source})" if answer.paid_helps_source else ""
        click.echo(f"P(paid helps):       {probability(answer.paid_helps)}{source}")
        if answer.expected_loss_usd:
            losses = "  ".join(f"{a} ${v:.5f}" for a, v in answer.expected_loss_usd.items())
            click.echo(f"expected loss:       {losses}")
        click.echo(
            f"action:              {answer.action or '-'}  expected cost ${answer.expected_cost_usd:.6f}"
        )
        click.echo(f"served:              {served}")
        click.echo(f"reason:              {answer.reason}")
        click.echo(f"cost:                {answer.cost_micro_usd} micro-USD")
        full = "  ".join(f"{part} ${usd:.6f}" for part, usd in answer.full_cost_usd().items())
        click.echo(f"full cost:           {full}")
