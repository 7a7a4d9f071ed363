"""What a simulated pool costs (``simulate.py`` prints it): worker-hours at the ledger's instance prices, with
the workers above the policy's floor priced on spot capacity (deploy/kubernetes/workers-spot.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assistant.local.pool.simulate import SimResult
    from assistant.settings import LedgerSettings


def hours_within(spans: list[tuple[float, float]], floor: int) -> float:
    """Hours of the first ``floor`` workers alive at each moment: the integral of min(alive, floor)."""
    changes = sorted([(start, 1) for start, _ in spans] + [(stop, -1) for _, stop in spans])
    alive, last, seconds = 0, 0.0, 0.0
    for at, step in changes:
        seconds += min(alive, floor) * (at - last)
        alive, last = alive + step, at
    return seconds / 3600


@dataclass(frozen=True)
class InstancePrices:
    """USD per worker-hour on demand and on spot, from the price table's [local] section."""

    on_demand: float
    spot: float | None

    @classmethod
    def from_table(cls, ledger: LedgerSettings) -> InstancePrices:
        """The prices the ledger charges the local tier at (its price table, and the instance override)."""
        from assistant.ledger.prices import MICRO, PriceTable

        table = PriceTable.load(ledger.prices_file)
        spot = table.local_spot_micro_usd_per_hour
        on_demand = ledger.local_instance_usd_per_hour
        if on_demand is None:
            on_demand = table.local_micro_usd_per_hour / MICRO
        return cls(float(on_demand), None if spot is None else spot / MICRO)

    def costs(self, auto: SimResult, static: SimResult) -> str:
        """The trace's bill three ways: all on demand, the floor on demand and the burst on spot, and a
        static pool sized for the peak on demand."""
        on_demand = auto.worker_hours * self.on_demand
        text = f"cost: autoscaled on demand ${on_demand:.2f}"
        if self.spot is not None:
            burst = auto.worker_hours - auto.floor_hours
            mixed = auto.floor_hours * self.on_demand + burst * self.spot
            share = f" ({mixed / on_demand:.0%} of on demand)" if on_demand else ""
            text += f"; floor on demand + {burst:.2f} burst wkr-h on spot ${mixed:.2f}{share}"
        return text + f"; static at peak on demand ${static.worker_hours * self.on_demand:.2f}"
