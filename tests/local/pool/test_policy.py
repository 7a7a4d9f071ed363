"""The autoscaling policy on an injected clock: no processes, no sleeping."""

from __future__ import annotations

import pytest

from assistant.local.pool.policy import AutoscalePolicy, PoolSignals
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
    return AutoscalePolicy(PoolSettings(**base))  # type: ignore[arg-type]


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
    with pytest.raises(ValueError, match="sized"):  # auto must be resolved for a host first
        AutoscalePolicy(PoolSettings())


# -- HPA-style stabilisation: hold the window's peak, then release one worker per step ----------------------


def test_scale_down_holds_a_recent_peak_then_releases_one_worker_per_step() -> None:
    policy = make(scale_down_step_s=5.0)  # window 60 s
    assert policy.decide(signals(4, 0, ready=4), now=0.0).delta == 0  # a peak: 4 busy wants 4 workers
    idle = signals(0, 0, ready=4)
    for t in (1.0, 30.0, 60.0):  # the peak at t=0 is still in the window
        decision = policy.decide(idle, now=t)
        assert decision.delta == 0 and "recent peak 4" in decision.reason
    assert policy.decide(idle, now=61.0).delta == -1  # the peak left the window
    three = signals(0, 0, ready=3)
    assert policy.decide(three, now=62.0).delta == 0  # one worker per step, not all at once
    assert policy.decide(three, now=66.0).delta == -1  # a step later, not a whole window later
    assert policy.decide(signals(0, 0, ready=2), now=71.0).delta == -1
    assert policy.decide(signals(0, 0, ready=1), now=76.0).delta == 0  # min_workers


def test_a_peak_during_the_release_holds_the_rest_for_another_window() -> None:
    policy = make(scale_down_step_s=5.0)
    policy.decide(signals(4, 0, ready=4), now=0.0)
    assert policy.decide(signals(0, 0, ready=4), now=61.0).delta == -1
    assert policy.decide(signals(3, 0, ready=3), now=63.0).delta == 0  # load is back at 3
    for t in (70.0, 100.0, 123.0):
        assert policy.decide(signals(0, 0, ready=3), now=t).delta == 0
    assert policy.decide(signals(0, 0, ready=3), now=124.0).delta == -1


def test_a_queue_blocks_scale_down_whatever_the_arithmetic() -> None:
    policy = make(scale_down_step_s=5.0)
    for t in range(0, 200, 10):  # one busy, one waiting: desired 2 of 4, but requests are waiting
        assert policy.decide(signals(1, 1, ready=4), now=float(t)).delta == 0


def test_step_equal_to_the_window_is_the_old_one_worker_per_window() -> None:
    policy = make(scale_down_step_s=60.0)
    assert policy.decide(signals(0, 0, ready=3), now=0.0).delta == 0
    assert policy.decide(signals(0, 0, ready=3), now=60.0).delta == -1
    assert policy.decide(signals(0, 0, ready=2), now=100.0).delta == 0
    assert policy.decide(signals(0, 0, ready=2), now=120.0).delta == -1


# -- offered load (Little's law) with square-root staffing ---------------------------------------------------


def steady(policy: AutoscalePolicy, rate: float, service_s: float, until: float, **kw: int) -> None:
    """Feed ``rate`` arrivals per second for ``until`` seconds, one decision a second."""
    for t in range(int(until)):
        policy.decide(
            signals(
                kw.get("in_flight", 0),
                0,
                ready=kw.get("ready", 1),
                arrivals_total=int(rate * t),
                mean_service_s=service_s,
            ),
            now=float(t),
        )


def test_offered_load_sizes_the_scale_up_beyond_the_instantaneous_queue() -> None:
    policy = make(max_workers=16, scale_up_delay_s=0.0, rate_window_s=60.0, staffing_beta=1.5)
    steady(policy, rate=0.5, service_s=10.0, until=60, in_flight=1)
    assert policy.arrival_rate() == pytest.approx(0.5, abs=0.02)
    # R = 0.5 × 10 = 5 busy slots on average; 5 + 1.5 × sqrt(5) = 8.4 -> 9 workers, where the queue alone
    # (1 busy + 1 waiting, utilisation 1.0) asks for 2.
    queued = signals(1, 1, ready=1, arrivals_total=30, mean_service_s=10.0)
    decision = policy.decide(queued, now=60.0)
    assert decision.desired == 9 and decision.delta == 8


def test_offered_load_keeps_warm_workers_through_short_lulls() -> None:
    policy = make(max_workers=16, rate_window_s=60.0, staffing_beta=1.0)
    # 0.2 requests/s of 10 s each: R = 2 busy slots; 2 + sqrt(2) = 3.4 -> keep 4 even while none is in flight
    for t in range(300):
        decision = policy.decide(
            signals(0, 0, ready=4, arrivals_total=t // 5, mean_service_s=10.0), now=float(t)
        )
        assert decision.delta == 0
        assert decision.desired == 4 or t < 60  # the rate is averaged over a full window once there is one
    # traffic stops: once the rate window and then the stabilisation window have passed, release
    deltas = [
        policy.decide(signals(0, 0, ready=4, arrivals_total=60, mean_service_s=10.0), now=float(t)).delta
        for t in range(300, 430)
    ]
    assert -1 in deltas and deltas.index(-1) > 60


def test_without_arrival_signals_the_offered_load_term_is_off() -> None:
    policy = make(rate_window_s=60.0, staffing_beta=1.5)
    for t in range(100):
        policy.decide(signals(0, 0, ready=1, mean_service_s=10.0), now=float(t))
    assert policy.arrival_rate() == 0.0
    assert policy.staffed(signals(0, 0, ready=1, mean_service_s=10.0)) == 0
    off = make(rate_window_s=0.0)
    steady(off, rate=1.0, service_s=10.0, until=30)
    assert off.arrival_rate() == 0.0


def test_knobs_come_from_settings() -> None:
    settings = PoolSettings(max_workers=4).model_copy(
        update={"scale_down_step_s": 30.0, "staffing_beta": 0.5}
    )
    from_settings = AutoscalePolicy(settings)
    assert from_settings.settings.scale_down_step_s == 30.0 and from_settings.settings.staffing_beta == 0.5
    stepped = AutoscalePolicy(settings.model_copy(update={"scale_down_step_s": 7.0}))
    assert stepped.settings.scale_down_step_s == 7.0
