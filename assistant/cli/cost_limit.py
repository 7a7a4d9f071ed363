"""``--max-cost-usd`` for commands that pay the paid tier on Penny's own behalf (``penny eval run``,
``penny calibrate``): the amount as micro-USD, and the exit code when the limit stops a command. Public so
plugins' commands parse it and exit alike."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import click

EXIT_COST_LIMIT = 3


def parse_max_cost_usd(value: str | None) -> int | None:
    """``--max-cost-usd`` in micro-USD (sub-micro digits dropped); None: no limit."""
    if value is None:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise click.BadParameter(
            f"{value!r} is not an amount in USD, e.g. 0.50", param_hint="--max-cost-usd"
        ) from exc
    if amount < 0:
        raise click.BadParameter("must be ≥ 0", param_hint="--max-cost-usd")
    return int(amount * 1_000_000)
