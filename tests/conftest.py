"""Shared fixtures. Every test runs with the network cut off except loopback: nothing may download."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

# Shared helpers assert too, and test modules import some of them before pytest_plugins loads them as
# fixture plugins: rewrite the whole package from its first import.
pytest.register_assert_rewrite("tests.support")

from tests.support.fake_paid import FakePaid  # noqa: E402
from tests.support.servers import running_server  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["ANONYMIZED_TELEMETRY"] = "False"

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent


class NetworkBlocked(ConnectionRefusedError):
    """Raised for any non-loopback connect; an OSError so clients fail as they would offline."""


BLOCKED_ATTEMPTS: list[str] = []


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address: object) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths
    host = str(address[0])
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _is_local(address):
        BLOCKED_ATTEMPTS.append(repr(address))
        raise NetworkBlocked(f"test tried to reach {address!r}; only loopback is allowed")
    return _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _is_local(address):
        BLOCKED_ATTEMPTS.append(repr(address))
        raise NetworkBlocked(f"test tried to reach {address!r}; only loopback is allowed")
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True, scope="session")
def no_network() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    # A test that means to probe the guard removes its own entry; anything left is a real attempt.
    assert not BLOCKED_ATTEMPTS, f"network access attempted during tests: {BLOCKED_ATTEMPTS}"
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model_path(model_cache: Path) -> Path:
    from assistant.local.registry import ModelRegistry

    return ModelRegistry(model_cache).path("smollm2-135m")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path: Path):  # type: ignore[no-untyped-def]
    from assistant.local.model import LocalModel

    return LocalModel(tiny_model_path, n_ctx=2048)


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    from index.embedding import get_embedder

    return get_embedder()


@pytest.fixture
def settings(tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Settings isolated in tmp_path, local tier on the tiny model."""
    from assistant.settings import Settings

    monkeypatch.setenv("PENNY_CONFIG", str(tmp_path / "absent.toml"))
    return Settings(
        data_dir=tmp_path / "data",
        models={"local": "smollm2-135m", "cache_dir": model_cache, "n_ctx": 2048, "max_tokens": 48},
    )


@pytest.fixture(scope="module")
def paid_server() -> Iterator[tuple[FakePaid, str]]:
    """The scripted paid upstream (the only test double) on loopback, one per module: (fake, base URL)."""
    fake = FakePaid()
    with running_server(fake.app) as base:
        yield fake, f"{base}/v1"
