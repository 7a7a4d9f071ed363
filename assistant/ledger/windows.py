"""Budget windows: when the current day / month / total window started and when it resets (UTC)."""

from __future__ import annotations

from datetime import datetime, timedelta

from assistant.ledger.records import Window

EPOCH = datetime(1970, 1, 1)


def window_bounds(window: Window, now: datetime) -> tuple[datetime, datetime | None]:
    """(start, reset) of the window containing ``now`` (naive UTC); ``total`` never resets."""
    if window == "day":
        start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start, start + timedelta(days=1)
    if window == "month":
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        reset = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else start.replace(month=start.month + 1)
        )
        return start, reset
    if window == "total":
        return EPOCH, None
    raise ValueError(f"unknown budget window {window!r}: use day, month or total")
