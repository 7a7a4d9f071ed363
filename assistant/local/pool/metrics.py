"""The pool's signals: one snapshot, rendered as JSON for ``GET /v1/pool`` and as Prometheus metrics.

Metric names (the KEDA/HPA manifests in deploy/kubernetes/ scale on the same ones):

| metric | type | meaning |
|---|---|---|
| ``penny_pool_queue_size`` | gauge | requests waiting for a slot (i.e. for prefill) |
| ``penny_pool_in_flight`` | gauge | requests being generated |
| ``penny_pool_slots_used`` / ``penny_pool_slots_total`` | gauge | busy / accepting slots |
| ``penny_pool_utilisation`` | gauge | (in_flight + queued) / slots_total: the policy's input |
| ``penny_pool_desired_workers`` | gauge | what the policy wants now (before delays) |
| ``penny_pool_workers{state}`` | gauge | starting, ready, draining (remote: unhealthy, not draining) |
| ``penny_pool_worker_memory_bytes{worker}`` | gauge | resident memory of each local (not remote) worker |
| ``penny_pool_memory_bytes`` / ``penny_pool_memory_limit_bytes`` | gauge | total worker RSS vs the limit |
| ``penny_pool_scale_events_total{direction}`` | counter | up, down, replace (a lost worker) |
| ``penny_pool_cold_start_seconds`` | gauge | spawn-to-ready time of the last worker that started |
| ``penny_pool_queue_wait_seconds`` / ``penny_pool_service_seconds`` | histogram | per request |
| ``penny_pool_affinity_total{outcome}`` | counter | a known conversation to its last worker, or not |
| ``penny_pool_shed_total{reason}`` | counter | 503s before the request started (reasons below) |
| ``penny_pool_expected_wait_seconds`` | gauge | a request arriving now would wait this long for a slot |
| ``penny_pool_pending`` | gauge | requests admitted, not in the queue yet (still retrieving) |

Shed reasons: ``estimate`` (the expected wait was over ``server.max_queue_wait_s``: refused at once),
``queue_wait`` (admitted, but waited that long without a slot). The expected wait is absent until a
service time has been measured.

A ``RemotePool`` (``pool.remote_urls``) measures no memory (its workers are pods with their own limits and
``penny_worker_memory_bytes``): ``memory_bytes`` and each worker's ``rss_bytes`` read 0 and ``pid`` is null;
``desired_workers`` is the fixed number of URLs; its ``scale_events`` are health changes (ready, unhealthy).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from assistant.local.pool.base import PoolBase

_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)
SHED_REASONS = ("estimate", "queue_wait")


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def pool_status(pool: PoolBase) -> dict[str, Any]:
    """The JSON body of ``GET /v1/pool``: signals, workers, policy parameters, recent scale events."""
    signals = pool.signals()
    slots_total = pool.dispatcher.slots_total
    waits = list(pool.timings.queue_wait_s)
    services = list(pool.timings.service_s)
    workers = pool.workers(*pool.STATES)
    cold_starts = [w.cold_start_s for w in pool.workers() if w.cold_start_s is not None]
    expected_wait = pool.expected_wait_s()
    s = pool.settings
    return {
        "kind": pool.KIND,
        "queue_size": signals.queued,
        "in_flight": signals.in_flight,
        "slots_used": min(signals.in_flight, slots_total),
        "slots_total": slots_total,
        "desired_workers": pool.desired_workers(signals),
        "last_decision": pool.last_decision_reason,
        "workers_by_state": {
            state.value: sum(1 for w in workers if w.state is state) for state in pool.STATES
        },
        "memory_bytes": signals.memory_bytes,
        "memory_limit_bytes": s.memory_limit_bytes,
        "workers": [
            {
                "id": w.id,
                "state": w.state.value,
                "url": w.url,
                "pid": w.pid,
                "in_flight": pool.dispatcher.in_flight_on(w),
                "rss_bytes": w.rss_bytes,
                "cold_start_s": None if w.cold_start_s is None else round(w.cold_start_s, 3),
            }
            for w in workers
        ],
        "last_cold_start_s": round(cold_starts[-1], 3) if cold_starts else None,
        "requests": {
            "recent": len(waits),
            "queue_wait_s": {f"p{q}": _percentile(waits, q) for q in (50, 95, 99)},
            "service_s": {f"p{q}": _percentile(services, q) for q in (50, 95, 99)},
        },
        "affinity": {"hits": pool.dispatcher.affinity_hits, "misses": pool.dispatcher.affinity_misses},
        "shedding": {
            "max_queue_wait_s": pool.max_queue_wait_s,
            "expected_wait_s": None if expected_wait is None else round(expected_wait, 3),
            "pending": pool.dispatcher.pending,
            "shed_total": {reason: pool.shed[reason] for reason in SHED_REASONS},
        },
        # Threads by load: what a request that starts alone decodes with (None: off), and the others.
        "threads": {"lone_request": pool.lone_threads, "per_worker": s.threads_per_worker},
        "scale_events_total": dict(pool.event_counts),
        "scale_events": [
            {"at": e.at, "direction": e.direction, "workers": e.workers, "reason": e.reason}
            for e in list(pool.events)[-20:]
        ],
        "policy": s.model_dump(),
    }


class PoolCollector(Collector):
    """Reads a fresh snapshot at every scrape, so gauges are never stale."""

    def __init__(self, pool: PoolBase) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Any]:
        status = pool_status(self.pool)
        for name, key, doc in (
            ("penny_pool_queue_size", "queue_size", "Requests waiting for a slot (prefill queue)"),
            ("penny_pool_in_flight", "in_flight", "Requests being generated"),
            ("penny_pool_slots_used", "slots_used", "Busy slots"),
            ("penny_pool_slots_total", "slots_total", "Slots on ready workers"),
            ("penny_pool_desired_workers", "desired_workers", "Workers the policy wants now"),
            ("penny_pool_memory_bytes", "memory_bytes", "Resident memory of all workers"),
            ("penny_pool_memory_limit_bytes", "memory_limit_bytes", "Configured memory limit"),
        ):
            yield GaugeMetricFamily(name, doc, value=status[key])
        load = status["in_flight"] + status["queue_size"]
        yield GaugeMetricFamily(
            "penny_pool_utilisation",
            "(in_flight + queued) / slots_total",
            value=load / status["slots_total"] if status["slots_total"] else float(load > 0),
        )
        workers = GaugeMetricFamily("penny_pool_workers", "Workers by state", labels=["state"])
        for state, count in status["workers_by_state"].items():
            workers.add_metric([state], count)
        yield workers
        memory = GaugeMetricFamily(
            "penny_pool_worker_memory_bytes", "Resident memory per worker", labels=["worker"]
        )
        for worker in status["workers"]:
            if worker["pid"] is not None:  # a remote worker's memory is not measured here
                memory.add_metric([str(worker["id"])], worker["rss_bytes"])
        yield memory
        events = CounterMetricFamily(
            "penny_pool_scale_events", "Scale events by direction", labels=["direction"]
        )
        for direction in ("up", "down", "replace"):
            events.add_metric([direction], status["scale_events_total"].get(direction, 0))
        yield events
        affinity = CounterMetricFamily(
            "penny_pool_affinity",
            "Requests of a known conversation by whether the worker of its last turn took them",
            labels=["outcome"],
        )
        affinity.add_metric(["hit"], status["affinity"]["hits"])
        affinity.add_metric(["miss"], status["affinity"]["misses"])
        yield affinity
        shedding = status["shedding"]
        shed = CounterMetricFamily(
            "penny_pool_shed",
            "Requests refused with 503 before they started, by why: expected wait over "
            "server.max_queue_wait_s (estimate) or waited that long (queue_wait)",
            labels=["reason"],
        )
        for reason, count in shedding["shed_total"].items():
            shed.add_metric([reason], count)
        yield shed
        yield GaugeMetricFamily(
            "penny_pool_pending", "Requests admitted, not yet in the queue", value=shedding["pending"]
        )
        if shedding["expected_wait_s"] is not None:
            yield GaugeMetricFamily(
                "penny_pool_expected_wait_seconds",
                "How long a request arriving now would wait for a slot",
                value=shedding["expected_wait_s"],
            )
        if status["last_cold_start_s"] is not None:
            yield GaugeMetricFamily(
                "penny_pool_cold_start_seconds",
                "Spawn-to-ready time of the last worker started",
                value=status["last_cold_start_s"],
            )


def pool_registry(pool: PoolBase, registry: CollectorRegistry | None = None) -> CollectorRegistry:
    """Register the pool's metrics (snapshot gauges and per-request histograms) on ``registry``."""
    registry = registry or CollectorRegistry()
    registry.register(PoolCollector(pool))
    queue_wait = Histogram(
        "penny_pool_queue_wait_seconds",
        "Time a request waited for a slot",
        buckets=_BUCKETS,
        registry=registry,
    )
    service = Histogram(
        "penny_pool_service_seconds", "Time a request held a slot", buckets=_BUCKETS, registry=registry
    )

    def observe(queued_s: float, service_s: float) -> None:
        queue_wait.observe(queued_s)
        service.observe(service_s)

    pool.observers.append(observe)
    return registry


def render_metrics(registry: CollectorRegistry) -> tuple[bytes, str]:
    """Body and content type for a ``/metrics`` response."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
