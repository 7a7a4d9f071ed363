"""Named calibration recipes: the runs and options a shipped calibration file is fitted with, as code.

``penny calibrate --default`` (``make calibration``) rebuilds ``assistant/data/calibration.json`` from the
runs stored under ``docs/eval/default-calibration/``; a test checks that the shipped file is what the
recipe makes. The fit is deterministic (fixed seeds; the stamp's date is the runs' own), so the same runs
give the same file, up to the last bits of floating point where another BLAS sums in another order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from eval.calibration_outcome import CalibrationOutcome

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Recipe:
    name: str
    runs: tuple[str, ...]  # eval run directories, relative to the repository
    out: str  # the file it makes, relative to the repository
    exclude: tuple[str, ...] = ()  # features no model reads
    seed: int = 0

    @property
    def command(self) -> str:
        """The same fit as an ``eval calibrate`` command line."""
        excluded = "".join(f" --exclude {name}" for name in self.exclude)
        return f"python -m eval calibrate {' '.join(self.runs)}{excluded} --seed {self.seed} --out {self.out}"


DEFAULT = Recipe(
    "default",
    runs=("docs/eval/default-calibration/squad-real", "docs/eval/default-calibration/pydoc-synthetic"),
    out="assistant/data/calibration.json",
    # question_logprob did not earn its place on held-out questions (docs/eval/evaluator-signals.md, ninth
    # section); answer_new_words and degenerate came after the runs were answered (a degenerate answer is
    # judged wrong whatever the models say, features.is_degenerate).
    exclude=("question_logprob", "answer_new_words", "degenerate"),
)

RECIPES = {recipe.name: recipe for recipe in (DEFAULT,)}


def build(
    recipe: Recipe, *, out: Path | None = None, ablate: bool = False, reports: bool = True, trees: bool = True
) -> CalibrationOutcome:
    """Fit ``recipe`` and write its file (to ``out`` instead when given). ``ablate`` also measures what
    each feature adds, ``trees`` compares gradient-boosted trees (both printed, neither in the file);
    ``reports`` False leaves the runs' calibrated reports as they are."""
    from eval.calibrate import calibrate

    def here(path: str) -> Path:  # as the command line names it, from the repository: docs/eval/...
        return Path(os.path.relpath(REPO / path))

    return calibrate(
        [here(run) for run in recipe.runs],
        out=out or here(recipe.out),
        seed=recipe.seed,
        ablate=ablate,
        exclude=recipe.exclude,
        source=f"penny calibrate --default (recipe {recipe.name!r} in eval/recipes.py: {recipe.command})",
        reports=reports,
        trees=trees,
    )
