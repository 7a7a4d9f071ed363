"""The host's pip configuration, handed to the image build: pip there reaches the index as pip here does.

    python3 deploy/container/pip_context.py OUT_DIR

Reads the configuration pip uses on this host (``pip config list``: its files and the ``PIP_*`` variables) and
writes ``OUT_DIR/pip.conf`` and ``OUT_DIR/pip-ca.crt`` (the CA bundle pip trusts: its ``cert``, else the
system's). The build mounts both into each pip step as secrets (deploy/container/Containerfile), so they are
never written to a layer: an index URL may carry credentials. Prints the host paths the configuration names
(``find-links`` directories, ``file://`` indexes, constraint files), one per line: the build mounts each
read-only at the same path.
"""

from __future__ import annotations

import ast
import configparser
import shutil
import ssl
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse

CA_IN_BUILD = "/etc/ssl/certs/pip-ca.crt"  # where the Containerfile mounts the pip-ca.crt secret
INDEX_KEYS = {"index-url", "extra-index-url"}


def pip_config() -> dict[tuple[str, str], str]:
    """(section, option) -> value, the environment's ``PIP_*`` over the files' values, as pip applies them."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    files: dict[tuple[str, str], str] = {}
    env: dict[tuple[str, str], str] = {}
    for line in listed.splitlines():
        key, sep, raw = line.partition("=")
        if not sep:
            continue
        section, _, option = key.rpartition(".")
        value = str(ast.literal_eval(raw))
        if section == ":env:":
            env["global", option] = value
        else:
            files[section, option] = value
    return {**files, **env}


def local_paths(option: str, value: str) -> list[Path]:
    """Host paths a value names; a local index links to files beside it (``../../files``): its parent too."""
    paths = []
    for token in value.split():
        path = Path(unquote(urlparse(token).path)) if token.startswith("file:") else Path(token)
        if path.is_absolute() and path.exists():
            paths.append(path.parent if option in INDEX_KEYS and path.name == "simple" else path)
    return paths


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    config = pip_config()
    cert = config.pop(("global", "cert"), None) or ssl.get_default_verify_paths().cafile
    ca = out / "pip-ca.crt"
    if cert and Path(cert).is_file():
        shutil.copyfile(cert, ca)
        config["global", "cert"] = CA_IN_BUILD
    else:
        ca.write_text("")  # no bundle to hand over: pip in the build keeps its own (certifi)

    parser = configparser.RawConfigParser()
    mounts: list[Path] = []
    for (section, option), value in sorted(config.items()):
        if not parser.has_section(section):
            parser.add_section(section)
        parser.set(section, option, value)
        if option != "cert":
            mounts.extend(local_paths(option, value))
    with (out / "pip.conf").open("w") as fh:
        parser.write(fh)
    (out / "pip.conf").chmod(0o600)

    kept: list[Path] = []
    for path in sorted(set(mounts)):
        if not any(path.is_relative_to(parent) for parent in kept):
            kept.append(path)
    print("\n".join(str(path) for path in kept))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
