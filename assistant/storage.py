"""Storage accrual: each collection's index on disk, measured (``index.footprint``) and recorded in the
ledger as one row per collection and day at the price table's ``[storage]`` rate.

``penny usage accrue-storage`` runs it; ``penny serve`` runs it at start-up and then once per UTC day from
its periodic ledger task. Without a server running, a daily cron line does the same (README.md). A day
already accrued is left as first measured, so any number of runs a day charge once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from assistant.ledger.base import naive_utc
from index.footprint import Footprint, FootprintUnavailable, measure
from index.store import chroma_url

if TYPE_CHECKING:
    from assistant.ledger import Ledger
    from assistant.ledger.costs import StorageAccrual
    from assistant.settings import Settings

log = logging.getLogger("penny.storage")


def footprints(settings: Settings) -> dict[str, Footprint]:
    """Every collection's bytes on disk. A Chroma server keeps its files elsewhere: unmeasurable here."""
    url = chroma_url(settings.index.chroma_url)
    if url:
        raise FootprintUnavailable(
            f"Chroma runs as a server ({url}): its files are not on this machine; run `penny usage "
            "accrue-storage` where its data directory is, with the same ledger"
        )
    return measure(settings.chroma_path, settings.bm25_path, settings.sentence_vectors_path)


def accrue_storage(
    settings: Settings, ledger: Ledger, day: date | None = None
) -> list[tuple[StorageAccrual, Footprint]]:
    """Measure every collection and record ``day``'s storage cost (default: today, UTC)."""
    found = footprints(settings)
    accrued = ledger.accrue_storage({name: f.bytes for name, f in found.items()}, day)
    return [(row, found[row.collection]) for row in accrued]


@dataclass
class DailyAccrual:
    """Accrues at the first tick of each UTC day (a tick is the server's periodic ledger task)."""

    settings: Settings
    ledger: Ledger
    last_day: date | None = None

    def tick(self) -> None:
        today = naive_utc(self.ledger.clock()).date()
        if today == self.last_day:
            return
        try:
            accrued = accrue_storage(self.settings, self.ledger, today)
        except FootprintUnavailable as exc:
            log.info("storage not accrued: %s", exc)
        else:
            log.info("storage accrued for %s: %d collection(s)", today, len(accrued))
        self.last_day = today  # an unmeasurable index stays so all day: said once a day, not every tick
