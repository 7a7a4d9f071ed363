"""Prometheus metrics for the HTTP service: requests, answers by tier, escalations, cost and latency.

Each app gets its own ``CollectorRegistry`` so tests can build many apps in one process; the worker pool
registers its gauges (queue size, slots, memory) into the same registry, so one scrape of ``/metrics`` feeds
both dashboards and an autoscaler (KEDA / HPA via prometheus-adapter).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from assistant.calibration.stamp import FIELDS

if TYPE_CHECKING:
    from assistant.answering.answer import CascadeAnswer
    from assistant.answering.shadow import ShadowSampler
    from assistant.calibration import Mismatch

log = logging.getLogger("penny.api")

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)

# When the HTTP request being handled arrived (perf_counter), set by the middleware for its task.
_RECEIVED: ContextVar[float | None] = ContextVar("penny_received", default=None)


def received_at() -> float:
    """When the current HTTP request arrived (perf_counter); now, outside one."""
    received = _RECEIVED.get()
    return time.perf_counter() if received is None else received


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, window: int = 200) -> None:
        """``window``: how many recent answers the escalation rate covers."""
        self.registry = registry or CollectorRegistry()
        self._recent_escalated: collections.deque[bool] = collections.deque(maxlen=window)
        self._recent_lock = threading.Lock()
        self.escalation_rate = Gauge(
            "penny_escalation_rate",
            "Share of recent answers escalated to the paid tier (NaN before any).",
            registry=self.registry,
        )
        self.escalation_rate.set_function(self._escalation_rate)
        self.requests = Counter(
            "penny_http_requests",
            "HTTP requests by route and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "penny_http_request_duration_seconds",
            "HTTP request duration.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.answers = Counter(
            "penny_answers", "Answers by the tier that produced them.", ["tier"], registry=self.registry
        )
        self.escalations = Counter(
            "penny_escalations",
            "Answers escalated to the paid tier, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.degraded = Counter(
            "penny_degraded_answers",
            "Local answers served because the paid tier failed.",
            ["reason"],
            registry=self.registry,
        )
        self.cost = Counter(
            "penny_cost_micro_usd",
            "Cost of answers in micro-USD, by tier that incurred it.",
            ["tier"],
            registry=self.registry,
        )
        self.answer_seconds = Histogram(
            "penny_answer_latency_seconds",
            "End-to-end answer latency by tier.",
            ["tier"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_token_seconds = Histogram(
            "penny_time_to_first_token_seconds",
            "Streamed answers: from the request's arrival to its first content chunk, by the answer's tier.",
            ["tier"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def _escalation_rate(self) -> float:
        with self._recent_lock:
            recent = list(self._recent_escalated)
        return sum(recent) / len(recent) if recent else float("nan")

    def watch_shadow(self, shadow: ShadowSampler) -> None:
        """Gauges read from the shadow sampler at scrape time (NaN until there is anything to estimate)."""
        precision = Gauge(
            "penny_local_precision_estimate",
            "Share of recent shadow-checked local answers the paid tier agreed with.",
            registry=self.registry,
        )
        precision.set_function(lambda: float("nan") if (value := shadow.precision()) is None else value)
        labels = Gauge(
            "penny_shadow_labels", "Shadow labels in the precision estimate's window.", registry=self.registry
        )
        labels.set_function(shadow.label_count)

    def watch_calibrations(self, read: Callable[[], dict[str, list[Mismatch]]]) -> None:
        """``penny_calibration_mismatch``, read at scrape time, so a calibration refitted while serving
        clears it."""
        self.registry.register(CalibrationCollector(read))

    def observe_answer(self, answer: CascadeAnswer) -> None:
        """Count one answer: its tier, latency, escalation or degradation, and cost."""
        self.answers.labels(tier=answer.tier).inc()
        if answer.tier != "cache":  # a cache hit is not the cascade's call to escalate or not
            with self._recent_lock:
                self._recent_escalated.append(bool(answer.escalated))
        self.answer_seconds.labels(tier=answer.tier).observe(answer.latency_ms / 1000)
        if answer.escalated:
            self.escalations.labels(reason=_reason_kind(answer.reason)).inc()
        if answer.degraded:
            self.degraded.labels(reason=_reason_kind(answer.reason)).inc()
        for tier_name, cost in (("local", answer.local_cost_micro_usd), ("paid", answer.paid_cost_micro_usd)):
            if cost:
                self.cost.labels(tier=tier_name).inc(cost)


class CalibrationCollector(Collector):
    """One gauge per calibration (``collection``: a collection's own, or ``*`` the default) and stamp
    field: 1 where the running Penny differs from what it was fitted for, else 0."""

    def __init__(self, read: Callable[[], dict[str, list[Mismatch]]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "penny_calibration_mismatch",
            "1 where the running models, answer style or prompt differ from what the calibration was fitted "
            "for (collection *: the default calibration); the start-up log says what to do.",
            labels=["collection", "field"],
        )
        try:
            found = self._read()
        except Exception:  # a scrape never fails on it; the log says why
            log.exception("could not compare the calibrations with the running models")
            found = {}
        for collection, mismatches in found.items():
            differ = {m.field for m in mismatches}
            for name in FIELDS:
                gauge.add_metric([collection, name], 1.0 if name in differ else 0.0)
        yield gauge


def _reason_kind(reason: str) -> str:
    """Bounded label values: the reason's first word (``low_confidence p=0.31`` → ``low_confidence``)."""
    return (reason or "unknown").split()[0].split(":")[0][:40]


def metrics_middleware(metrics: ServiceMetrics) -> Any:
    """ASGI middleware recording every HTTP request by route template and status."""

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            _RECEIVED.set(started)  # this task's (and its children's) request
            status = 500

            async def capture(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                await send(message)

            try:
                await app(scope, receive, capture)
            finally:
                handler = scope.get("route_handler")
                route = next(iter(handler.paths), "unmatched") if handler is not None else "unmatched"
                metrics.requests.labels(route=route, method=scope.get("method", ""), status=str(status)).inc()
                metrics.request_seconds.labels(route=route).observe(time.perf_counter() - started)

        return middleware

    return factory
