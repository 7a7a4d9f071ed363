"""``eval`` builds on ``assistant``, never the reverse: no module under ``assistant/`` imports ``eval``,
not at the top, not inside a function, not under ``TYPE_CHECKING``, not through ``importlib``. The
``penny`` commands eval adds come in through the ``penny.cli`` entry point instead."""

from __future__ import annotations

import ast

from tests.conftest import REPO


def _is_eval(module: object) -> bool:
    return isinstance(module, str) and (module == "eval" or module.startswith("eval."))


def eval_import_lines(source: str) -> list[int]:
    """The line of each import of ``eval`` in ``source``, wherever in the module it is."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            hit = any(_is_eval(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            hit = node.level == 0 and _is_eval(node.module)
        elif isinstance(node, ast.Call):  # importlib.import_module("eval.x"), __import__("eval")
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0] if node.args else None
            hit = name in ("import_module", "__import__") and isinstance(first, ast.Constant)
            hit = hit and _is_eval(first.value)  # type: ignore[union-attr]
        else:
            hit = False
        if hit:
            lines.append(node.lineno)
    return lines


def test_nothing_in_assistant_imports_eval() -> None:
    modules = sorted((REPO / "assistant").rglob("*.py"))
    assert len(modules) > 50  # the walk found the package
    found = [
        f"{path.relative_to(REPO)}:{line}"
        for path in modules
        for line in eval_import_lines(path.read_text(encoding="utf-8"))
    ]
    assert not found, f"assistant/ must not import eval (plug in through `penny.cli` instead): {found}"


def test_the_check_sees_imports_inside_functions_and_through_importlib() -> None:
    source = (
        "import evaluate\n"
        "from evaluation import x\n"
        "def f():\n"
        "    from eval.cli import register\n"
        "    import os, eval\n"
        "    import importlib\n"
        "    return importlib.import_module('eval.runs'), __import__('eval'), eval('1')\n"
    )
    assert eval_import_lines(source) == [4, 5, 7, 7]


def imported_modules(source: str) -> set[str]:
    """Every absolute module ``source`` imports, wherever in the module the import is."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


ANSWERING = "assistant.answering"
# Each part of answering and the parts of it that it may import: the flow at the top builds on the judge,
# the judge reads the prompt's answer format, and everything reads the two leaves.
_MAY_IMPORT = {
    "judge": ("judge", "prompt", "question", "text"),
    "prompt": ("prompt", "question", "text"),
    "question": (),
    "text": (),
}


def _part(module: str) -> str:
    return module.removeprefix(ANSWERING + ".").split(".")[0]


def test_the_judge_and_the_local_prompt_never_import_the_flow() -> None:
    package = REPO / "assistant" / "answering"
    breaches = []
    for path in sorted(package.rglob("*.py")):
        part = path.relative_to(package).parts[0].removesuffix(".py")
        if part not in _MAY_IMPORT:
            continue  # the flow may import any part
        for module in imported_modules(path.read_text(encoding="utf-8")):
            if module.startswith(ANSWERING + ".") and _part(module) not in _MAY_IMPORT[part]:
                breaches.append(f"{path.relative_to(REPO)} imports {module}")
    assert len(list(package.rglob("*.py"))) > 20  # the walk found the package
    assert not breaches, breaches


def test_the_part_check_reads_nested_imports_and_names_the_part() -> None:
    nested = "def f():\n    from assistant.answering.cascade import Cascade\n"
    source = nested + "import assistant.answering.text\n"
    modules = imported_modules(source)
    assert modules == {"assistant.answering.cascade", "assistant.answering.text"}
    assert sorted(_part(m) for m in modules) == ["cascade", "text"]
    assert "cascade" not in _MAY_IMPORT["judge"]
