"""Load shedding on the answering routes: a request the local tier could not start within
``server.max_queue_wait_s`` is refused with 503 and Retry-After before anything runs (see
``assistant/local/pool/shedding.py``).

``queue_ticket`` admits a request before its response starts, so a refusal is a real HTTP 503, also for a
stream; the ticket then travels with the cascade's thread (``run_holding``) and is dismissed when the
request ends, however it ends. Without a worker pool (the local model in-process) nothing is shed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import anyio
from litestar.datastructures import State

from assistant.local.pool.shedding import QueueTicket, run_holding

T = TypeVar("T")


def queue_ticket(state: State, mode: str) -> QueueTicket | None:
    """Admit the request to the local tier's queue, or raise ``PoolOverloaded`` (503). A ``penny-paid``
    request is not counted as local work: it is checked only if it falls back to the local tier."""
    pool = state.penny.pool
    if pool is None:
        return None
    return pool.admit(local=mode != "paid")


def dismiss(state: State, ticket: QueueTicket | None) -> None:
    """The request is over; safe to call more than once."""
    if ticket is not None:
        state.penny.pool.dismiss(ticket)


async def in_thread(ticket: QueueTicket | None, function: Callable[..., T], *args: object) -> T:
    """``function(*args)`` in a worker thread, with the request's ticket current there."""
    return await anyio.to_thread.run_sync(run_holding, ticket, function, *args)
