"""Budget gauges on /metrics: ``penny_budget_spend_usd`` and ``penny_budget_remaining_usd`` per user and
team, read from the ledger at scrape time (at most every ``refresh_s``, one grouped query per window).

Label cardinality is bounded whatever the number of users: only subjects with a budget are shown, the
``top_n`` biggest spenders of each scope by name, every other summed under ``name="_other"``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from assistant.ledger import BudgetSpend

log = logging.getLogger("penny.api")

OTHER = "_other"
MICRO = 1_000_000


def bounded(rows: list[BudgetSpend], top_n: int) -> list[BudgetSpend]:
    """Per scope: the ``top_n`` highest spenders, then one ``_other`` row summing the rest."""
    result: list[BudgetSpend] = []
    for scope in ("user", "team"):
        ranked = sorted((r for r in rows if r.scope == scope), key=lambda r: (-r.spend_micro_usd, r.name))
        result += ranked[:top_n]
        rest = ranked[top_n:]
        if rest:
            result.append(
                BudgetSpend(
                    scope,
                    OTHER,
                    sum(r.spend_micro_usd for r in rest),
                    sum(r.limit_micro_usd for r in rest),
                )
            )
    return result


class BudgetCollector(Collector):
    def __init__(
        self,
        read: Callable[[], list[BudgetSpend]],
        *,
        top_n: int,
        refresh_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self._top_n = top_n
        self._refresh_s = refresh_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._cached: list[BudgetSpend] | None = None
        self._read_at = 0.0

    def _rows(self) -> list[BudgetSpend]:
        with self._lock:
            now = self._monotonic()
            if self._cached is None or now - self._read_at >= self._refresh_s:
                try:
                    self._cached = bounded(self._read(), self._top_n)
                except Exception:  # a scrape must not fail because the ledger is briefly unreachable
                    log.exception("budget gauges: reading the ledger failed; showing the last values")
                    return self._cached or []
                self._read_at = now
            return self._cached

    def collect(self) -> Iterator[Metric]:
        spend = GaugeMetricFamily(
            "penny_budget_spend_usd",
            "Committed spend (settled + held) in the current budget window, per user and team with a budget.",
            labels=["scope", "name"],
        )
        remaining = GaugeMetricFamily(
            "penny_budget_remaining_usd",
            "Budget left in the current window (negative: over, e.g. a settle above its worst case).",
            labels=["scope", "name"],
        )
        for row in self._rows():
            spend.add_metric([row.scope, row.name], row.spend_micro_usd / MICRO)
            remaining.add_metric([row.scope, row.name], row.remaining_micro_usd / MICRO)
        yield spend
        yield remaining

    def describe(self) -> Iterator[Metric]:
        """Names only, so registering does not query the ledger."""
        yield GaugeMetricFamily("penny_budget_spend_usd", "", labels=["scope", "name"])
        yield GaugeMetricFamily("penny_budget_remaining_usd", "", labels=["scope", "name"])


def register_budget_gauges(
    registry: CollectorRegistry, read: Callable[[], list[BudgetSpend]], *, top_n: int, refresh_s: float
) -> BudgetCollector:
    collector = BudgetCollector(read, top_n=top_n, refresh_s=refresh_s)
    registry.register(collector)
    return collector
