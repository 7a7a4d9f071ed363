"""The local tier as a pool of worker processes with an autoscaler (see README.md here).

``WorkerPool`` runs the processes (or ``RemotePool`` uses fixed URLs that Kubernetes scales),
``PoolBackend`` is the ``LocalBackend`` the cascade calls, and ``pool_status``/``pool_registry`` are the
signals for ``GET /v1/pool`` and ``/metrics``.
"""

from assistant.local.pool.backend import PoolBackend
from assistant.local.pool.base import (
    PoolBase,
    PoolDeadlineExceeded,
    PoolError,
    PoolOverloaded,
    PoolUnavailable,
    WorkerState,
)
from assistant.local.pool.manager import WorkerPool
from assistant.local.pool.metrics import pool_registry, pool_status, render_metrics
from assistant.local.pool.policy import AutoscalePolicy, PoolSignals, ScaleDecision
from assistant.local.pool.remote import RemotePool

__all__ = [
    "AutoscalePolicy",
    "PoolBackend",
    "PoolBase",
    "PoolDeadlineExceeded",
    "PoolError",
    "PoolOverloaded",
    "PoolSignals",
    "PoolUnavailable",
    "RemotePool",
    "ScaleDecision",
    "WorkerPool",
    "WorkerState",
    "pool_registry",
    "pool_status",
    "render_metrics",
]
