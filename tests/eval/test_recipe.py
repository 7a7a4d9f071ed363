"""The shipped default calibration is what its recipe makes from the stored runs (``make calibration``),
and ``penny calibrate --show`` prints what each calibration was fitted for and what differs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from assistant.calibration import Calibration
from eval.calibrate_cli import penny_calibrate_command
from eval.recipes import DEFAULT, REPO, build


def close(made: Any, shipped: Any, where: str = "") -> list[str]:
    """Where two parsed calibration files differ; floats to 1e-6 relative (bit-identical on one machine;
    another BLAS may sum in another order)."""
    if isinstance(made, dict) and isinstance(shipped, dict):
        keys = set(made) | set(shipped)
        return [d for k in sorted(keys) for d in close(made.get(k), shipped.get(k), f"{where}.{k}")]
    if isinstance(made, list) and isinstance(shipped, list) and len(made) == len(shipped):
        pairs = enumerate(zip(made, shipped, strict=True))
        return [d for i, (a, b) in pairs for d in close(a, b, f"{where}[{i}]")]
    if isinstance(made, float) and isinstance(shipped, float):
        same = made == pytest.approx(shipped, rel=1e-6, abs=1e-12)
        return [] if same else [f"{where}: {made} != {shipped}"]
    return [] if made == shipped else [f"{where}: {made!r} != {shipped!r}"]


def test_the_shipped_calibration_is_what_the_default_recipe_makes(tmp_path: Path) -> None:
    # Without the trees comparison and the runs' reports: printed or written beside, never in the file.
    build(DEFAULT, out=tmp_path / "calibration.json", reports=False, trees=False)
    made = json.loads((tmp_path / "calibration.json").read_text())
    shipped = json.loads((REPO / DEFAULT.out).read_text())
    assert close(made, shipped) == []
    assert made["stamp"]["date"] == "2026-12-04"  # the runs', not today's


def test_the_recipe_is_the_command_it_names() -> None:
    assert DEFAULT.out == "assistant/data/calibration.json"
    assert DEFAULT.command.startswith("python -m eval calibrate docs/eval/default-calibration/squad-real ")
    assert "--exclude question_logprob" in DEFAULT.command
    assert all((REPO / run / "calls.jsonl").exists() for run in DEFAULT.runs)


def test_show_prints_each_stamp_and_what_differs_now(settings, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import assistant.settings

    monkeypatch.setattr(assistant.settings, "get_settings", lambda: settings)  # local tier: smollm2-135m
    shipped = Calibration.load()
    shipped.save(settings.calibration_dir / "docs.json")
    result = CliRunner().invoke(penny_calibrate_command, ["--show"])
    assert result.exit_code == 0, result.output
    assert "default calibration (bundled):" in result.output and "collection docs:" in result.output
    assert "local model:    qwen2.5-0.5b (sha256 1d9614638d18…)" in result.output
    assert "data:           squad-real (240 questions), pydoc-synthetic (120 questions)" in result.output
    assert result.output.count("MISMATCH local_model: fitted for qwen2.5-0.5b") == 2
    assert "`penny calibrate --collection docs`" in result.output
    one = CliRunner().invoke(penny_calibrate_command, ["--show", "--collection", "other"])
    assert "collection other: no calibration of its own" in one.output
    both = CliRunner().invoke(penny_calibrate_command, ["--show", "--default"])
    assert both.exit_code == 2 and "go alone" in both.output
