"""Operator commands: users, budgets, usage reports and reconciliation against a provider export (keys:
``key_cmds.py``, teams: ``team_cmds.py``)."""

from __future__ import annotations

import csv
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from assistant.ledger import GROUP_BYS, OWNERSHIP_BYS, WINDOWS, GroupBy, OwnershipBy, UsageRow, Window
from assistant.settings import get_settings

if TYPE_CHECKING:
    from assistant.ledger import Ledger

WINDOW = click.Choice(WINDOWS)


def operator_ledger() -> Ledger:
    """The ledger from settings (shared by every operator command group)."""
    from assistant.ledger import open_ledger

    return open_ledger(get_settings())


def fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def micro(usd: str, option: str) -> int:
    from assistant.ledger import LedgerError, usd_to_micro

    try:
        return usd_to_micro(usd, option)
    except LedgerError as exc:
        raise click.BadParameter(str(exc)) from exc


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], as_csv: bool = False) -> None:
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
        return
    cells = [list(map(str, headers)), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        click.echo(
            "  ".join(
                c.rjust(w) if c[:1].isdigit() or c[:1] in "$-" else c.ljust(w)
                for c, w in zip(row, widths, strict=True)
            ).rstrip()
        )


# -- users ------------------------------------------------------------------------------------------


@click.group()
def users() -> None:
    """Add and list users."""


@users.command("add")
@click.argument("name")
@click.option("--budget-usd", default=None, help="Spending limit in USD, e.g. 5 or 0.50.")
@click.option("--window", type=WINDOW, default="month", show_default=True, help="Budget window.")
@click.option("--alert-ratio", type=float, default=0.8, show_default=True, help="Warn at this share.")
def users_add(name: str, budget_usd: str | None, window: Window, alert_ratio: float) -> None:
    """Create user NAME, optionally with a budget."""
    from assistant.ledger import LedgerError
    from assistant.ledger.prices import format_usd

    limit = micro(budget_usd, "--budget-usd") if budget_usd is not None else None
    ledger = operator_ledger()
    try:
        user = ledger.add_user(name)
        if limit is not None:
            ledger.set_budget(user.name, limit, window, alert_ratio)
    except LedgerError as exc:
        raise fail(exc) from exc
    budget = f", budget {format_usd(limit)} per {window}" if limit is not None else ", no budget"
    click.echo(f"added user {user.name} (id {user.id}){budget}")


@users.command("list")
def users_list() -> None:
    """Users and their budgets."""
    ledger = operator_ledger()
    from assistant.ledger import Principal
    from assistant.ledger.prices import format_usd

    rows = []
    for user in ledger.list_users():
        status = ledger.budget_status(Principal(user.id, user.name))
        if status is None:
            rows.append([user.name, "-", "-", "-"])
        else:
            rows.append(
                [
                    user.name,
                    format_usd(status.budget.limit_micro_usd),
                    status.budget.window,
                    format_usd(status.committed_micro_usd),
                ]
            )
    table(["USER", "BUDGET", "WINDOW", "SPENT+RESERVED"], rows)


# -- budget -----------------------------------------------------------------------------------------


@click.group()
def budget() -> None:
    """Set a user's spending limit."""


@budget.command("set")
@click.argument("user")
@click.option("--usd", required=True, help="Limit in USD per window, e.g. 5 or 0.25.")
@click.option("--window", type=WINDOW, default="month", show_default=True)
@click.option("--alert-ratio", type=float, default=0.8, show_default=True)
def budget_set(user: str, usd: str, window: Window, alert_ratio: float) -> None:
    """Set USER's budget (replaces the previous one; spend so far in the window still counts)."""
    from assistant.ledger import LedgerError
    from assistant.ledger.prices import format_usd

    try:
        result = operator_ledger().set_budget(user, micro(usd, "--usd"), window, alert_ratio)
    except LedgerError as exc:
        raise fail(exc) from exc
    click.echo(
        f"budget for {result.user_name}: {format_usd(result.limit_micro_usd)} per {result.window}, "
        f"alert at {result.alert_ratio:.0%}"
    )


# -- usage ------------------------------------------------------------------------------------------


def _since(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value).date()
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)", param_hint="--since") from exc


@click.group(invoke_without_command=True)
@click.option("--user", default=None, help="Only this user.")
@click.option("--team", default=None, help="Only what was charged to this team.")
@click.option("--since", default=None, help="From this date (YYYY-MM-DD, UTC).")
@click.option("--by", type=click.Choice(GROUP_BYS + OWNERSHIP_BYS), default="user", show_default=True)
@click.option("--csv", "as_csv", is_flag=True, help="CSV instead of a table.")
@click.pass_context
def usage(
    ctx: click.Context,
    user: str | None,
    team: str | None,
    since: str | None,
    by: GroupBy | OwnershipBy,
    as_csv: bool,
) -> None:
    """Spend, tokens and savings, grouped by user, day, model or tier; or the total cost of ownership
    (answers, ingest, storage) by collection or team.

    SAVED is paid-only minus actual cost over the answers whose paid-only cost is known (UNKNOWN counts
    the others); COST_USD also holds paid spend outside answers (shadow checks, calibration)."""
    if ctx.invoked_subcommand is not None:
        return
    from assistant.ledger import LedgerError
    from assistant.ledger.prices import format_usd
    from assistant.ledger.usage import usage_total

    if by in OWNERSHIP_BYS:
        from assistant.cli.ownership_cmds import ownership_table

        ownership_table(by, user=user, team=team, since=_since(since), as_csv=as_csv)  # type: ignore[arg-type]
        return
    try:
        rows = operator_ledger().usage(user=user, team=team, since=_since(since), by=by)  # type: ignore[arg-type]
    except LedgerError as exc:
        raise fail(exc) from exc
    headers = [by.upper(), "REQUESTS", "PROMPT", "CACHED", "COMPLETION", "COST_USD"]
    headers += ["PAID_ONLY_USD", "SAVED_USD", "SAVED_%", "UNKNOWN"]
    body = [
        [
            r.key,
            r.requests,
            r.prompt_tokens,
            r.cached_prompt_tokens,
            r.completion_tokens,
            r.cost_usd if as_csv else format_usd(r.cost_micro_usd),
            *_savings_cells(r, as_csv),
        ]
        for r in rows
    ]
    if not as_csv:
        totals = usage_total(rows)
        total_cost = format_usd(totals.cost_micro_usd)
        body.append(["TOTAL", totals.requests, "", "", "", total_cost, *_savings_cells(totals, False)])
    table(headers, body, as_csv)
    unknown = sum(r.unknown_answers for r in rows)
    if unknown and not as_csv:
        click.echo(
            f"{unknown} answer(s) have no paid-only cost (recorded before it was, or no paid model "
            "configured): left out of PAID_ONLY and SAVED, not counted as zero savings."
        )


def _savings_cells(row: UsageRow, as_csv: bool) -> list[Any]:
    """PAID_ONLY, SAVED, SAVED_% and UNKNOWN for a row; empty (CSV) or "-" where nothing is known."""
    from assistant.ledger.usage import savings_shown

    saved, percent = row.saved_micro_usd, row.saved_percent
    if not as_csv:
        return [*savings_shown(row), row.unknown_answers]
    if saved is None:
        return ["", "", "", row.unknown_answers]
    cells = [f"{row.paid_only_micro_usd / 1_000_000:.6f}", f"{saved / 1_000_000:.6f}"]
    return [*cells, "" if percent is None else f"{percent:.2f}", row.unknown_answers]


@usage.command("reconcile")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--csv", "as_csv", is_flag=True)
def usage_reconcile(file: Path, as_csv: bool) -> None:
    """Compare the paid tier with a provider export.

    FILE is a CSV with columns date, model, input_tokens, output_tokens, cost_usd.
    """
    from assistant.ledger import LedgerError
    from assistant.ledger.reconcile import read_provider_csv, reconcile

    ledger = operator_ledger()
    try:
        differences = reconcile(ledger, read_provider_csv(file, ledger))
    except LedgerError as exc:
        raise fail(exc) from exc
    headers = [
        "DAY",
        "MODEL",
        "CALLS",
        "IN_LEDGER",
        "IN_PROVIDER",
        "OUT_LEDGER",
        "OUT_PROVIDER",
        "USD_LEDGER",
        "USD_PROVIDER",
        "DIFF_USD",
        "STATUS",
    ]
    rows = [
        [
            d.day,
            d.model,
            d.ledger_requests,
            d.ledger_input,
            d.provider_input,
            d.ledger_output,
            d.provider_output,
            f"{d.ledger_micro_usd / 1e6:.6f}",
            f"{d.provider_micro_usd / 1e6:.6f}",
            f"{d.cost_diff_micro_usd / 1e6:+.6f}",
            d.status,
        ]
        for d in differences
    ]
    table(headers, rows, as_csv)
    flagged = ledger.needing_reconciliation()
    bad = sum(d.status != "ok" for d in differences)
    if not as_csv:
        click.echo(
            f"{len(differences) - bad} ok, {bad} to check; "
            f"{len(flagged)} crash-recovered charge(s) at worst case awaiting reconciliation"
        )
    sys.exit(1 if bad else 0)


@usage.command("accrue-storage")
def usage_accrue_storage() -> None:
    """Record today's storage cost of every collection (bytes on disk x the price table's $/GB-month / days
    in the month). Run daily (cron) when no `penny serve` does it; a second run the same day changes
    nothing."""
    from assistant.cli.ownership_cmds import accrue

    accrue()


COMMANDS = (users, budget, usage)
