"""Load shedding on the pool's queue, with opaque worker handles (no processes, no HTTP): the expected wait,
admission, the queue-wait bound, and what is never shed."""

from __future__ import annotations

import threading
import time

import pytest

from assistant.local.pool import PoolDeadlineExceeded, PoolOverloaded, RemotePool
from assistant.local.pool.dispatcher import Dispatcher
from assistant.local.pool.shedding import QueueTicket, holding, retry_after_s
from assistant.settings import PoolSettings


class W:
    """A worker handle, identity-hashed like the pool's."""


def test_the_expected_wait_is_the_work_beyond_the_free_slots_over_the_slots() -> None:
    dispatcher = Dispatcher()
    assert dispatcher.expected_wait_s(4.0) is None  # no slots: unknown
    dispatcher.add_worker(W(), 1)
    dispatcher.add_worker(W(), 1)
    assert dispatcher.expected_wait_s(None) is None  # no service time measured yet: unknown
    assert dispatcher.expected_wait_s(4.0) == 0.0  # a free slot
    held = [dispatcher.acquire(1.0), dispatcher.acquire(1.0)]
    assert dispatcher.expected_wait_s(4.0) == 2.0  # both busy: the first of two to finish, on average
    assert dispatcher.admit(max_wait_s=10.0, service_s=4.0) is None  # counted as work on its way
    assert dispatcher.pending == 1
    assert dispatcher.expected_wait_s(4.0) == 4.0
    assert dispatcher.admit(max_wait_s=5.0, service_s=4.0) is None
    assert dispatcher.admit(max_wait_s=5.0, service_s=4.0) == 6.0  # refused: not counted
    assert dispatcher.pending == 2
    dispatcher.dismiss()  # one admitted request ended without queueing
    assert dispatcher.pending == 1
    for lease in held:
        dispatcher.release(lease)
    lease = dispatcher.acquire(1.0, admitted=True)  # the admitted one queues: no longer pending
    assert dispatcher.pending == 0
    dispatcher.release(lease)


def test_retry_after_is_the_expected_waits_excess_over_the_bound() -> None:
    assert retry_after_s(12.2, 5.0) == 8
    assert retry_after_s(5.1, 5.0) == 1
    assert retry_after_s(None, 5.0) == 1


def pool(max_queue_wait_s: float | None, service_s: float = 4.0) -> tuple[RemotePool, W]:
    """A pool with one one-slot worker whose recent answers took ``service_s`` (never started: no HTTP)."""
    remote = RemotePool(["http://127.0.0.1:9"], PoolSettings(), max_queue_wait_s=max_queue_wait_s)
    worker = W()
    remote.dispatcher.add_worker(worker, 1)
    remote.timings.service_s.append(service_s)
    return remote, worker


def test_a_request_that_could_not_start_in_time_is_refused_at_admission() -> None:
    shed, _ = pool(max_queue_wait_s=5.0)
    first = shed.admit(local=True)  # a free slot: admitted, counted
    assert first.counted and shed.expected_wait_s() == 4.0
    second = shed.admit(local=True)  # one ahead, 4 s: still within 5 s
    with pytest.raises(PoolOverloaded) as refused:
        shed.admit(local=True)  # two ahead on one slot: 8 s
    assert refused.value.retry_after_s == 3 and refused.value.status_code == 503
    assert "retry after 3 s" in str(refused.value)
    assert shed.shed == {"estimate": 1}
    paid = shed.admit(local=False)  # a penny-paid request is not local work: admitted, not counted
    assert not paid.counted
    for ticket in (first, second, paid):
        shed.dismiss(ticket)
        shed.dismiss(ticket)  # idempotent
    assert shed.dispatcher.pending == 0
    assert shed.admit(local=True).counted  # the work went away: admitted again


def test_without_a_bound_or_a_ticket_nothing_is_shed() -> None:
    unbounded, _ = pool(max_queue_wait_s=None)
    tickets = [unbounded.admit(local=True) for _ in range(20)]
    assert not any(ticket.counted for ticket in tickets)
    bounded, _ = pool(max_queue_wait_s=0.1)
    busy = bounded.acquire(time.monotonic() + 1)  # no ticket (CLI, eval): the old behaviour
    with pytest.raises(PoolDeadlineExceeded):
        bounded.acquire(time.monotonic() + 0.3)
    bounded.dispatcher.release(busy)
    assert bounded.shed == {}


def test_an_admitted_request_waits_at_most_the_bound_then_gets_a_503() -> None:
    shed, _ = pool(max_queue_wait_s=0.3, service_s=0.01)  # the estimate admits; the slot stays busy
    busy = shed.acquire(time.monotonic() + 1)
    ticket = shed.admit(local=True)
    began = time.monotonic()
    with holding(ticket), pytest.raises(PoolOverloaded):
        shed.acquire(time.monotonic() + 60)  # the deadline is far: the bound decides
    assert 0.25 < time.monotonic() - began < 5
    assert shed.shed == {"queue_wait": 1}
    assert not ticket.started and shed.dispatcher.pending == 0 and shed.dispatcher.queued == 0
    shed.dispatcher.release(busy)


def test_a_fallback_to_the_local_tier_is_checked_when_it_queues() -> None:
    """A penny-paid request whose budget ran out: not counted at admission, checked when it needs a slot."""
    shed, _ = pool(max_queue_wait_s=5.0)
    busy = shed.acquire(time.monotonic() + 1)
    ahead = shed.admit(local=True)  # 4 s: admitted; then 1 in flight + 1 admitted on one slot: 8 s
    paid = shed.admit(local=False)
    with holding(paid), pytest.raises(PoolOverloaded):
        shed.acquire(time.monotonic() + 60)
    assert shed.shed == {"estimate": 1}
    shed.dismiss(ahead)
    shed.dispatcher.release(busy)


def test_a_request_that_has_started_is_never_shed() -> None:
    """Once it held a slot (a retry, a second local try) or streamed content, it waits as before."""
    shed, _ = pool(max_queue_wait_s=0.1, service_s=30.0)
    busy = shed.acquire(time.monotonic() + 1)
    started = QueueTicket(started=True)
    got: list[object] = []

    def wait_for_slot() -> None:
        with holding(started):
            got.append(shed.acquire(time.monotonic() + 10))

    waiter = threading.Thread(target=wait_for_slot)
    waiter.start()
    time.sleep(0.5)  # five times the bound, and the expected wait is 30 s: still waiting
    assert got == [] and shed.dispatcher.queued == 1
    shed.dispatcher.release(busy)
    waiter.join(5)
    assert len(got) == 1 and shed.shed == {}


def test_holding_a_slot_marks_the_ticket_started() -> None:
    shed, _ = pool(max_queue_wait_s=5.0)
    ticket = shed.admit(local=True)
    with holding(ticket):
        lease = shed.acquire(time.monotonic() + 1)
    assert ticket.started and not ticket.counted and shed.dispatcher.pending == 0
    shed.dispatcher.release(lease)
