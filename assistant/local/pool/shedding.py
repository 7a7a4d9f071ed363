"""Load shedding: a service request that the local tier cannot start within ``server.max_queue_wait_s`` is
refused at once (HTTP 503 with Retry-After) instead of being left to time out in the queue.

The API admits each answering request before it starts (``PoolBase.admit``): a request that will run the
local model (profiles ``penny`` and ``penny-local``) is refused when the expected wait for a slot is over
the bound, and otherwise counted as pending work until it enters the queue, so a burst of arrivals sees
itself coming. The expected wait is the work ahead (in flight, queued, admitted but still retrieving)
beyond the free slots, times the recent mean service time, over the slots. A request that was admitted
and still has not started by the bound is refused then (the estimate was wrong), and one that did not
count as local at admission (``penny-paid``, whose budget ran out) is checked when it falls back to the
local tier. Either way the 503 comes before the request has held a slot; once it has, or once its stream
has sent content, it is never shed: its retries and second local tries wait as before.

The request's :class:`QueueTicket` rides along in a context variable from the API's thread to the pool's
``acquire``, so nothing between them (the cascade, the ``LocalBackend`` contract) needs to know about it.
A request without a ticket (the CLI, eval, a library caller) is never shed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass
class QueueTicket:
    """One service request's standing with the local tier's queue."""

    counted: bool = False  # in the dispatcher's pending work until the request enters the queue
    started: bool = False  # it has held a slot or streamed content: never shed from here on


_TICKET: ContextVar[QueueTicket | None] = ContextVar("penny_queue_ticket", default=None)


def current_ticket() -> QueueTicket | None:
    return _TICKET.get()


@contextmanager
def holding(ticket: QueueTicket | None) -> Iterator[None]:
    """Make ``ticket`` the current request's for the block (the thread that runs the cascade)."""
    token = _TICKET.set(ticket)
    try:
        yield
    finally:
        _TICKET.reset(token)


def run_holding(ticket: QueueTicket | None, function: Callable[..., T], *args: object) -> T:
    """``function(*args)`` with ``ticket`` current: for ``anyio.to_thread.run_sync``."""
    with holding(ticket):
        return function(*args)


def retry_after_s(expected_wait_s: float | None, max_wait_s: float) -> int:
    """When a refused request could be admitted if nothing new arrived: the expected wait's excess over
    the bound, at least 1 s."""
    return max(1, math.ceil((expected_wait_s or 0.0) - max_wait_s))
