"""``penny alerts``: list spend alert events with their delivery state, and deliver the due ones now."""

from __future__ import annotations

import click

from assistant.settings import get_settings


def _when(value: object) -> str:
    return "-" if value is None else str(value)[:19]


@click.group()
def alerts() -> None:
    """Spend alerts: a budget crossing its alert ratio, exhausted or projected past its limit, a spend
    spike, and their signed webhook deliveries."""


@alerts.command("list")
@click.option("--pending", is_flag=True, help="Only events not delivered yet.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--attempts", "show_attempts", is_flag=True, help="Also every delivery attempt.")
def alerts_list(pending: bool, limit: int, show_attempts: bool) -> None:
    """Alert events, newest first: what crossed, when, and whether the webhook has it."""
    from assistant.ledger import open_ledger
    from assistant.ledger.prices import format_usd

    ledger = open_ledger(get_settings())
    events = ledger.alert_events(pending_only=pending, limit=limit)
    click.echo(
        f"{'CREATED (UTC)':<19}  {'EVENT':<32}  {'KIND':<11}  {'WHO':<16}  {'WINDOW':<6}  "
        f"{'SPEND':>10}  {'LIMIT':>10}  {'TRIES':>5}  STATUS"
    )
    for e in events:
        status = (
            f"delivered {_when(e.delivered_at)}" if e.delivered_at else f"next {_when(e.next_attempt_at)}"
        )
        click.echo(
            f"{_when(e.created_at):<19}  {e.id:<32}  {e.kind:<11}  {e.scope + ' ' + e.subject:<16}  "
            f"{e.window:<6}  {format_usd(e.spend_micro_usd):>10}  {format_usd(e.limit_micro_usd):>10}  "
            f"{e.attempts:>5}  {status}"
        )
        if show_attempts:
            for d in ledger.alert_deliveries(e.id):
                outcome = "delivered" if d.delivered else (d.error or f"HTTP {d.status_code}")
                click.echo(f"    attempt {d.attempt} at {_when(d.attempted_at)}: {outcome}")
    if not events:
        click.echo("no alert events" + (" pending" if pending else ""))


@alerts.command("check")
def alerts_check() -> None:
    """Look for spend anomalies now: budgets projected past their limit by the window's end, and hours
    whose spend is far above the user's or team's own baseline (a running server does this by itself)."""
    from assistant.ledger import open_ledger
    from assistant.ledger.anomalies import AnomalyRules

    settings = get_settings()
    new = open_ledger(settings).check_spend_anomalies(AnomalyRules.from_settings(settings.alerts))
    click.echo(f"{new} new alert event(s)" + ("; `penny alerts list` shows them" if new else ""))


@alerts.command("deliver")
@click.option("--all", "include_scheduled", is_flag=True, help="Also events still waiting out a backoff.")
def alerts_deliver(include_scheduled: bool) -> None:
    """POST the due alert events to alerts.webhook_url now (a running server does this by itself)."""
    from assistant.alerts.webhook import AlertConfigError, Deliverer
    from assistant.ledger import open_ledger

    settings = get_settings()
    try:
        deliverer = Deliverer(open_ledger(settings), settings.alerts)
    except AlertConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        attempts = deliverer.deliver_due(include_scheduled=include_scheduled)
    finally:
        deliverer.close()
    delivered = sum(a.delivered for a in attempts)
    click.echo(f"{len(attempts)} attempted, {delivered} delivered, {len(attempts) - delivered} to retry")
