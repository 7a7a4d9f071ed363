"""How many workers this host can run, for ``pool.max_workers`` left unset (None: sized here).

A worker is one llama.cpp model with ``pool.threads_per_worker`` threads. Past the cores this process may
use, another worker only time-shares them (and slows the others); past the memory, it swaps or is killed.
So the ceiling is the smaller of cores ÷ threads per worker and memory ÷ the projected worker size (memory
being ``pool.memory_limit_bytes`` or what the host has available, whichever is less), shared among the API
processes that each run their own pool (``server.workers``), and never below one worker or below an
explicit ``pool.min_workers``. It is read once, when the pool is built; the memory guard keeps applying
``pool.memory_limit_bytes`` as the pool grows.

Threads by load (:func:`lone_threads`): a worker's ``threads_per_worker`` is its share of the cores when
every worker is busy; a request that runs alone may decode with all of them instead.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import psutil

from assistant.settings import PoolSettings

log = logging.getLogger("penny.pool")

CGROUP = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Host:
    """What the pool may use: cores it may run on, and memory available now (None: unknown)."""

    cpus: int
    memory_bytes: int | None

    @classmethod
    def measure(cls) -> Host:
        try:
            cpus = len(os.sched_getaffinity(0))  # a taskset or cpuset, not the machine's count
        except AttributeError:  # not Linux
            cpus = os.cpu_count() or 1
        return cls(cpus=max(1, cpus), memory_bytes=_available_memory())


def _available_memory() -> int | None:
    """Available memory, capped by a cgroup v2 limit (a container sees the host's free memory otherwise)."""
    try:
        available = int(psutil.virtual_memory().available)
    except (OSError, RuntimeError):
        return None
    try:
        limit = (CGROUP / "memory.max").read_text().strip()
        if limit != "max":
            used = int((CGROUP / "memory.current").read_text().strip())
            available = min(available, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return available


def auto_max_workers(settings: PoolSettings, host: Host, processes: int = 1) -> tuple[int, str]:
    """The worker ceiling for ``host`` and why, as a phrase for the log."""
    by_cpu = host.cpus // settings.threads_per_worker
    memory = settings.memory_limit_bytes
    if host.memory_bytes is not None:
        memory = min(memory, host.memory_bytes)
    per_worker = settings.worker_memory_estimate_bytes
    by_memory = memory // per_worker if per_worker > 0 else by_cpu
    workers = max(1, min(by_cpu, by_memory) // max(1, processes), settings.min_workers)
    why = (
        f"{host.cpus} cores / {settings.threads_per_worker} thread(s) per worker = {by_cpu}; "
        f"{memory / 2**20:.0f} MiB / {per_worker / 2**20:.0f} MiB per worker = {by_memory}"
    )
    if processes > 1:
        why += f"; shared by {processes} API processes"
    return workers, why


def sized(settings: PoolSettings, host: Host | None = None, processes: int = 1) -> PoolSettings:
    """``settings`` with ``max_workers`` filled in for this host when it is None (auto); else unchanged."""
    if settings.max_workers is not None:
        return settings
    workers, why = auto_max_workers(settings, host or Host.measure(), processes)
    log.info("pool.max_workers = %d (auto: %s)", workers, why)
    return settings.model_copy(update={"max_workers": workers})


def lone_threads(settings: PoolSettings, host: Host, processes: int = 1) -> int | None:
    """Threads a request running alone decodes with, or None when that is off (the setting is 0, or it
    would not beat ``threads_per_worker``). The cores are shared among the API processes, as the workers
    are: one process's lone request may run beside another's."""
    cores = max(1, host.cpus // max(1, processes))
    wanted = settings.lone_request_threads
    if wanted == 0:
        return None
    threads = cores if wanted is None else min(wanted, cores)
    return threads if threads > settings.threads_per_worker else None
