"""``penny keys``: create (with a label, an expiry and allowed profiles), rotate, list and revoke API keys."""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from pathlib import Path

import click

from assistant.cli.ledger_cmds import fail, operator_ledger, table

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def duration(value: str, option: str) -> timedelta:
    """'30d', '24h', '90m', '3600s', '2w' as a timedelta."""
    match = _DURATION.match(value)
    if match is None:
        raise click.BadParameter(f"{value!r} is not a duration like 30d, 24h or 90m", param_hint=option)
    return timedelta(seconds=int(match[1]) * _UNIT_S[match[2]])


def profile_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    from assistant.api.chat import PROFILES  # the chat profiles a key may be limited to

    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - set(PROFILES)) or ([] if names else ["(none)"])
    if unknown:
        raise click.BadParameter(
            f"unknown profile(s) {', '.join(unknown)}: use {', '.join(PROFILES)}", param_hint="--profiles"
        )
    return names


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "-"


def _emit_key(info_id: str, user: str, key: str, key_file: Path | None, verb: str) -> None:
    if key_file is not None:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key + "\n")
        click.echo(f"{verb} {info_id} for {user}; key written to {key_file} (mode 0600)")
        return
    click.echo(f"{verb} {info_id} for {user}. Store the key now; it is not shown again:")
    click.echo(key)


KEY_FILE = click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the key to this file (mode 0600) instead of printing it.",
)


@click.group()
def keys() -> None:
    """Create, rotate, list and revoke API keys."""


@keys.command("create")
@click.argument("user")
@click.option("--label", default=None, help="What the key is for, e.g. 'ci' or 'alice laptop'.")
@click.option("--expires-in", default=None, metavar="DURATION", help="e.g. 30d, 24h; default: never.")
@click.option("--profiles", default=None, metavar="LIST", help="Allowed profiles, e.g. penny,penny-local.")
@KEY_FILE
def keys_create(
    user: str, label: str | None, expires_in: str | None, profiles: str | None, key_file: Path | None
) -> None:
    """Create an API key for USER and print it (once: only its hash is stored)."""
    from assistant.ledger import LedgerError

    lifetime = duration(expires_in, "--expires-in") if expires_in is not None else None
    allowed = profile_list(profiles)
    book = operator_ledger()
    try:
        expires_at = book.clock() + lifetime if lifetime is not None else None
        info, key = book.create_key(user, label=label, expires_at=expires_at, profiles=allowed)
    except LedgerError as exc:
        raise fail(exc) from exc
    _emit_key(info.id, info.user_name, key, key_file, "created")


@keys.command("rotate")
@click.argument("key_id")
@click.option(
    "--grace", default="24h", show_default=True, metavar="DURATION", help="How long the old key works."
)
@KEY_FILE
def keys_rotate(key_id: str, grace: str, key_file: Path | None) -> None:
    """Replace KEY_ID by a new key with the same user, label and profiles; the old key keeps working for
    the grace period, so clients can switch without an outage."""
    from assistant.ledger import LedgerError

    try:
        old, new, key = operator_ledger().rotate_key(key_id, duration(grace, "--grace"))
    except LedgerError as exc:
        raise fail(exc) from exc
    click.echo(f"{old.id} ({old.display}) now expires at {_when(old.expires_at)} UTC")
    _emit_key(new.id, new.user_name, key, key_file, "created")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke KEY_ID (see `penny keys list`); requests with it get 401 from now on."""
    from assistant.ledger import LedgerError

    try:
        info = operator_ledger().revoke_key(key_id)
    except LedgerError as exc:
        raise fail(exc) from exc
    click.echo(f"revoked {info.id} ({info.display}) of {info.user_name}")


@keys.command("list")
@click.option("--user", default=None)
def keys_list(user: str | None) -> None:
    """Key ids, owners, labels, allowed profiles, expiry and status; never the keys themselves."""
    book = operator_ledger()
    now = book.clock().replace(tzinfo=None)
    rows = [
        [
            k.id,
            k.user_name,
            k.label or "-",
            k.display,
            ",".join(k.profiles) if k.profiles is not None else "all",
            _when(k.created_at),
            _when(k.expires_at),
            k.status(now),
        ]
        for k in book.list_keys(user)
    ]
    table(["ID", "USER", "LABEL", "KEY", "PROFILES", "CREATED (UTC)", "EXPIRES (UTC)", "STATUS"], rows)
