"""The autoscaling policy on an injected clock: no processes, no sleeping."""

from __future__ import annotations

import pytest

from assistant.pool.policy import AutoscalePolicy, PoolSignals
from assistant.settings import PoolSettings

GB = 1024**3


def make(**overrides: object) -> AutoscalePolicy:
    base: dict[str, object] = {
        "min_workers": 1,
        "max_workers": 4,
        "target_utilisation": 1.0,
        "queue_threshold": 1,
        "scale_up_delay_s": 2.0,
        "scale_down_delay_s": 60.0,
        "memory_limit_bytes": 8 * GB,
        "worker_memory_estimate_bytes": GB,
    }
    base.update(overrides)
    return AutoscalePolicy(PoolSettings(**base))


def signals(in_flight: int, queued: int, ready: int, starting: int = 0, **kw: int) -> PoolSignals:
    return PoolSignals(
        in_flight=in_flight, queued=queued, workers_starting=starting, workers_ready=ready, **kw
    )


def test_scale_up_waits_the_short_delay_then_jumps_to_the_desired_count() -> None:
    policy = make()
    busy = signals(in_flight=1, queued=2, ready=1)  # desired = 3
    assert policy.decide(busy, now=0.0).delta == 0
    assert policy.decide(busy, now=1.9).delta == 0
    decision = policy.decide(busy, now=2.0)
    assert decision.delta == 2 and decision.desired == 3


def test_a_burst_that_clears_before_the_delay_starts_nothing() -> None:
    policy = make()
    assert policy.decide(signals(1, 2, ready=1), now=0.0).delta == 0
    assert policy.decide(signals(1, 0, ready=1), now=1.0).delta == 0  # queue drained: timer resets
    assert policy.decide(signals(1, 2, ready=1), now=2.5).delta == 0  # a new window starts here
    assert policy.decide(signals(1, 2, ready=1), now=4.5).delta == 2


def test_busy_slots_without_a_queue_do_not_scale_up() -> None:
    policy = make(target_utilisation=0.5)  # 1 in flight wants 2 workers by utilisation alone
    for t in range(10):
        assert policy.decide(signals(1, 0, ready=1), now=float(t)).delta == 0


def test_starting_workers_count_so_a_scale_up_is_not_repeated() -> None:
    policy = make(scale_up_delay_s=0.0)
    assert policy.decide(signals(1, 2, ready=1), now=0.0).delta == 2
    assert policy.decide(signals(1, 2, ready=1, starting=2), now=0.5).delta == 0


def test_scale_down_one_worker_per_stable_window() -> None:
    policy = make()
    idle = signals(0, 0, ready=3)
    assert policy.decide(idle, now=0.0).delta == 0
    assert policy.decide(idle, now=59.0).delta == 0
    assert policy.decide(idle, now=60.0).delta == -1
    two = signals(0, 0, ready=2)
    assert policy.decide(two, now=61.0).delta == 0  # the window restarted
    assert policy.decide(two, now=120.0).delta == -1
    one = signals(0, 0, ready=1)
    assert policy.decide(one, now=500.0).delta == 0  # min_workers


def test_a_short_lull_does_not_scale_down() -> None:
    policy = make()
    assert policy.decide(signals(0, 0, ready=2), now=0.0).delta == 0
    assert policy.decide(signals(2, 0, ready=2), now=30.0).delta == 0  # load is back: window resets
    assert policy.decide(signals(0, 0, ready=2), now=70.0).delta == 0
    assert policy.decide(signals(0, 0, ready=2), now=130.0).delta == -1


def test_memory_guard_cuts_a_scale_up_to_what_fits() -> None:
    policy = make(scale_up_delay_s=0.0, memory_limit_bytes=3 * GB)
    # two workers measured at 1 GB each: room for one more, though four are wanted
    decision = policy.decide(signals(2, 6, ready=2, memory_bytes=2 * GB, worker_memory_bytes=GB), now=0.0)
    assert decision.delta == 1 and decision.memory_blocked
    full = signals(3, 6, ready=3, memory_bytes=3 * GB, worker_memory_bytes=GB)
    blocked = policy.decide(full, now=1.0)
    assert blocked.delta == 0 and blocked.memory_blocked


def test_max_workers_caps_and_min_workers_floors() -> None:
    policy = make(scale_up_delay_s=0.0, max_workers=2)
    assert policy.decide(signals(1, 50, ready=1), now=0.0).delta == 1
    assert policy.decide(signals(2, 50, ready=2), now=1.0).delta == 0
    floor = make(min_workers=2)
    assert floor.decide(signals(0, 0, ready=0), now=0.0).delta == 2  # start-up or crash: no delay


def test_scale_to_zero_and_cold_start() -> None:
    policy = make(min_workers=0, scale_to_zero=True, scale_down_delay_s=10.0)
    assert policy.decide(signals(0, 0, ready=1), now=0.0).delta == 0
    assert policy.decide(signals(0, 0, ready=1), now=10.0).delta == -1
    assert policy.decide(signals(0, 0, ready=0), now=11.0).delta == 0
    first = policy.decide(signals(0, 1, ready=0), now=12.0)  # a request arrives: no delay from zero
    assert first.delta == 1


def test_inconsistent_settings_are_rejected_with_the_fix() -> None:
    with pytest.raises(ValueError, match="scale_to_zero"):
        AutoscalePolicy(PoolSettings(min_workers=0))
    with pytest.raises(ValueError, match="max_workers"):
        AutoscalePolicy(PoolSettings(min_workers=5, max_workers=2))
