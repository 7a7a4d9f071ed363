"""Resident memory of a process: psutil when installed, else Linux's /proc (both count the same RSS)."""

from __future__ import annotations

import os
from pathlib import Path


def process_rss_bytes(pid: int) -> int:
    """RSS of ``pid`` in bytes, or 0 when the process is gone (a dead worker holds no memory)."""
    try:
        import psutil
    except ImportError:
        return _proc_rss_bytes(pid)
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0


def _proc_rss_bytes(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return 0
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
