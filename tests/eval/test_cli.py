"""The eval CLI: plugged into ``penny`` through the ``penny.cli`` entry point, and bad input fails with a
message naming the fix."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from eval.cli import eval_group

MINI = Path(__file__).parents[1] / "data" / "squad2-mini.json"


def test_penny_eval_is_registered_and_lazy() -> None:
    import subprocess
    import sys

    code = "import sys, assistant.cli; assistant.cli.cli(['eval', '--help'], standalone_mode=False); "
    code += "print(any(m in sys.modules for m in ('eval.runs', 'eval.records', 'eval.configs')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "calibrate" in out and "run" in out
    assert out.strip().endswith("False")  # listing the commands imports no run machinery


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "nope.json"], "not found"),
        (["--dataset", str(MINI), "--config", "bogus"], "unknown config 'bogus'"),
        (["--dataset", str(MINI), "--config", "cascade@1.5"], "threshold after @"),
        (["--dataset", str(MINI), "--limit", "0"], "--limit must be positive"),
        (["--dataset", str(MINI), "--max-cost-usd", "lots"], "not an amount in USD"),
        (["--dataset", str(MINI), "--config", "paid"], "set PENNY_PAID__BASE_URL"),
    ],
)
def test_run_rejects_bad_input_before_asking_anything(
    args: list[str],
    message: str,
    settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from assistant.settings import get_settings

    monkeypatch.setenv("PENNY_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    result = CliRunner().invoke(eval_group, ["run", *args, "--out", str(tmp_path / "run")])
    get_settings.cache_clear()
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "run").exists()  # nothing written, nothing asked


def test_penny_eval_and_calibrate_plug_in_through_the_entry_point() -> None:
    from importlib.metadata import entry_points

    from assistant.cli.plugins import ENTRY_POINT_GROUP, PluginGroup

    plugins = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert plugins.get("eval") == "eval.cli:register", f"reinstall (`pip install -e .`): {plugins}"
    bare = PluginGroup("penny")  # none of penny's own commands: what it gets is the plugin's
    result = CliRunner().invoke(bare, ["eval", "--help"])
    assert result.exit_code == 0, result.output
    assert "calibrate" in result.output and "run" in result.output
    assert set(bare.commands) == {"eval", "calibrate"}


def test_a_plugin_that_fails_to_load_loses_its_commands_not_penny(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    import assistant.cli.plugins as plugins
    from assistant.cli.plugins import ENTRY_POINT_GROUP, PluginGroup

    broken = EntryPoint("broken", "no_such_module:register", ENTRY_POINT_GROUP)
    monkeypatch.setattr(plugins, "entry_points", lambda group: [broken])
    group = PluginGroup("penny")
    group.add_command(click.Command("hello", callback=lambda: click.echo("hi")))
    result = CliRunner().invoke(group, ["hello"])
    assert result.exit_code == 0 and result.stdout == "hi\n"
    assert "plugin broken (no_such_module:register) did not load" in result.stderr
