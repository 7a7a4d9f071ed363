"""The simulator on the real policy: service-time scaling, the faster release, the bundled-trace goal, and
the bill with the burst above the floor on spot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from assistant.local.pool.pricing import InstancePrices, hours_within
from assistant.local.pool.simulate import (
    TRACES,
    SimResult,
    load_service_sample,
    load_trace,
    main,
    simulate,
    static_at_peak,
)
from assistant.settings import PoolSettings

# The defaults the sweep chose (assistant/local/pool/README.md, "Defaults"); explicit so the test does not
# depend on which of them are PoolSettings fields yet.


def settings(**overrides: object) -> PoolSettings:
    return PoolSettings(**{"tick_s": 1.0, "max_workers": 32, "min_workers": 1, **overrides})  # type: ignore[arg-type]


def test_service_scale_multiplies_the_sample_and_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "tiny.csv"
    trace.write_text("arrival_s\n" + "\n".join(str(t) for t in range(0, 120, 6)) + "\n")
    sample, _, _ = load_service_sample()
    main(["--trace", str(trace), "--service-scale", "0.2", "--max-workers", "8"])
    out = capsys.readouterr().out
    assert f"x 0.2, median {np.median(sample) * 0.2:.2f} s" in out
    assert "== tiny: 20 requests" in out
    with pytest.raises(SystemExit):
        main(["--trace", str(trace), "--service-scale", "0"])


def stepped(base: PoolSettings, step_s: float) -> PoolSettings:
    return base.model_copy(update={"scale_down_step_s": step_s})


def test_releasing_one_worker_per_step_costs_less_than_one_per_window() -> None:
    # a one-minute burst, then a request every 5 minutes: the burst's workers must go
    arrivals = np.concatenate([np.arange(0.0, 60.0, 2.0), np.arange(120.0, 900.0, 300.0)])
    service = np.array([10.0])
    base = settings(
        target_utilisation=1.0,
        scale_up_delay_s=0.0,
        scale_down_delay_s=60.0,
        rate_window_s=0.0,
        staffing_beta=0.0,
    )
    per_window = simulate(arrivals, service, stepped(base, 60.0), cold_start_s=5.0)
    per_step = simulate(arrivals, service, stepped(base, 5.0), cold_start_s=5.0)
    assert per_step.peak_workers == per_window.peak_workers >= 4
    assert per_step.worker_hours < 0.7 * per_window.worker_hours  # measured 0.40 vs 0.70
    assert per_step.pct(95) == pytest.approx(per_window.pct(95))  # the same waits: the burst was over


@pytest.mark.parametrize("trace", ["bursty_hour", "diurnal_day"])
def test_the_bundled_traces_meet_the_goal_with_the_default_settings(trace: str) -> None:
    arrivals = load_trace(Path(str(TRACES / f"{trace}.csv")))
    service, cold, _ = load_service_sample()
    auto = simulate(arrivals, service, settings(), cold_start_s=cold)  # PoolSettings' own defaults
    static = static_at_peak(arrivals, service, settings())
    assert auto.worker_hours / static.worker_hours <= 0.5
    assert auto.pct(95) <= 2.0


def test_the_floor_runs_on_demand_and_the_burst_is_priced_on_spot() -> None:
    # Two workers all hour (the floor), a third for 30 minutes, a fourth for 15: 2 + 0.5 + 0.25 worker-hours.
    spans = [(0.0, 3600.0), (0.0, 3600.0), (600.0, 2400.0), (900.0, 1800.0)]
    assert hours_within(spans, 2) == 2.0 and hours_within(spans, 3) == 2.5 and hours_within(spans, 0) == 0
    auto = SimResult("autoscaled", 10, 2.75, np.zeros(1), floor_hours=2.0)
    static = SimResult("static", 10, 4.0, np.zeros(1))
    line = InstancePrices(on_demand=0.10, spot=0.04).costs(auto, static)
    # on demand 2.75 x 0.10 = 0.275; floor 2 x 0.10 + burst 0.75 x 0.04 = 0.23 (84 %); static 0.40
    assert line == (
        "cost: autoscaled on demand $0.28; floor on demand + 0.75 burst wkr-h on spot $0.23 "
        "(84% of on demand); static at peak on demand $0.40"
    )
    assert "spot" not in InstancePrices(on_demand=0.10, spot=None).costs(auto, static)


def test_a_simulated_pool_splits_its_worker_hours_at_the_floor() -> None:
    arrivals = np.concatenate([np.arange(0.0, 60.0, 2.0), np.arange(120.0, 900.0, 300.0)])
    result = simulate(
        arrivals, np.array([10.0]), settings(min_workers=1, rate_window_s=0.0), cold_start_s=5.0
    )
    assert result.peak_workers >= 3  # the burst needed more than the floor
    assert 0 < result.floor_hours < result.worker_hours  # one worker is the floor; the rest was burst
    # the floor's one worker is up from the start to the end of the last request (720 s + 10 s of service)
    assert 720 / 3600 <= result.floor_hours <= 740 / 3600
