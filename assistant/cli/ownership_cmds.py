"""``penny usage --by collection|team`` (total cost of ownership) and ``penny usage accrue-storage``."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

import click

from assistant.cli.ledger_cmds import fail, operator_ledger, table
from assistant.ledger import OwnershipBy

if TYPE_CHECKING:
    from assistant.ledger.ownership import OwnershipRow

HEADERS = (
    "ANSWERS",
    "PAID_USD",
    "LOCAL_USD",
    "RETRIEVAL_EVAL_USD",
    "INGESTS",
    "INGEST_S",
    "INGEST_USD",
    "DISK_MIB",
    "STORAGE_USD",
    "TOTAL_USD",
)


def _cells(row: OwnershipRow, as_csv: bool) -> list[Any]:
    from assistant.ledger.prices import format_usd

    def usd(micro_usd: int) -> str:
        return f"{micro_usd / 1_000_000:.6f}" if as_csv else format_usd(micro_usd)

    return [
        row.answers,
        usd(row.paid_micro_usd),
        usd(row.local_micro_usd),
        usd(row.retrieval_micro_usd + row.evaluation_micro_usd),
        row.ingests,
        f"{row.ingest_seconds:.1f}",
        usd(row.ingest_micro_usd),
        f"{row.storage_bytes / 2**20:.1f}",
        usd(row.storage_micro_usd),
        usd(row.total_micro_usd),
    ]


def ownership_table(
    by: OwnershipBy, *, user: str | None, team: str | None, since: date | None, as_csv: bool
) -> None:
    """What each collection or team has cost: its answers (paid, local generation, retrieval and the
    evaluator), its ingest runs and its days of storage, and the total."""
    from assistant.ledger import LedgerError
    from assistant.ledger.ownership import OwnershipRow

    try:
        rows = operator_ledger().ownership(by=by, user=user, team=team, since=since)
    except LedgerError as exc:
        raise fail(exc) from exc
    body = [[row.key, *_cells(row, as_csv)] for row in rows]
    if not as_csv:
        total = OwnershipRow("TOTAL")
        for row in rows:
            for name, value in vars(row).items():
                if name != "key":
                    setattr(total, name, getattr(total, name) + value)
        body.append(["TOTAL", *_cells(total, False)])
    table([by.upper(), *HEADERS], body, as_csv)
    unknown = sum(row.compute_unknown for row in rows)
    if as_csv:
        return
    if unknown:
        click.echo(
            f"{unknown} answer(s) were recorded before retrieval and evaluator compute was priced: "
            "left out of RETRIEVAL_EVAL, not counted as zero."
        )
    if user is not None:
        click.echo("Storage belongs to collections, not users: none is shown for one user.")


def accrue() -> None:
    """Measure every collection on disk and record today's storage cost."""
    from assistant.ledger.prices import format_usd
    from assistant.settings import get_settings
    from assistant.storage import accrue_storage
    from index.footprint import FootprintUnavailable

    ledger = operator_ledger()
    try:
        accrued = accrue_storage(get_settings(), ledger)
    except FootprintUnavailable as exc:
        raise fail(exc) from exc
    rows = [
        [
            row.collection,
            row.day.isoformat(),
            found.records,
            f"{found.own_bytes / 2**20:.1f}",
            f"{found.shared_bytes / 2**20:.1f}",
            f"{row.bytes / 2**20:.1f}",
            format_usd(row.micro_usd),
            "accrued" if row.new else "already accrued today",
        ]
        for row, found in accrued
    ]
    table(["COLLECTION", "DAY", "RECORDS", "OWN_MIB", "SHARED_MIB", "DISK_MIB", "DAY_USD", "STATUS"], rows)
    prices = ledger.prices
    click.echo(
        f"{len(accrued)} collection(s) at {format_usd(prices.storage_micro_usd_per_gb_month)} per GB-month "
        f"({prices.storage_source}, price table {prices.version})"
    )
