"""Resident memory of a process (psutil): what the pool's memory guard and gauges read."""

from __future__ import annotations

import psutil


def process_rss_bytes(pid: int) -> int:
    """RSS of ``pid`` in bytes, or 0 when the process is gone (a dead worker holds no memory)."""
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0
