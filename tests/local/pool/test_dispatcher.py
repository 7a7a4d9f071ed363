"""The dispatcher on opaque worker handles: no processes, no HTTP. Prefix affinity and its fallbacks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from assistant.local.pool.backend import affinity_key
from assistant.local.pool.dispatcher import Dispatcher, Lease
from tests.conftest import REPO
from tests.support.servers import wait_for


class W:
    """A worker handle, identity-hashed like the pool's."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def two(slots: int = 1, **kw: int) -> tuple[Dispatcher, W, W]:
    dispatcher, a, b = Dispatcher(**kw), W("a"), W("b")
    dispatcher.add_worker(a, slots)
    dispatcher.add_worker(b, slots)
    return dispatcher, a, b


def serve_on_b(dispatcher: Dispatcher, a: W, key: str) -> None:
    """Make ``key``'s last worker b: a is busy when it arrives."""
    hold = dispatcher.acquire(1.0)
    assert hold.worker is a  # equally free: the first worker wins
    lease = dispatcher.acquire(1.0, affinity=key)
    dispatcher.release(hold)
    dispatcher.release(lease)


def test_a_key_goes_back_to_the_worker_that_last_served_it() -> None:
    dispatcher, a, b = two()
    serve_on_b(dispatcher, a, "chat-1")
    assert dispatcher.acquire(1.0).worker is a  # without a key: the first of the equally free
    lease = dispatcher.acquire(1.0, affinity="chat-1")
    assert lease.worker is b
    assert (dispatcher.affinity_hits, dispatcher.affinity_misses) == (1, 0)


def test_the_last_worker_is_preferred_while_it_has_a_free_slot_then_the_least_loaded() -> None:
    dispatcher, a, b = two(slots=2)
    serve_on_b(dispatcher, a, "chat-1")
    first = dispatcher.acquire(1.0, affinity="chat-1")
    second = dispatcher.acquire(1.0, affinity="chat-1")  # a has 2 free, b 1: b all the same
    assert (first.worker, second.worker) == (b, b)
    third = dispatcher.acquire(1.0, affinity="chat-1")  # b full: a, at once rather than a wait for b
    assert third.worker is a
    assert (dispatcher.affinity_hits, dispatcher.affinity_misses) == (2, 1)
    for lease in (first, second, third):
        dispatcher.release(lease)
    assert dispatcher.acquire(1.0, affinity="chat-1").worker is a  # the key follows its latest worker


def test_a_withdrawn_worker_is_forgotten() -> None:
    dispatcher, a, b = two()
    serve_on_b(dispatcher, a, "chat-1")
    dispatcher.withdraw_worker(b)
    dispatcher.add_worker(b, 1)  # the same handle back (a remote URL that recovered): a cold cache
    lease = dispatcher.acquire(1.0, affinity="chat-1")
    assert lease.worker is a
    assert (dispatcher.affinity_hits, dispatcher.affinity_misses) == (0, 0)  # unknown again, not a miss


def test_avoid_wins_over_affinity() -> None:
    dispatcher, a, b = two()
    serve_on_b(dispatcher, a, "chat-1")
    assert dispatcher.acquire(1.0, avoid=b, affinity="chat-1").worker is a  # a retry after b failed


def test_the_map_is_a_bounded_lru() -> None:
    dispatcher, a, b = two(affinity_keys=2)
    for key in ("k1", "k2"):
        serve_on_b(dispatcher, a, key)
    dispatcher.release(dispatcher.acquire(1.0, affinity="k1"))  # k1 used again: k2 is now the oldest
    serve_on_b(dispatcher, a, "k3")  # a third key evicts k2
    kept = dispatcher.acquire(1.0, affinity="k1")
    assert kept.worker is b
    dispatcher.release(kept)
    assert dispatcher.acquire(1.0, affinity="k2").worker is a  # forgotten: the first of the free, a


def test_affinity_never_lets_a_request_jump_the_queue() -> None:
    dispatcher, a, b = two()
    serve_on_b(dispatcher, a, "chat-1")
    on_a, on_b = dispatcher.acquire(1.0), dispatcher.acquire(1.0)
    assert (on_a.worker, on_b.worker) == (a, b)
    got: dict[str, Lease] = {}

    def wait(name: str, key: str | None) -> None:
        got[name] = dispatcher.acquire(10.0, affinity=key)

    first = threading.Thread(target=wait, args=("first", None))
    first.start()
    wait_for(lambda: dispatcher.queued == 1, 5, "the first request to queue")
    second = threading.Thread(target=wait, args=("second", "chat-1"))
    second.start()
    wait_for(lambda: dispatcher.queued == 2, 5, "the second request to queue")
    dispatcher.release(on_b)  # chat-1's worker frees up, but the first in line takes it
    first.join(5)
    assert got["first"].worker is b and "second" not in got
    dispatcher.release(on_a)
    second.join(5)
    assert got["second"].worker is a


def test_the_key_names_the_conversation_by_its_first_two_messages() -> None:
    system = {"role": "system", "content": "Answer from the sources."}
    first = {"role": "user", "content": "Sources: ... Question: who?"}
    turn_1 = [system, first]
    turn_2 = [
        system,
        first,
        {"role": "assistant", "content": "William"},
        {"role": "user", "content": "when?"},
    ]
    other = [system, {"role": "user", "content": "Sources: ... Question: where?"}]
    assert affinity_key(turn_1) == affinity_key(turn_2)
    assert affinity_key(turn_1) != affinity_key(other)
    assert affinity_key([first]) != affinity_key([system, first])
    # Stable across processes (Python's hash() of a str is salted per process).
    code = f"from assistant.local.pool.backend import affinity_key; print(affinity_key({turn_2!r}))"
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == affinity_key(turn_1)
