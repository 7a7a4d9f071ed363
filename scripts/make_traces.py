"""Generate the simulator's bundled arrival traces, deterministically (fixed seeds), as CSV timestamps.

    .venv/bin/python scripts/make_traces.py   # rewrites assistant/data/traces/{diurnal_day,bursty_hour}.csv

- ``diurnal_day``: 24 h of a team's questions; near-idle at night, a smooth working-day hump peaking
  at 40 requests/min in the early afternoon (non-homogeneous Poisson process, thinning).
- ``bursty_hour``: 1 h at a steady 4 requests/min with five one-minute bursts of 30 requests/min
  (a meeting ends, a link is shared) at random times.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent.parent / "assistant/data/traces"


def poisson(
    rate_per_s: Callable[[np.ndarray], np.ndarray], duration_s: float, peak: float, seed: int
) -> np.ndarray:
    """Arrival times of a Poisson process with time-varying rate, by thinning a homogeneous one."""
    rng = np.random.default_rng(seed)
    count = rng.poisson(peak * duration_s)
    times = np.sort(rng.uniform(0, duration_s, count))
    keep = rng.uniform(0, peak, count) < rate_per_s(times)
    return times[keep]


def diurnal_rate(t: np.ndarray) -> np.ndarray:
    hour = (t / 3600) % 24
    working = np.clip(np.sin(np.pi * (hour - 7) / 13), 0, None) ** 2  # 07:00-20:00, peak ~13:30
    return (0.5 + 39.5 * working) / 60


def bursty_rate(t: np.ndarray, starts: np.ndarray) -> np.ndarray:
    rate = np.full_like(t, 4 / 60)
    for start in starts:
        rate[(t >= start) & (t < start + 60)] = 30 / 60
    return rate


def write(name: str, times: np.ndarray) -> None:
    path = OUT / f"{name}.csv"
    np.savetxt(path, times, fmt="%.3f", header="arrival_s", comments="")
    print(f"{path.relative_to(OUT.parent.parent.parent)}: {len(times)} arrivals")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    write("diurnal_day", poisson(diurnal_rate, 24 * 3600, 40 / 60, seed=8))
    starts = np.sort(np.random.default_rng(9).uniform(0, 3540, 5))
    write("bursty_hour", poisson(lambda t: bursty_rate(t, starts), 3600, 30 / 60, seed=10))


if __name__ == "__main__":
    main()
