"""Where the pool is the default, how big it may grow when ``pool.max_workers`` is left to the host, and
that its health checks stay out of the service's log."""

from __future__ import annotations

import logging

import httpx
import pytest

from assistant.local.pool.base import _quiet_health_checks
from assistant.local.pool.sizing import Host, auto_max_workers, sized
from assistant.service import Penny
from assistant.settings import PoolSettings, Settings

MiB, GiB = 1024**2, 1024**3


def ceiling(host: Host, processes: int = 1, **settings: object) -> int:
    base: dict[str, object] = {"memory_limit_bytes": 64 * GiB, "worker_memory_estimate_bytes": 700 * MiB}
    return auto_max_workers(PoolSettings(**{**base, **settings}), host, processes)[0]  # type: ignore[arg-type]


def test_cores_bound_the_pool_by_threads_per_worker() -> None:
    roomy = 64 * GiB
    assert ceiling(Host(cpus=2, memory_bytes=roomy)) == 2
    assert ceiling(Host(cpus=8, memory_bytes=roomy), threads_per_worker=2) == 4
    assert ceiling(Host(cpus=1, memory_bytes=roomy), threads_per_worker=2) == 1  # never below one


def test_memory_bounds_it_by_the_lower_of_the_limit_and_what_is_available() -> None:
    assert ceiling(Host(cpus=16, memory_bytes=2 * GiB)) == 2  # 2048 / 700 MiB
    assert ceiling(Host(cpus=16, memory_bytes=64 * GiB), memory_limit_bytes=GiB) == 1
    assert ceiling(Host(cpus=16, memory_bytes=None), memory_limit_bytes=3 * GiB) == 4  # unknown: the limit


def test_api_processes_share_the_host_and_an_explicit_floor_wins() -> None:
    host = Host(cpus=8, memory_bytes=64 * GiB)
    assert ceiling(host, processes=2) == 4
    assert ceiling(host, processes=16) == 1
    assert ceiling(Host(cpus=2, memory_bytes=64 * GiB), min_workers=3) == 3


def test_only_an_unset_max_is_sized() -> None:
    explicit = PoolSettings(max_workers=7)
    assert sized(explicit) is explicit
    auto = sized(PoolSettings(), Host(cpus=2, memory_bytes=64 * GiB))
    assert auto.max_workers == 2
    assert sized(PoolSettings()).max_workers is not None  # this host, measured
    assert Host.measure().cpus >= 1


def test_the_service_defaults_to_the_pool_and_the_library_to_in_process(settings: Settings) -> None:
    assert settings.pool.enabled is None
    assert Penny(settings, serving=True).pool_enabled
    assert not Penny(settings).pool_enabled  # CLI, eval, tests: one process
    off = settings.model_copy(update={"pool": PoolSettings(enabled=False)})
    on = settings.model_copy(update={"pool": PoolSettings(enabled=True)})
    assert not Penny(off, serving=True).pool_enabled
    assert Penny(on).pool_enabled


def test_passing_health_checks_stay_out_of_the_log(caplog: pytest.LogCaptureFixture) -> None:
    _quiet_health_checks()
    httpx_log = logging.getLogger("httpx")
    line = 'HTTP Request: %s %s "%s %d %s"'  # httpx's own format and arguments
    with caplog.at_level(logging.INFO, logger="httpx"):
        httpx_log.info(line, "GET", httpx.URL("http://127.0.0.1:9/healthz"), "HTTP/1.1", 200, "OK")
        httpx_log.info(line, "GET", httpx.URL("http://127.0.0.1:9/v1/models"), "HTTP/1.1", 200, "OK")
        httpx_log.info(line, "GET", httpx.URL("http://127.0.0.1:9/healthz"), "HTTP/1.1", 503, "Unavailable")
        httpx_log.info(
            line, "POST", httpx.URL("http://127.0.0.1:9/v1/chat/completions"), "HTTP/1.1", 200, "OK"
        )
    assert [r.getMessage().split()[3] for r in caplog.records] == [
        "http://127.0.0.1:9/healthz",  # a failing check is still logged
        "http://127.0.0.1:9/v1/chat/completions",
    ]
