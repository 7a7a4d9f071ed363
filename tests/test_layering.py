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
