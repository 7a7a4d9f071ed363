"""Find the files to ingest under the given paths, filtered by shell-style globs."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from index.loaders import LOADERS


@dataclass
class Discovered:
    files: list[Path]
    failed: dict[str, str]
    roots: list[Path]


def _matches(relative: str, patterns: Sequence[str]) -> bool:
    """True if a pattern matches the relative path or any trailing part of it (``drafts/*`` at any depth)."""
    parts = relative.split("/")
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(tail, pattern) for pattern in patterns for tail in tails)


def discover(paths: Iterable[Path], include: Sequence[str] = (), exclude: Sequence[str] = ()) -> Discovered:
    """Supported files under ``paths`` (recursively), filtered by shell-style globs.

    A glob matches a file's path relative to the folder it was found under, or any trailing part of that
    path (so ``*.md`` and ``drafts/*`` match at any depth); ``*`` crosses folders, so ``--exclude
    'drafts/*'`` drops everything below any ``drafts/`` folder. Broken symbolic links
    are reported as failures rather than silently skipped.
    """
    files: dict[Path, None] = {}
    failed: dict[str, str] = {}
    roots: list[Path] = []
    for given in paths:
        root = Path(given).absolute()
        roots.append(root)
        if root.is_dir():
            candidates = sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink())
            for path in candidates:
                relative = path.relative_to(root).as_posix()
                if path.suffix.lower() not in LOADERS:
                    continue
                if include and not _matches(relative, include):
                    continue
                if exclude and _matches(relative, exclude):
                    continue
                if not path.exists():
                    failed[str(path)] = "cannot read: broken symbolic link"
                    continue
                files[path.resolve()] = None
        elif root.exists() or root.is_symlink():
            if exclude and _matches(root.name, exclude):
                continue
            if not root.exists():
                failed[str(root)] = "cannot read: broken symbolic link"
            elif root.suffix.lower() not in LOADERS:
                failed[str(root)] = f"unsupported file type {root.suffix or '(none)'}"
            else:
                files[root.resolve()] = None
        else:
            failed[str(root)] = "cannot read: no such file or directory"
    return Discovered(files=list(files), failed=failed, roots=roots)
