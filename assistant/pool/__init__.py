"""The local tier as a pool of worker processes with an autoscaler (issue #8; see README.md here).

``WorkerPool`` runs the processes, ``PoolBackend`` is the ``LocalBackend`` the cascade calls, and
``pool_status``/``pool_registry`` are the signals for ``GET /v1/pool`` and ``/metrics``.
"""

from assistant.pool.backend import PoolBackend
from assistant.pool.manager import (
    PoolDeadlineExceeded,
    PoolError,
    PoolUnavailable,
    WorkerPool,
    WorkerState,
)
from assistant.pool.metrics import pool_registry, pool_status, render_metrics
from assistant.pool.policy import AutoscalePolicy, PoolSignals, ScaleDecision

__all__ = [
    "AutoscalePolicy",
    "PoolBackend",
    "PoolDeadlineExceeded",
    "PoolError",
    "PoolSignals",
    "PoolUnavailable",
    "ScaleDecision",
    "WorkerPool",
    "WorkerState",
    "pool_registry",
    "pool_status",
    "render_metrics",
]
