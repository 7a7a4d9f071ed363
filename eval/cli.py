"""``python -m eval run|calibrate`` and ``penny eval run|calibrate``: one click group, two entry points.
:func:`register` adds it, and ``penny calibrate``, to ``penny`` (entry point group ``penny.cli``).

Heavy imports (torch, chromadb, llama.cpp, matplotlib, scikit-learn) happen inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from assistant.cli.cost_limit import EXIT_COST_LIMIT, parse_max_cost_usd
from eval.calibrate_cli import penny_calibrate_command

if TYPE_CHECKING:
    from assistant.calibration import Calibration
    from assistant.settings import Settings
    from eval.answerer import CascadeAnswerer

DEFAULT_CONFIGS = ("local", "paid", "cascade", "sweep", "frontier")


@click.group("eval")
def eval_group() -> None:
    """Compare local, paid and cascade answers on a dataset; calibrate the evaluator from a run."""


@eval_group.command("run")
@click.option(
    "--dataset",
    "dataset_path",
    required=True,
    type=click.Path(path_type=Path),
    help="SQuAD 2.0 .json or .jsonl with {question, answers[], id, context?}.",
)
@click.option("--limit", type=int, default=None, help="Ask N questions (stratified HasAns/NoAns sample).")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampling seed.")
@click.option(
    "--config",
    "configs",
    multiple=True,
    help="local, paid, cascade, cascade@T, sweep (repeatable). Default: local paid cascade sweep.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Run directory (re-run with the same one to resume). Default: <data_dir>/eval/<dataset>-n<N>-s<S>",
)
@click.option("--max-cost-usd", default=None, help="Stop before a call could push the run past this spend.")
@click.option(
    "--collection",
    default=None,
    help="Answer from this existing collection (JSONL without contexts). Default: eval-<dataset>.",
)
@click.option(
    "--calibration",
    type=click.Choice(["shipped", "synthetic"]),
    default="shipped",
    show_default=True,
    help="synthetic: fit the evaluator on questions the paid tier writes from the collection, then "
    "score the dataset's real questions with it (no real label is used to fit).",
)
@click.option(
    "--synthetic-questions", type=int, default=300, show_default=True, help="With --calibration synthetic."
)
@click.option(
    "--paid-from",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="An earlier run directory: reuse its paid answer wherever a question retrieves the same passages.",
)
@click.option(
    "--batch",
    is_flag=True,
    help="Ask every question locally first, then send all paid calls as one batch to the paid tier's "
    "Batch API (batch prices, answers within its 24 h window; the command waits for them).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def run_command(
    dataset_path: Path,
    limit: int | None,
    seed: int,
    configs: tuple[str, ...],
    out_dir: Path | None,
    max_cost_usd: str | None,
    collection: str | None,
    calibration: str,
    synthetic_questions: int,
    paid_from: Path | None,
    batch: bool,
    quiet: bool,
) -> None:
    """Ask every question once per tier and write results.jsonl, report.md and frontier.png."""
    from assistant.settings import get_settings
    from eval.configs import parse_configs
    from eval.datasets import DatasetError, load_dataset
    from eval.errors import RunError
    from eval.records import load_records
    from eval.report import write_report
    from eval.runs import EvalRun

    settings = get_settings()
    max_cost_micro_usd = parse_max_cost_usd(max_cost_usd)
    try:
        dataset = load_dataset(dataset_path)
        questions = dataset.sample(limit, seed).questions
        from eval.answerer import build_answerer

        answerer, meta = build_answerer(
            settings, dataset, collection, configs or DEFAULT_CONFIGS, batch=batch
        )
        parsed = parse_configs(configs or DEFAULT_CONFIGS)
        out = out_dir or settings.data_dir / "eval" / f"{dataset.name}-n{len(questions)}-s{seed}"
        meta |= {
            "dataset": str(dataset_path),
            "limit": limit,
            "seed": seed,
            "default_rule": answerer.policy.rule,
        }
        synthetic = None
        if calibration == "synthetic":
            synthetic = _synthetic_calibration(
                settings, answerer, meta, out, synthetic_questions, max_cost_micro_usd, seed, quiet
            )
        outcome = EvalRun(
            questions,
            answerer,
            out,
            parsed,
            max_cost_micro_usd=max_cost_micro_usd,
            progress=not quiet,
            meta=meta,
            paid_from=load_records(paid_from / "calls.jsonl") if paid_from else (),
            batch=batch,
        ).run()
    except (DatasetError, RunError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"{len(outcome.records)}/{len(questions)} questions done ({outcome.asked} asked now), "
        f"spent ${outcome.spent_micro_usd / 1e6:.6f}; results: {outcome.out_dir / 'results.jsonl'}"
    )
    records = outcome.records
    if records and synthetic is not None:
        from eval.labelled_runs import judged_by, refresh_features
        from eval.synthetic_report import write_synthetic_report

        # Every question judged by the synthetic fit, including those a resumed run answered before
        # (whose records may predate a feature: it is computed from the stored answer).
        records = judged_by(refresh_features(records, meta["collection"]), synthetic)
        path, comparisons = write_synthetic_report(outcome.out_dir, records, synthetic, meta, seed=seed)
        for c in comparisons:
            ratio = "–" if c.ratio is None else f"{100 * c.ratio:.0f} %"
            click.echo(
                f"{c.name}: AUROC on the real questions {c.auroc_synthetic or 0:.3f} (synthetic fit) vs "
                f"{c.auroc_real_oof or 0:.3f} (real labels, out of fold): {ratio}"
            )
        click.echo(f"synthetic calibration report: {path}")
    if records:
        report, frontier = write_report(outcome.out_dir, records, parsed, meta)
        click.echo(f"report: {report}" + (f", frontier: {frontier}" if frontier else ""))
    if outcome.stopped:
        click.echo(f"{outcome.stopped}; raise --max-cost-usd and re-run the same command to go on", err=True)
        sys.exit(EXIT_COST_LIMIT)


def _synthetic_calibration(
    settings: Settings,
    answerer: CascadeAnswerer,
    meta: dict[str, Any],
    out: Path,
    questions: int,
    max_cost_micro_usd: int | None,
    seed: int,
    quiet: bool,
) -> Calibration:
    """Fit on questions written from the run's collection, and judge the run's answers with that fit."""
    from assistant.answering.judge.evaluator import Evaluator
    from assistant.calibration import Calibration
    from eval.self_calibration import calibrate_collection

    fitted = calibrate_collection(
        settings,
        meta["collection"],
        questions=questions,
        max_cost_micro_usd=max_cost_micro_usd,
        seed=seed,
        progress=not quiet,
        out=out / "synthetic-calibration.json",
        synthetic_gate=True,  # measure all three decisions as fitted on synthetic questions
    )
    for line in fitted.lines():
        click.echo(line)
    if fitted.stopped or fitted.path is None:
        sys.exit(EXIT_COST_LIMIT)
    calibration = Calibration.load(fitted.path)
    answerer.cascade.evaluator = Evaluator(calibration, answerer.cascade.evaluator.embedder)
    meta["calibration_file"] = f"{fitted.path} (synthetic, {len(fitted.generation.questions)} questions)"
    meta["synthetic_spent_micro_usd"] = fitted.spent_micro_usd
    return calibration


@eval_group.command("calibrate")
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Calibration file to write. Default: <first run dir>/calibration.json.",
)
@click.option("--test-fraction", type=float, default=0.3, show_default=True, help="Held-out share for AUROC.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--cost-cap",
    type=float,
    default=0.25,
    show_default=True,
    help="Target cost: at most this share of paid-only's.",
)
@click.option(
    "--ablation", is_flag=True, help="Also print the out-of-fold AUROC each feature adds to each model."
)
@click.option(
    "--refresh-features",
    is_flag=True,
    help="Compute features the run lacks (added since it ran) from its stored answers, without generating.",
)
@click.option(
    "--exclude",
    "exclude",
    multiple=True,
    metavar="FEATURE",
    help="Leave this feature out of every model (repeatable): a signal not earning its place, or an A/B.",
)
def calibrate_command(
    results: tuple[Path, ...],
    out: Path | None,
    test_fraction: float,
    seed: int,
    cost_cap: float,
    ablation: bool,
    refresh_features: bool,
    exclude: tuple[str, ...],
) -> None:
    """Fit the evaluator's three models on RESULTS (run directories or their results.jsonl) and pick the
    price of a wrong answer. Several runs are fitted together as distinct distributions: a feature whose
    sign differs between them is left out, and AUROC is reported per run."""
    from eval.calibrate import calibrate
    from eval.errors import RunError

    try:
        outcome = calibrate(
            results,
            out=out,
            test_fraction=test_fraction,
            seed=seed,
            ablate=ablation,
            refresh=refresh_features,
            cost_cap=cost_cap,
            exclude=exclude,
        )
    except (RunError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    for line in outcome.lines():
        click.echo(line)


@eval_group.command("check-questions")
@click.argument("question_set", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--docs",
    "docs_root",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The folder the questions' `source` paths are relative to.",
)
def check_questions_command(question_set: Path, docs_root: Path) -> None:
    """Prove a natural-question set against its documents: every key fact and evidence sentence occurs in
    the source it names, no question's own words hold its key facts, and a third is unanswerable."""
    from collections import Counter

    from eval.question_sets import QuestionSetError, check_question_set, load_question_set

    try:
        questions = load_question_set(question_set)
    except QuestionSetError as exc:
        raise click.ClickException(str(exc)) from exc
    problems = check_question_set(questions, docs_root)
    for problem in problems:
        click.echo(problem)
    kinds = Counter(q.kind for q in questions)
    click.echo(
        f"{len(questions)} questions ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}): "
        + (f"{len(problems)} problems" if problems else "every key fact and evidence sentence found")
    )
    if problems:
        sys.exit(1)


def register(cli: click.Group) -> None:
    """The ``penny.cli`` entry point: ``penny eval run|calibrate`` (this group, under ``penny``'s own
    help line) and ``penny calibrate``, which runs eval runs to fit on a collection."""
    cli.add_command(
        click.Group(
            "eval",
            commands=eval_group.commands,
            help="Compare local, paid and cascade answers on a dataset; calibrate the evaluator.",
        )
    )
    cli.add_command(penny_calibrate_command)
