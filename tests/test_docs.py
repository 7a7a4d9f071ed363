"""The docs a user reads stay true: docs/RESULTS.md is what scripts/results.py writes from the eval
reports, every relative link in the README and docs/ resolves, and every `penny ...` command the README
shows names a real subcommand with real options. No model is loaded: the commands are looked up in the
click tree, not run."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import click
import pytest

from tests.conftest import REPO

LINKED_DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _results_module() -> ModuleType:
    """scripts/results.py, imported by path (scripts/ is not a package)."""
    name = "penny_scripts_results"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / "results.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look their module up by name
        spec.loader.exec_module(module)
    return sys.modules[name]


def test_results_doc_is_what_the_script_generates() -> None:
    results = _results_module()
    generated = results.render()
    assert "## Natural questions: what users value" in generated  # the reports were found and read
    assert (REPO / "docs" / "RESULTS.md").read_text(encoding="utf-8") == generated, (
        "docs/RESULTS.md is out of date: run `make results`"
    )


def test_results_reads_the_numbers_of_a_report() -> None:
    """One table row and one AUROC line of a report come out in RESULTS.md's tables as they were."""
    results = _results_module()
    report = results.read_report(REPO / "docs" / "eval" / "nodejs-human" / "report.md")
    cascade = next(row for row in report.results if row["config"] == "cascade")
    line = next(
        line
        for line in report.path.read_text(encoding="utf-8").splitlines()
        if line.startswith("| cascade |")
    )
    assert [cascade[key] for key in ("F1", "HasAns F1", "NoAns F1")] == [
        c.strip() for c in line.split("|")[3:6]
    ]
    assert report.questions.startswith("60 questions")
    assert report.aurocs["answerable"] in report.path.read_text(encoding="utf-8")


def test_results_check_flag_reports_a_stale_file(tmp_path: Path) -> None:
    script = [sys.executable, str(REPO / "scripts" / "results.py")]
    out = tmp_path / "RESULTS.md"
    assert subprocess.run([*script, "--out", str(out)], check=True).returncode == 0
    assert subprocess.run([*script, "--check", "--out", str(out)]).returncode == 0
    out.write_text(out.read_text(encoding="utf-8").replace("| cascade |", "| cascade (old) |", 1))
    stale = subprocess.run([*script, "--check", "--out", str(out)], capture_output=True, text=True)
    assert stale.returncode == 1
    assert "out of date" in stale.stderr


@pytest.mark.parametrize("doc", LINKED_DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in _LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor in the same page
        path = target.split("#", 1)[0]
        if not (doc.parent / path).exists():
            broken.append(target)
    assert not broken, f"{doc.relative_to(REPO)} links to missing files: {broken}"


def readme_commands() -> list[list[str]]:
    """Every `penny ...` command in the README, as arguments: each line of a code block (prompt `$ ` or
    none) and each inline code span that starts with `penny ` (optional parts in [brackets] included)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    commands = [
        shlex.split(span.replace("[", " ").replace("]", " "))[1:]
        for span in re.findall(r"`(penny [^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    ]
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            line = line.removeprefix("$ ").strip()
            line = re.sub(r"^(\.venv/bin/)?penny ", "penny ", line)
            if not line.startswith("penny "):
                continue
            while line.endswith("\\") and i + 1 < len(lines):  # continued on the next line
                i += 1
                line = line[:-1] + " " + lines[i].strip()
            line = line.split(" #", 1)[0].split(" | ", 1)[0]
            commands.append(shlex.split(line, comments=False)[1:])
    return commands


def _check(command: list[str]) -> str | None:
    """None when ``command`` names a subcommand of ``penny`` and only options it has, else the problem."""
    from assistant.cli import cli

    node: click.Command = cli
    words = list(command)
    while isinstance(node, click.Group) and words and not words[0].startswith("-"):
        name = words.pop(0)
        child = node.get_command(click.Context(node), name)
        if child is None:
            return f"no command {name!r}"
        node = child
    known = {opt for param in node.params for opt in (*param.opts, *param.secondary_opts)}
    unknown = [w.split("=", 1)[0] for w in words if w.startswith("-") and w.split("=", 1)[0] not in known]
    return f"unknown options {unknown} of {node.name}" if unknown else None


def test_readme_penny_commands_exist() -> None:
    commands = readme_commands()
    assert len(commands) >= 15  # the README's examples were found
    problems = {" ".join(c): problem for c in commands if (problem := _check(c))}
    assert not problems, problems


def test_the_command_check_sees_a_wrong_flag() -> None:
    assert _check(["ingest", "samples/", "--quiet"]) is None
    assert _check(["ingest", "samples/", "--loud"]) is not None
    assert _check(["eval", "nope"]) is not None


def test_settings_doc_is_the_default_settings_table(tmp_path: Path) -> None:
    """docs/SETTINGS.md's table is `penny settings --markdown` with nothing set (no penny.toml or PENNY_*)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", "from assistant.cli import main; main()", "settings", "--markdown"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    doc = (REPO / "docs" / "SETTINGS.md").read_text(encoding="utf-8")
    table = doc[doc.index("| setting |") :]
    assert table == done.stdout, (
        "docs/SETTINGS.md is out of date: replace its table with `penny settings --markdown` run where no "
        "penny.toml or PENNY_* variable is set"
    )
