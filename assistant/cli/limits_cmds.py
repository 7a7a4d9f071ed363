"""``penny limits``: show the rate limits and set or clear a user's or a key's own."""

from __future__ import annotations

import click

from assistant.settings import get_settings


def _subject(user: str | None, key: str | None) -> dict[str, str]:
    if (user is None) == (key is None):
        raise click.UsageError("name exactly one of --user NAME or --key KEY_ID")
    return {"user": user} if user is not None else {"key_id": key}  # type: ignore[dict-item]


def _show(value: int | None) -> str:
    return "-" if value is None else ("unlimited" if value == 0 else str(value))


@click.group()
def limits() -> None:
    """Rate limits: requests/min, paid tokens/min and requests in flight, per user and per API key."""


@limits.command("show")
def limits_show() -> None:
    """The defaults (settings) and every override ('-' follows the default)."""
    from assistant.ledger import open_ledger
    from assistant.limits.policy import defaults

    settings = get_settings()
    rows = [
        ("default", scope, "*", lim.rpm, lim.tpm, lim.max_concurrent)
        for scope, lim in defaults(settings.limits).items()
    ]
    for o in open_ledger(settings).rate_limit_overrides():
        rows.append(
            (
                "override",
                o.scope,
                o.name if o.scope == "user" else f"{o.name} ({o.user_name})",
                o.rpm,
                o.tpm,
                o.max_concurrent,
            )
        )
    click.echo(f"{'KIND':<9} {'SCOPE':<5} {'WHO':<28} {'RPM':>9} {'TPM':>9} {'CONCURRENT':>10}")
    for kind, scope, who, rpm, tpm, concurrent in rows:
        click.echo(f"{kind:<9} {scope:<5} {who:<28} {_show(rpm):>9} {_show(tpm):>9} {_show(concurrent):>10}")
    shared = "Redis (shared by all servers)" if settings.redis_url else "each server process alone"
    click.echo(f"counted in: {shared}")


@limits.command("set")
@click.option("--user", default=None, help="User name.")
@click.option("--key", default=None, help="API key id (`penny keys list`).")
@click.option("--rpm", type=click.IntRange(min=0), default=None, help="Requests per minute (0 = unlimited).")
@click.option(
    "--tpm", type=click.IntRange(min=0), default=None, help="Paid tokens per minute (0 = unlimited)."
)
@click.option(
    "--concurrent", type=click.IntRange(min=0), default=None, help="Requests in flight (0 = unlimited)."
)
def limits_set(
    user: str | None, key: str | None, rpm: int | None, tpm: int | None, concurrent: int | None
) -> None:
    """Set a user's or a key's own limits; limits not given keep their value."""
    from assistant.ledger import LedgerError, open_ledger

    values = {
        name: v for name, v in (("rpm", rpm), ("tpm", tpm), ("max_concurrent", concurrent)) if v is not None
    }
    if not values:
        raise click.UsageError("give at least one of --rpm, --tpm, --concurrent")
    try:
        o = open_ledger(get_settings()).set_rate_limit(**_subject(user, key), **values)
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"{o.scope} {o.name}: rpm {_show(o.rpm)}, tpm {_show(o.tpm)}, concurrent {_show(o.max_concurrent)}"
    )


@limits.command("clear")
@click.option("--user", default=None, help="User name.")
@click.option("--key", default=None, help="API key id.")
def limits_clear(user: str | None, key: str | None) -> None:
    """Return a user or a key to the default limits."""
    from assistant.ledger import LedgerError, open_ledger

    try:
        cleared = open_ledger(get_settings()).clear_rate_limit(**_subject(user, key))
    except LedgerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("cleared" if cleared else "no override to clear")
