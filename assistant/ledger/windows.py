"""Budget windows: when the current day / month / total window started and when it resets (UTC), and where
spend at its rate so far ends up when it does."""

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


def elapsed_share(window: Window, now: datetime) -> float | None:
    """How much of the window containing ``now`` has passed (0..1); None for ``total``, which never ends."""
    start, reset = window_bounds(window, now)
    if reset is None:
        return None
    return (now - start) / (reset - start)


def projected_spend(spend_micro_usd: int, window: Window, now: datetime) -> int | None:
    """Spend at the window's end if it goes on at the rate so far (linear: spend ÷ elapsed share); None for
    a window without an end. At least an hour counts as elapsed, so the first minutes of a window do not
    project a fortune."""
    start, reset = window_bounds(window, now)
    if reset is None:
        return None
    elapsed = max(now - start, timedelta(hours=1))
    whole = reset - start
    if elapsed >= whole:
        return spend_micro_usd
    return -(-spend_micro_usd * int(whole.total_seconds()) // int(elapsed.total_seconds()))
