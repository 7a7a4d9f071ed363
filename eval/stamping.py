"""The stamp of a calibration fitted on eval runs: what their ``run.json`` says they were answered with.

A run records its local model (name and sha256), paid model, answer style, prompt version and date
(:func:`eval.answerer.build_answerer`). Runs recorded before a field was, say nothing of it: a registry
model's sha256 is known by its name, anything else stays unknown in the stamp. Runs fitted together must
agree: a calibration fitted on two local models' answers is fitted for neither.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from assistant.calibration import LocalModelId, RunCount, Stamp
from eval.errors import RunError


def stamp_of(run_dirs: Sequence[Path], run_names: Sequence[str], counts: Sequence[int], source: str) -> Stamp:
    """The stamp of a fit on ``counts[i]`` questions of each run in ``run_dirs``, less the features its
    models read (known once fitted: ``Calibration.features_read``). Raises :class:`RunError` when the runs
    were answered with different models, answer styles or prompts."""
    metas = [_meta(d) for d in run_dirs]
    local = _agreed(metas, run_names, "local_model")
    sha256 = _agreed(metas, run_names, "local_model_sha256") or _registry_sha256(local)
    version = _agreed(metas, run_names, "prompt_version")
    dates = [str(m["date"]) for m in metas if m.get("date")]
    return Stamp(
        local_model=None if local is None else LocalModelId(str(local), sha256),
        paid_model=_agreed(metas, run_names, "paid_model"),
        answer_style=_agreed(metas, run_names, "answer_style"),
        prompt_version=None if version is None else int(version),
        features=(),
        data=tuple(RunCount(name, n) for name, n in zip(run_names, counts, strict=True)),
        date=max(dates) if dates else None,
        source=source,
    )


def _meta(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "run.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def _agreed(metas: Sequence[dict[str, Any]], names: Sequence[str], key: str) -> Any:
    """The one value the runs that recorded ``key`` give it; None when none did."""
    values = {name: meta[key] for name, meta in zip(names, metas, strict=True) if meta.get(key) is not None}
    if len(set(map(str, values.values()))) > 1:
        listed = ", ".join(f"{value} ({name})" for name, value in values.items())
        what = key.replace("_", " ")
        raise RunError(f"the runs were answered with different {what}s: {listed}; fit them apart")
    return next(iter(values.values()), None)


def _registry_sha256(name: object) -> str | None:
    from assistant.local.registry import REGISTRY

    spec = REGISTRY.get(str(name)) if name is not None else None
    return None if spec is None else spec.sha256
