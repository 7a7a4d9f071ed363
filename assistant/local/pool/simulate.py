"""Replay an arrival trace against the real autoscaling policy on a simulated clock.

    python -m assistant.local.pool.simulate                      # both bundled traces, policy from settings
    python -m assistant.local.pool.simulate --trace my.csv       # a CSV whose first column is arrival seconds
    python -m assistant.local.pool.simulate --sweep              # the grid the settings' defaults came from
    python -m assistant.local.pool.simulate --service-scale 0.2  # service times x 0.2 (a quiet core)
    python -m assistant.local.pool.simulate --seeds 5            # also summarise service-time seeds 0-4

Discrete-event simulation: arrivals from the trace, service times drawn (seeded) from the sample measured
on the real worker (``assistant/data/traces/service_times.csv``, made by benchmarks/bench_pool.py), cold
start from the same measurement, and :class:`~assistant.local.pool.policy.AutoscalePolicy` consulted every
``tick_s`` exactly as the live pool does. Each worker is assumed to have its own cores (as a Kubernetes
pod does), so service time does not depend on how many run. Prints worker-hours and p50/p95/p99 queue wait,
and the same for static provisioning at peak: the fewest always-on workers that meet the p95 target; then
what each costs at the price table's instance prices, with the burst above ``min_workers`` on spot.
"""

from __future__ import annotations

import argparse
import csv
import heapq
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from assistant.local.pool.policy import AutoscalePolicy, PoolSignals
from assistant.local.pool.pricing import InstancePrices, hours_within
from assistant.local.pool.sizing import sized
from assistant.settings import PoolSettings, get_settings

TRACES = resources.files("assistant") / "data" / "traces"
BUNDLED = ("diurnal_day", "bursty_hour")
P95_TARGET_S = 2.0
PEAK_WINDOW_S = 600.0  # "at peak": the busiest 10 minutes of the trace
POLICY_KNOBS = ("scale_down_step_s", "rate_window_s", "staffing_beta")  # the policy's own flags
RECENT_SERVICE = 100  # mean_service_s is the mean of the last this-many completed requests


@dataclass
class _Worker:
    spawned: float
    ready_at: float
    busy: int = 0
    draining: bool = False
    stopped: float | None = None


@dataclass
class SimResult:
    label: str
    requests: int
    worker_hours: float
    waits: np.ndarray = field(repr=False)
    peak_workers: int = 0
    scale_ups: int = 0
    scale_downs: int = 0

    peak_waits: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    # Worker-hours within the policy's floor (min_workers, always up: on-demand capacity); the rest is
    # the burst above it, which spot capacity can carry.
    floor_hours: float = 0.0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.waits, q)) if len(self.waits) else 0.0

    def peak_p95(self) -> float:
        return float(np.percentile(self.peak_waits, 95)) if len(self.peak_waits) else 0.0

    def row(self) -> str:
        return (
            f"{self.label:<26} {self.worker_hours:>8.2f} {self.pct(50):>7.2f} {self.pct(95):>7.2f} "
            f"{self.pct(99):>7.2f} {self.peak_p95():>8.2f} {self.peak_workers:>5} {self.scale_ups:>4} "
            f"{self.scale_downs:>5}"
        )


HEADER = (
    f"{'provisioning':<26} {'wkr-h':>8} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} "
    f"{'peak p95':>8} {'wkrs':>5} {'ups':>4} {'downs':>5}"
)


def load_trace(path: Path) -> np.ndarray:
    """Arrival times in seconds from the first column of a CSV (a header row is skipped)."""
    times = []
    with Path(path).open() as handle:
        for row in csv.reader(handle):
            if not row or not row[0].strip():
                continue
            try:
                times.append(float(row[0]))
            except ValueError:
                if times:
                    raise ValueError(f"{path}: {row[0]!r} is not a number of seconds") from None
    if not times:
        raise ValueError(f"{path}: no arrival times found")
    return np.sort(np.asarray(times)) - min(times)


def peak_window(arrivals: np.ndarray, window_s: float = PEAK_WINDOW_S) -> np.ndarray:
    """Indices of the arrivals in the busiest ``window_s`` of the trace."""
    ends = np.searchsorted(arrivals, arrivals + window_s)
    start = int(np.argmax(ends - np.arange(len(arrivals))))
    return np.arange(start, int(ends[start]))


def load_service_sample(path: Path | None = None) -> tuple[np.ndarray, float, str]:
    """Measured service times (s), the measured cold start (s), and which model they came from."""
    sample = Path(path) if path else Path(str(TRACES / "service_times.csv"))
    with sample.open() as handle:
        seconds = np.asarray([float(row["service_s"]) for row in csv.DictReader(handle)])
    meta_path = sample.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return seconds, float(meta.get("cold_start_s", 5.0)), str(meta.get("model", "unknown"))


def simulate(
    arrivals: np.ndarray,
    service: np.ndarray,
    settings: PoolSettings,
    *,
    cold_start_s: float,
    static_workers: int | None = None,
    seed: int = 0,
    label: str = "autoscaled",
) -> SimResult:
    """Run the trace; ``static_workers`` fixes the pool size (no policy, all warm from t=0)."""
    rng = np.random.default_rng(seed)
    draws = rng.choice(service, size=len(arrivals))
    policy = None if static_workers else AutoscalePolicy(settings)
    recent_service: deque[float] = deque(maxlen=RECENT_SERVICE)  # completed, as the live pool sees them
    arrived = 0
    service_sum = 0.0
    slots = settings.slots_per_worker
    order = itertools.count()
    events: list[tuple[float, int, str, object]] = []  # (time, tiebreak, kind, payload)

    def push(t: float, kind: str, payload: object = None) -> None:
        heapq.heappush(events, (t, next(order), kind, payload))

    workers: list[_Worker] = []
    if static_workers:
        workers = [_Worker(0.0, 0.0) for _ in range(static_workers)]
    else:
        workers = [_Worker(0.0, 0.0) for _ in range(AutoscalePolicy(settings).floor)]
    retired: list[_Worker] = []
    queue: list[float] = []  # arrival indices, FIFO
    head = 0
    waits = np.zeros(len(arrivals))
    served = 0
    ups = downs = 0
    peak = len(workers)
    for index, t in enumerate(arrivals):
        push(float(t), "arrive", index)
    end = float(arrivals[-1]) if len(arrivals) else 0.0
    if policy is not None:
        push(0.0, "tick")

    def dispatch(now: float) -> None:
        nonlocal head, served
        while head < len(queue):
            free = [
                w
                for w in workers
                if w.stopped is None and not w.draining and w.ready_at <= now and w.busy < slots
            ]
            if not free:
                return
            worker = free[0]
            index = int(queue[head])
            head += 1
            waits[index] = now - float(arrivals[index])
            worker.busy += 1
            served += 1
            push(now + float(draws[index]), "done", (worker, float(draws[index])))

    now = 0.0
    while events:
        now, _, kind, payload = heapq.heappop(events)
        if kind == "arrive":
            queue.append(float(payload))  # type: ignore[arg-type]
            arrived += 1
            dispatch(now)
        elif kind == "done":
            worker, seconds = payload  # type: ignore[misc]
            assert isinstance(worker, _Worker)
            if len(recent_service) == RECENT_SERVICE:
                service_sum -= recent_service[0]
            recent_service.append(seconds)
            service_sum += seconds
            worker.busy -= 1
            if worker.draining and worker.busy == 0:
                worker.stopped = now
                workers.remove(worker)
                retired.append(worker)
            dispatch(now)
        elif kind == "ready":
            dispatch(now)
        elif kind == "tick" and policy is not None:
            live = [w for w in workers if not w.draining]  # ``workers`` holds no stopped ones
            starting = sum(1 for w in live if w.ready_at > now)
            signals = PoolSignals(
                in_flight=sum(w.busy for w in workers),
                queued=len(queue) - head,
                workers_starting=starting,
                workers_ready=len(live) - starting,
                workers_draining=len(workers) - len(live),
                arrivals_total=arrived,
                mean_service_s=service_sum / len(recent_service) if recent_service else 0.0,
            )
            decision = policy.decide(signals, now)
            if decision.delta > 0:
                ups += 1
                for _ in range(decision.delta):
                    workers.append(_Worker(now, now + cold_start_s))
                push(now + cold_start_s, "ready")
            elif decision.delta < 0:
                downs += 1
                candidates = [w for w in live if w.ready_at > now] or live
                victim = min(reversed(candidates), key=lambda w: w.busy)
                victim.draining = True
                if victim.busy == 0:
                    victim.stopped = now
                    workers.remove(victim)
                    retired.append(victim)
            peak = max(peak, sum(1 for w in workers if w.stopped is None))
            if now < end or head < len(queue) or any(w.busy for w in workers):
                push(now + settings.tick_s, "tick")
    finish = max(now, end)
    spans = [(w.spawned, w.stopped if w.stopped is not None else finish) for w in workers + retired]
    hours = sum(stop - start for start, stop in spans) / 3600
    floor = static_workers or AutoscalePolicy(settings).floor
    result = SimResult(label, served, hours, waits, peak, ups, downs, waits[peak_window(arrivals)])
    result.floor_hours = hours_within(spans, floor)
    return result


def static_at_peak(
    arrivals: np.ndarray, service: np.ndarray, settings: PoolSettings, seed: int = 0
) -> SimResult:
    """The fewest always-on workers that meet the p95 target in the busiest 10 minutes: sized for the peak."""
    for count in range(1, 257):
        result = simulate(
            arrivals,
            service,
            settings,
            cold_start_s=0.0,
            static_workers=count,
            seed=seed,
            label=f"static at peak ({count} wkr)",
        )
        if result.peak_p95() <= P95_TARGET_S:
            return result
    raise RuntimeError("no static pool up to 256 workers meets the target")


def _verdict(ratio: float, p95: float) -> bool:
    return ratio <= 0.5 and p95 <= P95_TARGET_S


def report(
    name: str,
    arrivals: np.ndarray,
    service: np.ndarray,
    settings: PoolSettings,
    cold: float,
    seeds: int = 1,
    prices: InstancePrices | None = None,
) -> None:
    prices = prices or InstancePrices.from_table(get_settings().ledger)
    auto = simulate(arrivals, service, settings, cold_start_s=cold)
    static = static_at_peak(arrivals, service, settings)
    span_h = (arrivals[-1] - arrivals[0]) / 3600 if len(arrivals) > 1 else 0
    print(f"\n== {name}: {len(arrivals)} requests over {span_h:.2f} h ==")
    print(HEADER)
    print(auto.row())
    print(static.row())
    ratio = auto.worker_hours / static.worker_hours if static.worker_hours else float("nan")
    verdict = "meets" if _verdict(ratio, auto.pct(95)) else "misses"
    print(
        f"autoscaled / static worker-hours = {ratio:.2f}; p95 wait {auto.pct(95):.2f} s -> {verdict} "
        f"the goal (<= 0.50 at p95 <= {P95_TARGET_S:.0f} s)"
    )
    print(prices.costs(auto, static))
    if seeds > 1:
        ratios, p95s = _over_seeds(arrivals, service, settings, cold, seeds)
        met = sum(_verdict(r, p) for r, p in zip(ratios, p95s, strict=True))
        print(
            f"over service-time seeds 0-{seeds - 1}: ratio mean {np.mean(ratios):.2f} max {max(ratios):.2f}; "
            f"p95 mean {np.mean(p95s):.2f} max {max(p95s):.2f} s; goal met {met}/{seeds}"
        )


def _over_seeds(
    arrivals: np.ndarray,
    service: np.ndarray,
    settings: PoolSettings,
    cold: float,
    seeds: int,
    statics: list[float] | None = None,
) -> tuple[list[float], list[float]]:
    """Worker-hours ratio and p95 wait for each service-time seed (static-at-peak re-sized per seed)."""
    ratios, p95s = [], []
    for seed in range(seeds):
        result = simulate(arrivals, service, settings, cold_start_s=cold, seed=seed)
        static = statics[seed] if statics else static_at_peak(arrivals, service, settings, seed).worker_hours
        ratios.append(result.worker_hours / static)
        p95s.append(result.pct(95))
    return ratios, p95s


# The --sweep grid: (target utilisation, up delay s, down window s, down step s (0 = the window),
# Little's-law term as (rate window s, staffing beta), (0, 0) = off). Queue threshold stays 1: the previous
# sweep found 3 doubled or tripled the bursty p95.
SWEEP_UTIL = (0.7, 0.8, 1.0)
SWEEP_UP_S = (0.0, 2.0)
SWEEP_DOWN_S = (30.0, 60.0, 120.0)
SWEEP_STEP_S = (5.0, 15.0, 0.0)
SWEEP_STAFFING = ((0.0, 0.0), (600.0, 1.0), (600.0, 1.5), (600.0, 2.0))


def sweep(
    traces: dict[str, np.ndarray], service: np.ndarray, base: PoolSettings, cold: float, seeds: int = 1
) -> None:
    """The grid behind the defaults: per trace the worker-hours ratio and p95 wait (means over ``seeds``
    service-time seeds) and on how many seeds the goal was met; then the cheapest row that meets it most."""
    statics = {
        name: [static_at_peak(arr, service, base, seed).worker_hours for seed in range(seeds)]
        for name, arr in traces.items()
    }
    print(
        f"{'util':>4} {'up s':>4} {'down s':>6} {'step s':>6} {'rate s':>6} {'beta':>4} "
        + " ".join(f"{name[:12]:>12} ratio   p95 met" for name in traces)
    )
    best: tuple[tuple[int, float], str] | None = None
    grid = itertools.product(SWEEP_UTIL, SWEEP_UP_S, SWEEP_DOWN_S, SWEEP_STEP_S, SWEEP_STAFFING)
    for util, up, down, step, (rate, beta) in grid:
        settings = base.model_copy(
            update={
                "target_utilisation": util,
                "queue_threshold": 1,
                "scale_up_delay_s": up,
                "scale_down_delay_s": down,
                "scale_down_step_s": step or down,
                "rate_window_s": rate,
                "staffing_beta": beta,
            }
        )
        cells, met, worst = [], 0, 0.0
        for name, arrivals in traces.items():
            ratios, p95s = _over_seeds(arrivals, service, settings, cold, seeds, statics[name])
            hits = sum(_verdict(r, p) for r, p in zip(ratios, p95s, strict=True))
            met, worst = met + hits, max(worst, float(np.mean(ratios)))
            cells.append(f"{'':>12} {np.mean(ratios):5.2f} {np.mean(p95s):5.2f} {hits:>3}")
        row = (
            f"{util:>4.1f} {up:>4.0f} {down:>6.0f} {step or down:>6.0f} {rate:>6.0f} {beta:>4.1f} "
            + " ".join(cells)
        )
        print(row, flush=True)
        if best is None or (met, -worst) > best[0]:
            best = ((met, -worst), row)
    if best is not None:
        total = seeds * len(traces)
        print(
            f"best (goal met on {best[0][0]} of {total} trace-seeds, then cheapest worst ratio):\n{best[1]}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Replay arrival traces under the autoscaling policy.")
    parser.add_argument("--trace", type=Path, action="append", help="CSV of arrival seconds (repeatable)")
    parser.add_argument("--service", type=Path, default=None, help="CSV with a service_s column")
    parser.add_argument("--cold-start", type=float, default=None, help="seconds from spawn to ready")
    parser.add_argument(
        "--service-scale",
        type=float,
        default=1.0,
        help="multiply every sampled service time (0.2: the loaded-machine sample as a quiet core would "
        "serve it); the cold start is not scaled, set it with --cold-start",
    )
    parser.add_argument("--sweep", action="store_true", help="print the parameter grid")
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="also run service-time seeds 0..N-1 and summarise (sweep: average)",
    )
    for name in ("min_workers", "max_workers", "queue_threshold"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    for name in ("target_utilisation", "scale_up_delay_s", "scale_down_delay_s", *POLICY_KNOBS):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=None)
    parser.add_argument("--scale-to-zero", action="store_true", default=None)
    charged = InstancePrices.from_table(get_settings().ledger)
    parser.add_argument(
        "--on-demand-usd-per-hour", type=float, default=charged.on_demand, help="default: the price table's"
    )
    parser.add_argument(
        "--spot-usd-per-hour", type=float, default=charged.spot, help="default: the price table's"
    )
    args = parser.parse_args(argv)
    prices = InstancePrices(args.on_demand_usd_per_hour, args.spot_usd_per_hour)

    overrides = {
        key: value
        for key in (
            "min_workers",
            "max_workers",
            "queue_threshold",
            "target_utilisation",
            "scale_up_delay_s",
            "scale_down_delay_s",
            *POLICY_KNOBS,
            "scale_to_zero",
        )
        if (value := getattr(args, key)) is not None
    }
    settings = sized(get_settings().pool.model_copy(update={"tick_s": 1.0, **overrides}))
    service, cold, model = load_service_sample(args.service)
    if args.service_scale <= 0:
        parser.error("--service-scale must be positive")
    service = service * args.service_scale
    cold = args.cold_start if args.cold_start is not None else cold
    if args.trace:
        traces = {path.stem: load_trace(path) for path in args.trace}
    else:
        traces = {name: load_trace(Path(str(TRACES / f"{name}.csv"))) for name in BUNDLED}
    print(
        f"service times: {len(service)} measured on {model} x {args.service_scale:g}, median "
        f"{np.median(service):.2f} s, p95 {np.percentile(service, 95):.2f} s; cold start {cold:.2f} s"
    )
    print(
        f"policy: min {settings.min_workers}, max {settings.max_workers}, target utilisation "
        f"{settings.target_utilisation}, queue threshold {settings.queue_threshold}, up delay "
        f"{settings.scale_up_delay_s:g} s, down window {settings.scale_down_delay_s:g} s, down step "
        f"{settings.scale_down_step_s:g} s, rate window {settings.rate_window_s:g} s, staffing beta "
        f"{settings.staffing_beta:g}, scale to zero {settings.scale_to_zero}, tick {settings.tick_s:g} s"
    )
    if args.sweep:
        sweep(traces, service, settings, cold, args.seeds)
        return
    for name, arrivals in traces.items():
        report(name, arrivals, service, settings, cold, args.seeds, prices)


if __name__ == "__main__":
    main()
